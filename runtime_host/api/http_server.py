"""The HTTP/1.1 server under both APIs: lean, because every invocation
crosses it four times (the caller's Invoke, the runtime's next, response and
next again).

aiohttp's web layer (Request, Response, router, middlewares, its request
handler's flow control) costs the host 139 µs of CPU per request, kernel
included, against 92 µs here (a minimal server of each kind on loopback,
2 cores, 2026-11-23), and the caller waits for most of it. Both APIs have a
handful of fixed routes and answers of a known shape, so this module drives
aiohttp's own HTTP parser (llhttp, `aiohttp.http.HttpRequestParser`) from a
plain asyncio protocol and writes answers as bytes.

Owns: parsing requests, keep-alive, one answer per request in order, the
wire format of answers (status line, Date, Content-Type, Content-Length),
and, where a server is given them, the idle and body-read timeouts (the
Invoke API has them; the Runtime API must not: a runtime's GET next waits as
long as no event comes, and a frozen sandbox's connection idles for hours).
Must not: know either API's routes or rules (runtime_api.py, invoke_api.py
do); a `serve(request) -> Reply` coroutine is all it calls.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Awaitable, Callable

from aiohttp.base_protocol import BaseProtocol
from aiohttp.http import HttpProcessingError, HttpRequestParser
from aiohttp.streams import StreamReader

log = logging.getLogger("runtime_host.api.http_server")

READ_BUFFER_BYTES = 2 ** 16        # the parser's body buffer; reading pauses above twice this
MAX_LINE_BYTES = 8190
MAX_FIELD_BYTES = 1 << 16          # a client context header may be ~3.5 KB base64, a trace id more


@dataclass(slots=True)
class Request:
    method: str
    path: str                      # without the query
    query: str
    headers: object                # case-insensitive mapping (aiohttp's CIMultiDictProxy)
    content: StreamReader          # the body, as it arrives
    remote: str                    # the peer's address
    observed: dict | None = None   # the protocol observer's record of this call, if any


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class DateHeader:
    """HTTP's Date, formatted once a second rather than once a request."""

    def __init__(self):
        self._second = -1
        self._value = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second, self._value = now, formatdate(now, usegmt=True)
        return self._value


_date = DateHeader()
_REASONS = {s.value: s.phrase for s in HTTPStatus}
NO_BODY_STATUSES = frozenset({204, 304})
# What a handler's bug answers, unless the server was given an answer of its API's own shape.
INTERNAL_ERROR = Reply(500, b'{"errorMessage":"Internal Server Error","errorType":"InternalServerError"}\n')


def encode_reply(reply: Reply, close: bool) -> bytes:
    lines = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Unknown')}\r\nDate: {_date()}\r\n"]
    if reply.content_type is not None:
        lines.append(f"Content-Type: {reply.content_type}\r\n")
    for name, value in reply.headers.items():
        lines.append(f"{name}: {value}\r\n")
    if close:
        lines.append("Connection: close\r\n")
    if reply.status in NO_BODY_STATUSES:      # RFC 9110 §8.6: no Content-Length, no body
        lines.append("\r\n")
        return "".join(lines).encode("latin-1", "replace")
    lines.append(f"Content-Length: {len(reply.body)}\r\n\r\n")
    head = "".join(lines).encode("latin-1", "replace")
    return head + reply.body if len(reply.body) < 65536 else head   # big bodies: written separately


Serve = Callable[[Request], Awaitable[Reply]]


