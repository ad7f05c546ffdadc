"""The Runtime API 2018-06-01, as each sandbox's runtime sees it.

Owns: the HTTP surface (every route is in ROUTES below), reading request
bodies within the spec's limits, and turning the state machine's refusals
into the status codes and error documents RAPID sends (spec §1).
A sandbox is known by the listener it calls (its own loopback listener), or
by its address on the backend's network (the SandboxLookup passed in): a
request from any other address gets 403 and touches nothing, so one
container cannot fetch or answer another's invocations.
Must not: change state itself; it calls the sandbox, which applies the table.
"""
from __future__ import annotations

import json
import time
from typing import Awaitable, Callable, Protocol

from urllib.parse import unquote

from runtime_host.api.http_body import BadBody, BodyLost, RequestBody
from runtime_host.api.http_server import Reply, Request, start_server
from runtime_host.core.invocation import Outcome
from runtime_host.core.protocol import (ERR_INTERNAL, ERR_INVALID_REQUEST_ID, ERR_INVALID_RESPONSE_MODE,
                                        ERR_INVALID_STATE_TRANSITION, ERR_PAYLOAD_TOO_LARGE, H_CLIENT_CONTEXT,
                                        H_COGNITO_IDENTITY, H_DEADLINE_MS, H_FUNCTION_ARN, H_FUNCTION_ERROR_TYPE,
                                        H_REQUEST_ID, H_RESPONSE_MODE, H_TRACE_ID, MAX_RESPONSE_BYTES,
                                        RUNTIME_API_VERSION, ERR_TRUNCATED_REQUEST, FUNCTION_RESPONSE_TOO_LARGE)
from runtime_host.core.rules import (STREAMING_RESPONSE_MODE, response_mode_refused, response_too_large,
                                     runtime_error_outcome)
from runtime_host.core.streaming import (H_ERROR_BODY_TRAILER, H_ERROR_TYPE_TRAILER, RUNTIME_TRUNCATED_RESPONSE,
                                         STREAM_MAX_BYTES, StreamEnd, trailer_error)
from runtime_host.core.states import RAPID_NAMES, IllegalTransition, SandboxState
from runtime_host.scheduler.sandbox import InvalidRequestId, Sandbox, SandboxGone
from runtime_host.scheduler.stream import ResponseStream


class SandboxLookup(Protocol):
    """Which sandbox a call from `address` on the backend's network comes from (the scheduler)."""

    def sandbox_at(self, address: str) -> Sandbox | None: ...


class ProtocolObserver(Protocol):
    """`runtime-host conformance` watches every call (see the hook below)."""

    def record(self, call: dict) -> None: ...


def _json(status: int, doc: dict) -> Reply:
    # RAPID encodes with Go's json.Encoder: the body ends with a newline.
    return Reply(status, json.dumps(doc, separators=(",", ":")).encode() + b"\n")


def _error(status: int, error_type: str, message: str) -> Reply:
    return _json(status, {"errorMessage": message, "errorType": error_type})


error_reply = _error     # for the other APIs on this listener (extensions_api.py)


def _refused(exc: IllegalTransition, target: str) -> Reply:
    name = RAPID_NAMES.get(exc.state, exc.state.value)
    return _error(403, ERR_INVALID_STATE_TRANSITION,
                  f"State transition from {name} to {target} failed for runtime. Error: State transition is not allowed")


ACCEPTED_REPLY = _json(202, {"status": "OK"})
# RAPID's state names for what a response or an error post asks for (spec §1.11).
RESPONSE_STATE = "InvocationResponse"
ERROR_RESPONSE_STATE = "InvocationErrorResponse"


# What Go's net/http (RAPID's server) answers for a path it has no route for,
# and for a route asked with the wrong method.
NOT_FOUND = Reply(404, b"404 page not found\n", "text/plain; charset=utf-8")


def _method_not_allowed(allowed: list[str]) -> Reply:
    return Reply(405, b"", None, {"Allow": ", ".join(allowed)})


