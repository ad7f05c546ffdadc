"""Function URLs: every function with `url` in its function.toml, over HTTP on one port.

Addressed as Lambda's are, by host name: http://<name>.lambda-url.localhost:<port>/any/path
(browsers and curl resolve every *.localhost name to loopback); a client that
cannot choose the host name uses http://127.0.0.1:<port>/<name>/any/path, and
the function sees /any/path. Each request becomes the payload format 2.0 event
(core/http_events.py), is invoked through the host like any other invocation,
and its result becomes the HTTP answer: BUFFERED reads the result whole;
RESPONSE_STREAM passes the body on as the runtime streams it, its status and
headers taken from the http-integration prelude (docs/spec-additions.md §6).

Owns: routing a request to its function, the errors a function URL answers
(403 no such URL, 413, 429, 502 function error, 503), reading a streamed
response's prelude, and turning answers into replies of http_server.py.
Must not: build events or interpret results itself (core/http_events.py
does), run invocations (its invoker, the host, does), or keep any state
between requests.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Protocol

from multidict import MultiDict

from runtime_host.api.http_server import Reply, Request, start_server
from runtime_host.api.invoke_api import BODY_TIMEOUT_S, IDLE_TIMEOUT_S, buffered
from runtime_host.api.runtime_api import read_limited
from runtime_host.core.config import FunctionConfig
from runtime_host.core.http_events import (HTTP_INTEGRATION_CONTENT_TYPE, MAX_PRELUDE_BYTES, PRELUDE_DELIMITER,
                                           HttpAnswer, HttpRequest, MalformedResponse, answer_from_prelude,
                                           answer_from_result, event_payload, function_error_answer,
                                           host_without_port, local_url, prelude_end, split_path_address,
                                           url_id_of_host)
from runtime_host.core.invocation import Invocation, Outcome, new_trace_id
from runtime_host.core.protocol import (ERR_REQUEST_TOO_LARGE, ERR_SERVICE, ERR_TOO_MANY_REQUESTS,
                                        H_AMZN_ERROR_TYPE, H_AMZN_REQUEST_ID, MAX_SYNC_REQUEST_BYTES)
from runtime_host.scheduler.context import SandboxStartFailed, Stopping, Throttled

log = logging.getLogger("runtime_host.api.function_urls")

ERR_ACCESS_DENIED = "AccessDeniedException"     # what Lambda answers for a URL that does not exist
NO_BODY_STATUSES = frozenset({204, 304})
DECODED_ENCODINGS = ("gzip", "deflate")       # request bodies http_server.py decodes before anyone reads them


class UrlInvoker(Protocol):
    """What function URLs ask of the host (Host implements it)."""
    functions: dict[str, FunctionConfig]

    @property
    def stopping(self) -> bool: ...
    async def invoke(self, fn: FunctionConfig, payload: bytes, *, trace_id: str | None = None,
                     streaming_caller: bool = False, request_id: str | None = None) -> tuple[Invocation, Outcome]: ...


def _error(status: int, error_type: str, message: str | None) -> Reply:
    """Lambda's function URL errors: {"Message": ...} and the type in x-amzn-ErrorType."""
    return Reply(status, json.dumps({"Message": message}).encode(), "application/json",
                 {H_AMZN_ERROR_TYPE: error_type, H_AMZN_REQUEST_ID: str(uuid.uuid4())})