class Connection(BaseProtocol):
    """One client connection. Requests are answered one at a time, in order
    (a runtime never pipelines, but HTTP/1.1 allows it), by one task that
    lives as long as the connection has work."""

    def __init__(self, serve: Serve, name: str, internal_error: Reply, idle_timeout_s: float | None = None,
                 body_timeout_s: float | None = None):
        loop = asyncio.get_running_loop()
        super().__init__(loop)
        self._serve = serve
        self._name = name
        self._internal_error = internal_error
        self._idle_timeout_s = idle_timeout_s        # no request in progress for this long: closed
        self._body_timeout_s = body_timeout_s        # a request's body stalls this long: closed
        limits = [t for t in (idle_timeout_s, body_timeout_s) if t is not None]
        self._watch_every_s = min(limits) if limits else None   # how often a watchdog with nothing to do looks again
        self._watchdog: asyncio.TimerHandle | None = None
        self._last_activity = 0.0                    # loop time of the last byte in or answer out
        self._reading_body: StreamReader | None = None
        self._parser = HttpRequestParser(self, loop, READ_BUFFER_BYTES, max_line_size=MAX_LINE_BYTES,
                                         max_field_size=MAX_FIELD_BYTES, payload_exception=ConnectionResetError)
        self._pending: deque = deque()
        self._worker: asyncio.Task | None = None
        self.remote = ""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if peer else ""
        if self._watch_every_s is not None:
            self._last_activity = self._loop.time()
            self._watch(self._watch_every_s)

    # --- timeouts (only where the server was given them) -------------------------
    # One watchdog per connection, rescheduled only when it fires: each
    # request merely notes the time (no timer made and cancelled per request).
    def _watch(self, delay_s: float) -> None:
        self._watchdog = self._loop.call_later(delay_s, self._check_timeouts)

    def _check_timeouts(self) -> None:
        self._watchdog = None
        if self.transport is None:
            return
        if self._reading_body is not None and not self._reading_body.is_eof():
            limit_s, why = self._body_timeout_s, "body"
        elif self._worker is None and not self._pending:
            limit_s, why = self._idle_timeout_s, "idle"
        else:                                       # a request is being answered: its handler's limits apply
            limit_s, why = None, ""
        if limit_s is None:
            self._watch(self._watch_every_s)
            return
        remaining_s = self._last_activity + limit_s - self._loop.time()
        if remaining_s > 0:
            self._watch(remaining_s)
            return
        if why == "body":                           # RFC 9110 §15.5.9: the client took too long to send it
            self._write(Reply(408, b"408 Request Timeout: the request body stopped arriving\n",
                              "text/plain; charset=utf-8"), True)
        else:
            self.transport.close()
            self.transport = None

    def connection_lost(self, exc) -> None:
        super().connection_lost(exc)
        self.transport = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        try:
            self._parser.feed_eof()
        except HttpProcessingError:
            pass
        # A handler still waiting (a GET next) is left to finish: its answer
        # is dropped, as aiohttp drops it, and the sandbox sees the next poll.

    def data_received(self, data: bytes) -> None:
        try:
            messages, _, _ = self._parser.feed_data(data)
        except HttpProcessingError as exc:
            self._write(Reply(400, f"400 Bad Request: {exc.message}\n".encode(), "text/plain; charset=utf-8"), True)
            return
        for message, payload in messages:
            # curl and others wait (1 s) for a go-ahead before a big body, as Go's
            # server (RAPID's) gives it: say continue at once, we read every body.
            if not payload.is_eof() and message.headers.get("Expect", "").lower() == "100-continue":
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if messages:
            self._pending.extend(messages)
            if self._worker is None:
                self._worker = self._loop.create_task(self._work())
        if self._watchdog is not None:
            self._last_activity = self._loop.time()  # data came: the clock starts again

    async def _work(self) -> None:
        try:
            while self._pending and self.transport is not None:
                message, payload = self._pending.popleft()
                raw_path, _, query = message.path.partition("?")
                request = Request(message.method, raw_path, query, message.headers, payload, self.remote)
                self._reading_body = payload
                try:
                    reply = await self._serve(request)
                except ConnectionResetError as exc:
                    if isinstance(exc.__cause__, HttpProcessingError):
                        # A body that cannot be decoded (Content-Encoding gzip or
                        # deflate that is not): the client is still there, waiting.
                        self._write(Reply(400, f"400 Bad Request: {exc.__cause__.message}\n".encode(),
                                          "text/plain; charset=utf-8"), True)
                    return                             # else the client went away mid-body: nobody to answer
                except Exception:                      # a bug must not kill the connection's owner
                    log.exception("%s handler failed for %s %s", self._name, message.method, raw_path)
                    reply = self._internal_error
                if not payload.is_eof() and not await _drain(payload):
                    self._write(reply, True)           # a body too big to skip: the connection ends here
                    return
                self._reading_body = None
                self._write(reply, message.should_close)
        finally:
            self._worker = None
            self._reading_body = None
            if self._watchdog is not None:
                self._last_activity = self._loop.time()

    def _write(self, reply: Reply, close: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        data = encode_reply(reply, close)
        transport.write(data)
        if len(reply.body) >= 65536:
            transport.write(reply.body)
        if close:
            transport.close()
            self.transport = None


async def _drain(payload: StreamReader, limit: int = 8 * 1024 * 1024) -> bool:
    """Reads and drops a body the handler did not want (a refused request),
    so the kept-alive connection can carry the next one."""
    dropped = 0
    while not payload.is_eof():
        dropped += len(await payload.readany())
        if dropped > limit:
            return False
    return True


async def start_server(serve: Serve, *, host: str | None = None, port: int | None = None, sock=None,
                       name: str = "Runtime API", internal_error: Reply = INTERNAL_ERROR,
                       idle_timeout_s: float | None = None, body_timeout_s: float | None = None
                       ) -> asyncio.AbstractServer:
    """`name` is for the log; `internal_error` is what a handler's bug answers;
    the timeouts close a connection idle that long between requests, and
    answer 408 to a request whose body stops arriving that long (None: never)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: Connection(serve, name, internal_error, idle_timeout_s, body_timeout_s),
                                    host=host, port=port, sock=sock)
