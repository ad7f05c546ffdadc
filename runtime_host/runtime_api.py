"""The Runtime API 2018-06-01, as each sandbox's runtime sees it.

Owns: the HTTP surface (every route is in ROUTES below), reading request
bodies within the spec's limits, and turning the state machine's refusals
into the status codes and error documents RAPID sends (spec §1).
A sandbox is known by its address on the host's private network: a request
from any other address gets 403 and touches nothing, so one container cannot
fetch or answer another's invocations.
Must not: change state itself; it calls the sandbox, which applies the table.
"""
from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING

from aiohttp import web

from .invocation import Outcome
from .protocol import (ERR_INTERNAL, ERR_INVALID_REQUEST_ID, ERR_INVALID_RESPONSE_MODE,
                       ERR_INVALID_STATE_TRANSITION, ERR_PAYLOAD_TOO_LARGE, FUNCTION_RESPONSE_TOO_LARGE,
                       H_CLIENT_CONTEXT, H_COGNITO_IDENTITY, H_DEADLINE_MS, H_FUNCTION_ARN,
                       H_FUNCTION_ERROR_TYPE, H_REQUEST_ID, H_RESPONSE_MODE, H_TRACE_ID,
                       MAX_RESPONSE_BYTES, RUNTIME_API_VERSION, RUNTIME_INVALID_RESPONSE_MODE)
from .sandbox import InvalidRequestId, SandboxGone
from .states import RAPID_NAMES, IllegalTransition

if TYPE_CHECKING:
    from .host import Host
    from .sandbox import Sandbox

ERROR_CAUSE_CONTENT_TYPE = "application/vnd.aws.lambda.error.cause+json"
VALID_ERROR_TYPE = re.compile(r"(Runtime|Function)\.[A-Z][a-zA-Z]+")
ACCEPTED = {"status": "OK"}


def sanitize_error_type(value: str | None) -> str:
    """spec §1.8: RAPID's GetValidRuntimeOrFunctionErrorType."""
    value = value or ""
    if VALID_ERROR_TYPE.search(value):
        return value
    return "Function.Unknown" if value.startswith("Function.") else "Runtime.Unknown"


def _json(status: int, doc: dict) -> web.Response:
    # RAPID encodes with Go's json.Encoder: the body ends with a newline.
    return web.Response(status=status, body=json.dumps(doc, separators=(",", ":")).encode() + b"\n",
                        content_type="application/json")


def _error(status: int, error_type: str, message: str) -> web.Response:
    return _json(status, {"errorMessage": message, "errorType": error_type})


def _refused(exc: IllegalTransition, target: str) -> web.Response:
    name = RAPID_NAMES.get(exc.state, exc.state.value)
    return _error(403, ERR_INVALID_STATE_TRANSITION,
                  f"State transition from {name} to {target} failed for runtime. Error: State transition is not allowed")


async def read_limited(request: web.Request, limit: int) -> tuple[bytes, int]:
    """The body, or its first `limit` bytes; and its full size (the rest is
    read and dropped so the connection stays usable)."""
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(65536):
        if size + len(chunk) <= limit:
            chunks.append(chunk)
        elif size < limit:
            chunks.append(chunk[:limit - size])
        size += len(chunk)
    body = b"".join(chunks)
    if (call := request.get(OBSERVED_CALL)) is not None:       # protocol observer hook (below)
        call["body"], call["body_size"] = body[:OBSERVED_BODY_BYTES], size
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
# completed in place. Without an observer no middleware is installed.
OBSERVED_CALL = "runtime_host.observed_call"
OBSERVED_BODY_BYTES = 65536


def protocol_observer_middleware(host: "Host"):
    observer = host.protocol_observer

    @web.middleware
    async def observe(request: web.Request, handler):
        sandbox = host.sandbox_at(request.remote or "")
        call = {"at": time.monotonic(), "at_epoch_ms": time.time() * 1000, "method": request.method,
                "path": request.path, "remote": request.remote,
                "sandbox": sandbox.id if sandbox else None, "function": sandbox.function.name if sandbox else None,
                "headers": dict(request.headers), "status": None, "response_headers": {},
                "body": b"", "body_size": None, "done_epoch_ms": None}
        request[OBSERVED_CALL] = call
        observer.record(call)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            call["status"] = exc.status
            raise
        finally:
            call["done_epoch_ms"] = time.time() * 1000
        call["status"] = response.status
        call["response_headers"] = dict(response.headers)
        return response

    return observe
# --- end of the protocol observer hook --------------------------------------------