def _as_sent(request: Request) -> tuple[tuple[str, str], ...]:
    """The request's headers, less the Content-Encoding (and Content-Length) of a gzip or
    deflate body, which http_server.py hands over decoded."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    dropped = ("content-encoding", "content-length") if encoding in DECODED_ENCODINGS else ()
    return tuple((name, value) for name, value in request.headers.items() if name.lower() not in dropped)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


class FunctionUrls:
    def __init__(self, host: UrlInvoker):
        self.host = host
        self.port = 0
        self._by_url_id: dict[str, FunctionConfig] = {}
        for fn in sorted(host.functions.values(), key=lambda f: f.name):
            if fn.url is None:
                continue
            other = self._by_url_id.setdefault(fn.name.lower(), fn)
            if other is not fn:
                log.warning("functions %s and %s differ only in case, which host names do not: "
                            "http://%s.lambda-url.localhost reaches %s; %s only by its path address",
                            other.name, fn.name, fn.name.lower(), other.name, fn.name)

    @property
    def served(self) -> list[FunctionConfig]:
        """The functions with a URL, by name."""
        return sorted((f for f in self.host.functions.values() if f.url is not None), key=lambda f: f.name)

    def url_of(self, fn: FunctionConfig) -> str:
        return local_url(fn.name, self.port)

    async def start(self, address: str, port: int):
        server = await start_server(self.serve, host=address, port=port, name="Function URLs",
                                    idle_timeout_s=IDLE_TIMEOUT_S, body_timeout_s=BODY_TIMEOUT_S)
        self.port = server.sockets[0].getsockname()[1]
        return server

    # --- routing --------------------------------------------------------------------
    def _lookup(self, name: str) -> FunctionConfig | None:
        fn = self.host.functions.get(name)
        if fn is not None and fn.url is not None:
            return fn
        return self._by_url_id.get(name.lower())

    def _route(self, request: Request) -> tuple[FunctionConfig, str, str, str] | Reply:
        """(function, rawPath, domainName, url-id), or the 403 Lambda answers for no such URL."""
        host = request.headers.get("Host", "")
        domain = host_without_port(host).lower()
        url_id = url_id_of_host(host)
        if url_id is not None:                                  # <name>.lambda-url.localhost
            raw_path = request.path or "/"
        else:                                                   # 127.0.0.1:<port>/<name>/...
            url_id, raw_path = split_path_address(request.path)
        fn = self._lookup(url_id) if url_id else None
        if fn is None:
            names = ", ".join(f.name for f in self.served) or "none"
            return _error(403, ERR_ACCESS_DENIED,
                          f"No function URL here for {url_id or request.path!r}: a function gets one with "
                          f"url = true in its function.toml. Function URLs on this host: {names}; address one as "
                          f"http://<name>.lambda-url.localhost:{self.port}/ or http://127.0.0.1:{self.port}/<name>/")
        return fn, raw_path, domain, url_id.lower()

    # --- a request ------------------------------------------------------------------
    async def serve(self, request: Request) -> Reply:
        routed = self._route(request)
        if isinstance(routed, Reply):
            return routed
        fn, raw_path, domain, url_id = routed
        if self.host.stopping:
            return _error(503, ERR_SERVICE, "runtime-host is shutting down; no new invocations are accepted")
        body, size = await read_limited(request.content, MAX_SYNC_REQUEST_BYTES)
        trace_id = new_trace_id()
        # The event's requestContext.requestId is the invocation's own id: the one in the
        # function's context, its log lines and REPORT, the ledger and x-amzn-RequestId.
        request_id = str(uuid.uuid4())
        payload = event_payload(HttpRequest(
            method=request.method, raw_path=raw_path, raw_query=request.query,
            headers=_as_sent(request), body=body, source_ip=request.remote, domain_name=domain,
            url_id=url_id, port=self.port, request_id=request_id, trace_id=trace_id,
            epoch_ms=int(time.time() * 1000)))
        if size > MAX_SYNC_REQUEST_BYTES or len(payload) > MAX_SYNC_REQUEST_BYTES:
            return _error(413, ERR_REQUEST_TOO_LARGE, f"Request must be smaller than {MAX_SYNC_REQUEST_BYTES} "
                          "bytes for the InvokeFunction operation (the event, body included)")
        streams = fn.url.streams
        try:
            inv, outcome = await self.host.invoke(fn, payload, trace_id=trace_id, streaming_caller=streams,
                                                  request_id=request_id)
        except Throttled:
            return _error(429, ERR_TOO_MANY_REQUESTS, "Rate Exceeded.")
        except SandboxStartFailed as exc:
            return _error(500, ERR_SERVICE, f"Could not start a sandbox for {fn.name}: {exc}")
        except Stopping as exc:
            return _error(503, ERR_SERVICE, str(exc))
        head_only = request.method == "HEAD"
        if streams and outcome.stream is not None:
            return await self._streamed(fn, inv, outcome, head_only)
        if outcome.stream is not None:
            outcome = await buffered(inv, outcome)              # BUFFERED: the whole result first
        if outcome.is_error:
            return self._reply(inv, function_error_answer(), head_only)
        if streams:
            # RESPONSE_STREAM of a runtime that answered in one piece: passed on as it is.
            return self._reply(inv, HttpAnswer(200, outcome.content_type, (), outcome.body), head_only)
        try:
            if _media_type(outcome.content_type) == HTTP_INTEGRATION_CONTENT_TYPE:
                end = prelude_end(outcome.body)
                if end < 0:
                    raise MalformedResponse("no 8 NUL bytes end its metadata prelude")
                answer = answer_from_prelude(outcome.body[:end - len(PRELUDE_DELIMITER)])
                answer = HttpAnswer(answer.status, answer.content_type, answer.headers, outcome.body[end:])
            else:
                answer = answer_from_result(outcome.body)
        except MalformedResponse as exc:
            log.warning("function URL of %s: answered 502: its result is not an HTTP response: %s", fn.name, exc)
            answer = function_error_answer()
        return self._reply(inv, answer, head_only)

    def _reply(self, inv: Invocation, answer: HttpAnswer, head_only: bool,
               stream: AsyncIterator[bytes] | None = None) -> Reply:
        headers = MultiDict(answer.headers)
        headers[H_AMZN_REQUEST_ID] = inv.request_id
        body = b"" if head_only or answer.status in NO_BODY_STATUSES else answer.body
        # Reply.headers is written with .items(): a MultiDict keeps one Set-Cookie per cookie.
        return Reply(answer.status, body, answer.content_type, headers, stream=stream)

    async def _streamed(self, fn: FunctionConfig, inv: Invocation, outcome: Outcome, head_only: bool) -> Reply:
        """RESPONSE_STREAM: status and headers once known (the prelude read, or the first
        bytes or the end seen), then the body chunk by chunk as the runtime sends it."""
        stream = outcome.stream
        chunks = stream.chunks()
        first = b""
        try:
            if _media_type(stream.content_type) == HTTP_INTEGRATION_CONTENT_TYPE:
                prelude = bytearray()
                end = -1
                async for data in chunks:
                    prelude += data
                    end = prelude_end(prelude)
                    if end >= 0 or len(prelude) > MAX_PRELUDE_BYTES:
                        break
                if end < 0:
                    if self._failed(inv, stream):
                        stream.detach()
                        return self._reply(inv, function_error_answer(), head_only)
                    raise MalformedResponse(f"no 8 NUL bytes end its metadata prelude within "
                                            f"{min(len(prelude), MAX_PRELUDE_BYTES)} bytes")
                answer = answer_from_prelude(bytes(prelude[:end - len(PRELUDE_DELIMITER)]))
                first = bytes(prelude[end:])
            else:
                async for data in chunks:
                    first = data
                    break
                if not first and self._failed(inv, stream):
                    return self._reply(inv, function_error_answer(), head_only)
                answer = HttpAnswer(200, stream.content_type)
        except MalformedResponse as exc:
            stream.detach()
            log.warning("function URL of %s: answered 502: its streamed response is not an HTTP response: %s",
                        fn.name, exc)
            return self._reply(inv, function_error_answer(), head_only)
        if head_only or answer.status in NO_BODY_STATUSES:
            if stream.end is None:
                stream.detach()
            return self._reply(inv, answer, head_only)
        return self._reply(inv, answer, head_only, stream=self._body(fn, inv, stream, chunks, first))

    @staticmethod
    def _failed(inv: Invocation, stream) -> bool:
        return inv.failure is not None or (stream.end is not None and stream.end.error_code is not None)

    async def _body(self, fn: FunctionConfig, inv: Invocation, stream, chunks: AsyncIterator[bytes],
                    first: bytes) -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            async for data in chunks:
                yield data
            if self._failed(inv, stream):
                end = stream.end
                log.warning("function URL of %s: the streamed response of %s failed after its status was sent "
                            "(%s: %s); the client got the body up to there", fn.name, inv.request_id,
                            end.error_code if end else "", end.error_details if end else "")
        finally:
            if stream.end is None:
                stream.detach()                 # the client left; the function goes on (spec §2.2)