async def read_limited(content: RequestBody, limit: int) -> tuple[bytes, int]:
    """A request body (from either API), or its first
    `limit` bytes; and its full size (the rest is read and dropped so the
    connection stays usable)."""
    if content.is_eof():              # all of it arrived with the head: the usual small body
        body = content.read_nowait()
        size = len(body)
        body = body[:limit]
    else:
        chunks, size = [], 0
        async for chunk in content.iter_chunked(65536):
            if size + len(chunk) <= limit:
                chunks.append(chunk)
            elif size < limit:
                chunks.append(chunk[:limit - size])
            size += len(chunk)
        body = b"".join(chunks)
    return body, size


async def read_body(request: Request, limit: int) -> tuple[bytes, int]:
    body, size = await read_limited(request.content, limit)
    if request.observed is not None:                       # protocol observer hook (below)
        request.observed["body"], request.observed["body_size"] = body[:OBSERVED_BODY_BYTES], size
    return body, size


# --- protocol observer hook ------------------------------------------------------
# For `runtime-host conformance` (runtime_host/conformance/): when the host
# has a `protocol_observer` (an object with a `record(call)` method), every
# request on this API, including those to unknown paths (404) and with the
# wrong method (405), is recorded as a dict: monotonic and epoch arrival
# time, method, path, the sandbox (id, function) its address belongs to,
# request headers, and when answered: status, response headers, epoch time;
# for POSTs the body's size and its first OBSERVED_BODY_BYTES. `record` gets
# the dict on arrival (a GET next may stay open a long time); the same dict is
# completed in place. Without an observer nothing is recorded.
OBSERVED_BODY_BYTES = 65536


def _note_if_removed(request: Request, exc: IllegalTransition) -> None:
    """A call refused because the host is removing its sandbox (after a
    timeout, say) is the platform's doing, not the runtime's: conformance
    counts it with the polls a removed sandbox leaves unanswered."""
    if request.observed is not None and exc.state in (SandboxState.SHUTTING_DOWN, SandboxState.DEAD):
        request.observed["ended_by"] = "sandbox gone"


def _observed_call(request: Request, sandbox: Sandbox | None) -> dict:
    return {"at": time.monotonic(), "at_epoch_ms": time.time() * 1000, "method": request.method,
            "path": request.path, "remote": request.remote,
            "sandbox": sandbox.id if sandbox else None, "function": sandbox.function.name if sandbox else None,
            "headers": dict(request.headers), "status": None, "response_headers": {},
            "body": b"", "body_size": None, "done_epoch_ms": None}
# --- end of the protocol observer hook --------------------------------------------


BASE = f"/{RUNTIME_API_VERSION}"
NEXT_PATH = f"{BASE}/runtime/invocation/next"
INVOCATION_PREFIX = f"{BASE}/runtime/invocation/"
INIT_ERROR_PATH = f"{BASE}/runtime/init/error"
PING_PATH = f"{BASE}/ping"

Handler = Callable[[Request, Sandbox | None, str], Awaitable[Reply]]