class RuntimeApi:
    def __init__(self, host: "Host"):
        self.host = host

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_RESPONSE_BYTES + 1024)
        if getattr(self.host, "protocol_observer", None) is not None:    # conformance only
            app.middlewares.append(protocol_observer_middleware(self.host))
        base = f"/{RUNTIME_API_VERSION}"
        # ROUTES: the whole Runtime API surface.
        app.router.add_get(f"{base}/runtime/invocation/next", self.next)
        app.router.add_post(f"{base}/runtime/invocation/{{request_id}}/response", self.response)
        app.router.add_post(f"{base}/runtime/invocation/{{request_id}}/error", self.error)
        app.router.add_post(f"{base}/runtime/init/error", self.init_error)
        app.router.add_get(f"{base}/ping", self.ping)
        return app

    def _sandbox(self, request: web.Request) -> "Sandbox | None":
        return self.host.sandbox_at(request.remote or "")

    @staticmethod
    def _stranger(request: web.Request) -> web.Response:
        return _error(403, "UnknownSandbox", f"{request.remote} is not a sandbox of this host; "
                      "a sandbox may only fetch and answer its own invocations")

    async def ping(self, request: web.Request) -> web.Response:
        return web.Response(text="pong")

    async def next(self, request: web.Request) -> web.Response:
        sandbox = self._sandbox(request)
        if sandbox is None:
            return self._stranger(request)
        try:
            inv = await sandbox.next_invocation()
        except IllegalTransition as exc:
            return _refused(exc, "Ready")
        except SandboxGone:
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
        return web.Response(status=200, body=inv.payload, headers=headers, content_type="application/json")

    def _check(self, sandbox: "Sandbox", request_id: str) -> web.Response | None:
        try:
            sandbox.current_invocation(request_id)
        except InvalidRequestId:
            return _error(400, ERR_INVALID_REQUEST_ID, "Invalid request ID")
        except IllegalTransition as exc:
            return _refused(exc, "InvocationResponse")
        return None

    async def response(self, request: web.Request) -> web.Response:
        sandbox = self._sandbox(request)
        if sandbox is None:
            return self._stranger(request)
        request_id = request.match_info["request_id"]
        if (refusal := self._check(sandbox, request_id)) is not None:
            return refusal
        mode = request.headers.get(H_RESPONSE_MODE)
        if mode is not None and mode != "streaming":
            sandbox.post_result(request_id, Outcome(
                body=json.dumps({"errorType": RUNTIME_INVALID_RESPONSE_MODE,
                                 "errorMessage": f"Invalid function response mode: {mode!r}"}).encode(),
                error_type=RUNTIME_INVALID_RESPONSE_MODE, status="error"))
            return _error(400, ERR_INVALID_RESPONSE_MODE, "Invalid function response mode")
        body, size = await read_limited(request, MAX_RESPONSE_BYTES)
        if (refusal := self._check(sandbox, request_id)) is not None:   # it may have changed meanwhile
            return refusal
        if size > MAX_RESPONSE_BYTES:
            sandbox.post_result(request_id, Outcome(
                body=json.dumps({"errorMessage": f"Response payload size ({size} bytes) exceeded maximum "
                                 f"allowed payload size ({MAX_RESPONSE_BYTES} bytes).",
                                 "errorType": FUNCTION_RESPONSE_TOO_LARGE}).encode(),
                error_type=FUNCTION_RESPONSE_TOO_LARGE, status="error"))
            return _error(413, ERR_PAYLOAD_TOO_LARGE,
                          f"Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).")
        content_type = request.headers.get("Content-Type") or "application/json"
        sandbox.post_result(request_id, Outcome(body=body, content_type=content_type))
        return _json(202, ACCEPTED)

    async def error(self, request: web.Request) -> web.Response:
        sandbox = self._sandbox(request)
        if sandbox is None:
            return self._stranger(request)
        request_id = request.match_info["request_id"]
        if (refusal := self._check(sandbox, request_id)) is not None:
            return refusal
        body, _ = await read_limited(request, MAX_RESPONSE_BYTES)
        if (refusal := self._check(sandbox, request_id)) is not None:
            return refusal
        sandbox.post_result(request_id, self._error_outcome(request, body))
        return _json(202, ACCEPTED)

    async def init_error(self, request: web.Request) -> web.Response:
        sandbox = self._sandbox(request)
        if sandbox is None:
            return self._stranger(request)
        body, _ = await read_limited(request, MAX_RESPONSE_BYTES)
        outcome = self._error_outcome(request, body)
        try:
            sandbox.post_init_error(outcome.error_type, outcome.body)
        except IllegalTransition as exc:
            return _refused(exc, "InitError")
        return _json(202, ACCEPTED)

    @staticmethod
    def _error_outcome(request: web.Request, body: bytes) -> Outcome:
        """What the caller gets for an error a runtime posted (spec §1.5):
        the body as sent, except the error-cause media type (reduced to
        errorMessage/errorType/stackTrace) and an empty body (built from the
        sanitised error type)."""
        header_type = request.headers.get(H_FUNCTION_ERROR_TYPE)
        error_type = sanitize_error_type(header_type)
        content_type = request.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip() == ERROR_CAUSE_CONTENT_TYPE:
            try:
                doc = json.loads(body)
                body = json.dumps({k: doc.get(k) for k in ("errorMessage", "errorType", "stackTrace")}).encode()
            except (ValueError, AttributeError):
                return Outcome(body=b'"Invalid error body"', content_type="application/octet-stream",
                               error_type=error_type, status="error")
        if not body:
            body = json.dumps({"errorMessage": "Unknown application error occurred", "errorType": error_type}).encode()
        if header_type is None:
            # Python, Node and Go do not send the header: the body's errorType names the error.
            try:
                error_type = json.loads(body).get("errorType") or error_type
            except (ValueError, AttributeError):
                pass
        return Outcome(body=body, content_type="application/json", error_type=error_type, status="error")