class RuntimeApi:
    """The Runtime API's routes and rules over http_server's server. A
    request's sandbox is the one its peer address belongs to."""

    def __init__(self, sandboxes: SandboxLookup, observer: ProtocolObserver | None = None):
        self.sandboxes = sandboxes
        self.observer = observer                 # conformance only
        # ROUTES: the whole Runtime API surface (path -> method -> handler);
        # POST .../invocation/{request_id}/response|error are matched in _route.
        self.routes: dict[str, dict[str, Handler]] = {
            NEXT_PATH: {"GET": self.next},
            INIT_ERROR_PATH: {"POST": self.init_error},
            PING_PATH: {"GET": self.ping},
        }

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """A route of the host's own on the same listener (the stem endpoint)."""
        self.routes.setdefault(path, {})[method] = handler

    async def start(self, address: str, port: int):
        return await start_server(self.serve, host=address, port=port)

    async def serve_inside(self, sock, member_of: Callable[[], Sandbox | None]):
        """The Runtime API on a listening socket inside one sandbox (a
        RuntimeApiListeners for the scheduler): the listener says who calls,
        `member_of()` at the time of the call."""
        return await start_server(lambda request: self.serve_as(request, member_of()), sock=sock)

    def _route(self, path: str) -> tuple[dict[str, Handler] | None, str]:
        methods = self.routes.get(path)
        if methods is not None:
            return methods, ""
        if path.startswith(INVOCATION_PREFIX):
            request_id, _, action = path[len(INVOCATION_PREFIX):].partition("/")
            if request_id and action == "response":
                return {"POST": self.response}, unquote(request_id)
            if request_id and action == "error":
                return {"POST": self.error}, unquote(request_id)
        return None, ""

    async def serve(self, request: Request) -> Reply:
        """On the gateway: the sandbox is the one the peer address belongs to."""
        return await self.serve_as(request, self.sandboxes.sandbox_at(request.remote))

    async def serve_as(self, request: Request, sandbox: Sandbox | None) -> Reply:
        """On a sandbox's own listener (host.runtime_api_inside) the listener says who calls."""
        if self.observer is not None:
            return await self._observed(request, sandbox)
        return await self._dispatch(request, sandbox)

    async def _dispatch(self, request: Request, sandbox: Sandbox | None) -> Reply:
        methods, request_id = self._route(request.path)
        if methods is None:
            return NOT_FOUND
        handler = methods.get(request.method)
        if handler is None:
            return _method_not_allowed(sorted(methods))
        return await handler(request, sandbox, request_id)

    async def _observed(self, request: Request, sandbox: Sandbox | None) -> Reply:
        call = request.observed = _observed_call(request, sandbox)
        self.observer.record(call)
        try:
            reply = await self._dispatch(request, sandbox)
        finally:
            call["done_epoch_ms"] = time.time() * 1000
        call["status"] = reply.status
        if reply.status >= 400:
            try:
                call["error_type"] = json.loads(reply.body).get("errorType")
            except (ValueError, AttributeError):
                call["error_type"] = None
        call["response_headers"] = {**({"Content-Type": reply.content_type} if reply.content_type else {}),
                                    **reply.headers}
        return reply

    @staticmethod
    def _stranger(request: Request) -> Reply:
        return _error(403, "UnknownSandbox", f"{request.remote} is not a sandbox of this host; "
                      "a sandbox may only fetch and answer its own invocations")

    async def ping(self, request: Request, sandbox: Sandbox | None, _: str) -> Reply:
        return Reply(200, b"pong", "text/plain; charset=utf-8")

    async def next(self, request: Request, sandbox: Sandbox | None, _: str) -> Reply:
        if sandbox is None:
            return self._stranger(request)
        try:
            inv = await sandbox.next_invocation()
        except IllegalTransition as exc:
            _note_if_removed(request, exc)
            return _refused(exc, "Ready")
        except SandboxGone:
            if request.observed is not None:     # conformance: no refusal, the sandbox went away
                request.observed["ended_by"] = "sandbox gone"
            return _error(500, ERR_INTERNAL, "Internal Server Error")
        headers = {
            H_REQUEST_ID: inv.request_id,
            H_DEADLINE_MS: str(inv.deadline_ms),
            H_FUNCTION_ARN: inv.invoked_arn,
            H_TRACE_ID: inv.trace_id,
        }
        if inv.client_context:
            headers[H_CLIENT_CONTEXT] = inv.client_context
        if inv.cognito_identity:
            headers[H_COGNITO_IDENTITY] = inv.cognito_identity
        return Reply(200, inv.payload, "application/json", headers)

    def _check(self, sandbox: Sandbox, request_id: str, target: str) -> Reply | None:
        """`target`: RAPID's name of the state the post asks for, for its 403 message."""
        try:
            sandbox.current_invocation(request_id)
        except InvalidRequestId:
            return _error(400, ERR_INVALID_REQUEST_ID, "Invalid request ID")
        except IllegalTransition as exc:
            return _refused(exc, target)
        return None

    async def response(self, request: Request, sandbox: Sandbox | None, request_id: str) -> Reply:
        if sandbox is None:
            return self._stranger(request)
        if (refusal := self._check(sandbox, request_id, RESPONSE_STATE)) is not None:
            return refusal
        mode = request.headers.get(H_RESPONSE_MODE)
        refused = response_mode_refused(mode)
        if refused is not None:
            sandbox.post_result(request_id, refused)
            return _error(400, ERR_INVALID_RESPONSE_MODE, "Invalid function response mode")
        if mode == STREAMING_RESPONSE_MODE:
            return await self._stream_response(request, sandbox, request_id)
        body, size = await read_body(request, MAX_RESPONSE_BYTES)
        if (refusal := self._check(sandbox, request_id, RESPONSE_STATE)) is not None:   # it may have changed meanwhile
            return refusal
        if size > MAX_RESPONSE_BYTES:
            sandbox.post_result(request_id, response_too_large(size))
            return _error(413, ERR_PAYLOAD_TOO_LARGE,
                          f"Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).")
        content_type = request.headers.get("Content-Type") or "application/json"
        sandbox.post_result(request_id, Outcome(body=body, content_type=content_type))
        return ACCEPTED_REPLY

    async def _stream_response(self, request: Request, sandbox: Sandbox, request_id: str) -> Reply:
        """A streamed response (spec §2.1): the caller gets each chunk as it
        arrives; the trailers, the cap or the platform say how it ended."""
        inv = sandbox.current_invocation(request_id)
        limit = STREAM_MAX_BYTES if inv.streaming_caller else MAX_RESPONSE_BYTES
        stream = ResponseStream(request.headers.get("Content-Type") or "application/octet-stream", limit,
                                shaped=inv.streaming_caller)
        stream.done.add_done_callback(lambda done: inv.stream_ended(done.result()))
        sandbox.post_result(request_id, Outcome(body=b"", content_type=stream.content_type, stream=stream))
        head = bytearray()
        try:
            async for chunk in request.content.iter_any():
                if len(head) < OBSERVED_BODY_BYTES:
                    head += chunk[:OBSERVED_BODY_BYTES - len(head)]
                if not await stream.write(chunk):
                    break                     # cut (over the cap) or ended by the platform: the rest is dropped
        except (BodyLost, BadBody):
            stream.finish(StreamEnd(RUNTIME_TRUNCATED_RESPONSE, "the runtime's streamed response ended "
                                    "before its last chunk"))
            return _error(400, ERR_TRUNCATED_REQUEST, "HTTP request detected as truncated")
        finally:
            if request.observed is not None:
                request.observed["body"], request.observed["body_size"] = bytes(head), stream.size
        trailers = request.content.trailers
        stream.finish(trailer_error(trailers.get(H_ERROR_TYPE_TRAILER), trailers.get(H_ERROR_BODY_TRAILER)))
        if stream.end.error_code == FUNCTION_RESPONSE_TOO_LARGE:
            return _error(413, ERR_PAYLOAD_TOO_LARGE, f"Exceeded maximum allowed payload size ({limit} bytes).")
        return ACCEPTED_REPLY

    async def error(self, request: Request, sandbox: Sandbox | None, request_id: str) -> Reply:
        if sandbox is None:
            return self._stranger(request)
        if (refusal := self._check(sandbox, request_id, ERROR_RESPONSE_STATE)) is not None:
            return refusal
        body, _ = await read_body(request, MAX_RESPONSE_BYTES)
        if (refusal := self._check(sandbox, request_id, ERROR_RESPONSE_STATE)) is not None:
            return refusal
        sandbox.post_result(request_id, self._error_outcome(request, body))
        return ACCEPTED_REPLY

    async def init_error(self, request: Request, sandbox: Sandbox | None, _: str) -> Reply:
        if sandbox is None:
            return self._stranger(request)
        body, _ = await read_body(request, MAX_RESPONSE_BYTES)
        outcome = self._error_outcome(request, body)
        try:
            sandbox.post_init_error(outcome.error_type, outcome.body)
        except IllegalTransition as exc:
            _note_if_removed(request, exc)
            return _refused(exc, "InitError")
        return ACCEPTED_REPLY

    @staticmethod
    def _error_outcome(request: Request, body: bytes) -> Outcome:
        return runtime_error_outcome(request.headers.get(H_FUNCTION_ERROR_TYPE),
                                     request.headers.get("Content-Type", ""), body)
