"""The HTTP/1.1 server under both APIs: lean, because every invocation
crosses it four times (the caller's Invoke, the runtime's next, response and
next again).

aiohttp's web layer (Request, Response, router, middlewares, its request
handler's flow control) costs the host 139 µs of CPU per request, kernel
included, against 92 µs here (a minimal server of each kind on loopback,
2 cores, 2026-11-23), and the caller waits for most of it. Both APIs have a
handful of fixed routes and answers of a known shape, so this module drives
an HTTP parser from a plain asyncio protocol and writes answers as bytes.
The parser is `httptools` (llhttp, as aiohttp's own): unlike aiohttp's
parsers, it hands over the trailers of a chunked body, which is where a
streaming runtime reports a mid-stream failure (spec §2.1).

Owns: parsing requests, keep-alive, one answer per request in order, the
wire format of answers (status line, Date, Content-Type, Content-Length, or
chunked for a streamed answer), and, where a server is given them, the idle
and body-read timeouts (the Invoke API has them; the Runtime API must not: a
runtime's GET next waits as long as no event comes, and a frozen sandbox's
connection idles for hours).
Must not: know either API's routes or rules (runtime_api.py, invoke_api.py
do); a `serve(request) -> Reply` coroutine is all it calls.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import AsyncIterator, Awaitable, Callable

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from runtime_host.api.http_body import BadBody, BodyLost, Decoder, RequestBody

log = logging.getLogger("runtime_host.api.http_server")

MAX_LINE_BYTES = 8190              # the request line's URL, as aiohttp's and nginx's default
MAX_FIELD_BYTES = 1 << 16          # a client context header may be ~3.5 KB base64, a trace id more
MAX_HEADERS_BYTES = 1 << 18        # all the header (or trailer) fields of one request


@dataclass(slots=True)
class Request:
    method: str
    path: str                      # without the query
    query: str
    headers: object                # case-insensitive mapping (multidict's CIMultiDictProxy)
    content: RequestBody           # the body, as it arrives (its trailers once it has ended)
    remote: str                    # the peer's address
    observed: dict | None = None   # the protocol observer's record of this call, if any


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    # An answer whose body is produced while it is sent (InvokeWithResponseStream):
    # written with Transfer-Encoding: chunked, one chunk per item, `body` ignored.
    stream: AsyncIterator[bytes] | None = None


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
    if reply.stream is not None:              # its chunks follow (Connection._write_stream)
        lines.append("Transfer-Encoding: chunked\r\n\r\n")
        return "".join(lines).encode("latin-1", "replace")
    lines.append(f"Content-Length: {len(reply.body)}\r\n\r\n")
    head = "".join(lines).encode("latin-1", "replace")
    return head + reply.body if len(reply.body) < 65536 else head   # big bodies: written separately


Serve = Callable[[Request], Awaitable[Reply]]


def _bad_request(message: str) -> Reply:
    return Reply(400, f"400 Bad Request: {message}\n".encode(), "text/plain; charset=utf-8")


class _Parsing:
    """What the parser has seen of the request it is reading."""
    __slots__ = ("url", "headers", "header_bytes", "body", "trailers", "in_trailers")

    def __init__(self):
        self.url = bytearray()
        self.headers: CIMultiDict = CIMultiDict()
        self.header_bytes = 0
        self.body: RequestBody | None = None
        self.trailers: dict[str, str] = {}
        self.in_trailers = False


class Connection(asyncio.Protocol):
    """One client connection. Requests are answered one at a time, in order
    (a runtime never pipelines, but HTTP/1.1 allows it), by one task that
    lives as long as the connection has work."""

    def __init__(self, serve: Serve, name: str, internal_error: Reply, idle_timeout_s: float | None = None,
                 body_timeout_s: float | None = None):
        self._loop = asyncio.get_running_loop()
        self._serve = serve
        self._name = name
        self._internal_error = internal_error
        self._idle_timeout_s = idle_timeout_s        # no request in progress for this long: closed
        self._body_timeout_s = body_timeout_s        # a request's body stalls this long: closed
        limits = [t for t in (idle_timeout_s, body_timeout_s) if t is not None]
        self._watch_every_s = min(limits) if limits else None   # how often a watchdog with nothing to do looks again
        self._watchdog: asyncio.TimerHandle | None = None
        self._last_activity = 0.0                    # loop time of the last byte in or answer out
        self._reading_body: RequestBody | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._parsing: _Parsing | None = None
        self._pending: deque[tuple[Request, bool]] = deque()
        self._worker: asyncio.Task | None = None
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._read_holds = 0                         # bodies that asked to pause reading
        self._broken = False                         # the parser refused the stream of requests
        self.transport: asyncio.Transport | None = None
        self.remote = ""

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if peer else ""
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Answers are small and must go at once (a streamed chunk too): no Nagle delay.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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

    # --- flow control --------------------------------------------------------------
    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writer()

    def _wake_writer(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    async def _drain(self) -> None:
        if self._write_paused and self.transport is not None:
            self._drained = self._loop.create_future()
            await self._drained

    def _hold_reading(self) -> None:
        self._read_holds += 1
        if self._read_holds == 1 and self.transport is not None:
            self.transport.pause_reading()

    def _release_reading(self) -> None:
        self._read_holds -= 1
        if self._read_holds == 0 and self.transport is not None:
            self.transport.resume_reading()

    def connection_lost(self, exc) -> None:
        self.transport = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._wake_writer()
        parsing = self._parsing
        if parsing is not None and parsing.body is not None:
            parsing.body.fail(BodyLost("the client closed the connection before its body was complete"))
        # A handler still waiting (a GET next) is left to finish: its answer
        # is dropped, and the sandbox sees the next poll.

    # --- parsing (httptools calls these from feed_data) ---------------------------
    def data_received(self, data: bytes) -> None:
        if self._broken:                            # refused already: the rest is not read
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse("protocol upgrades are not supported")
            return
        except httptools.HttpParserCallbackError as exc:   # one of ours (below) said why
            self._refuse(str(exc.__context__ or exc))
            return
        except httptools.HttpParserError as exc:
            self._refuse(str(exc) or "malformed request")
            return
        if self._watchdog is not None:
            self._last_activity = self._loop.time()  # data came: the clock starts again

    def _refuse(self, message: str) -> None:
        self._broken = True
        parsing, self._parsing = self._parsing, None
        if parsing is not None and parsing.body is not None:
            parsing.body.fail(BadBody(message))
        if self._worker is None:                    # else the request being answered ends the connection
            self._write(_bad_request(message), True)
        elif self.transport is not None:
            self._pending.clear()
            self._pending.append((None, True))      # answered in turn, then the connection ends

    def on_message_begin(self) -> None:
        self._parsing = _Parsing()

    def on_url(self, url: bytes) -> None:
        parsing = self._parsing
        parsing.url += url
        if len(parsing.url) > MAX_LINE_BYTES:
            raise ValueError(f"Got more than {MAX_LINE_BYTES} bytes when reading the request line")

    def on_header(self, name: bytes, value: bytes) -> None:
        parsing = self._parsing
        if len(name) + len(value) > MAX_FIELD_BYTES:
            raise ValueError(f"Got more than {MAX_FIELD_BYTES} bytes when reading header {name[:100]!r}")
        parsing.header_bytes += len(name) + len(value)
        if parsing.header_bytes > MAX_HEADERS_BYTES:
            raise ValueError(f"Got more than {MAX_HEADERS_BYTES} bytes of header fields")
        key, text = name.decode("latin-1"), value.decode("utf-8", "surrogateescape")
        if parsing.in_trailers:                     # after the body: a chunked body's trailers
            parsing.trailers[key] = text
        else:
            parsing.headers.add(key, text)

    def on_headers_complete(self) -> None:
        parsing = self._parsing
        parsing.in_trailers = True
        encoding = parsing.headers.get("Content-Encoding", "").strip().lower()
        decoder = Decoder(encoding) if encoding in ("gzip", "deflate") else None
        parsing.body = RequestBody(self._hold_reading, self._release_reading, decoder)
        raw_path, _, query = parsing.url.decode("latin-1").partition("?")
        request = Request(self._parser.get_method().decode("latin-1"), raw_path, query,
                          CIMultiDictProxy(parsing.headers), parsing.body, self.remote)
        close = not self._parser.should_keep_alive()
        # curl and others wait (1 s) for a go-ahead before a big body, as Go's
        # server (RAPID's) gives it: say continue at once, we read every body.
        if parsing.headers.get("Expect", "").lower() == "100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._pending.append((request, close))
        if self._worker is None:
            self._worker = self._loop.create_task(self._work())

    def on_body(self, data: bytes) -> None:
        self._parsing.body.feed(data)

    def on_message_complete(self) -> None:
        parsing, self._parsing = self._parsing, None
        if parsing is not None and parsing.body is not None:
            parsing.body.finish(parsing.trailers)

    # --- answering -----------------------------------------------------------------
    async def _work(self) -> None:
        try:
            while self._pending and self.transport is not None:
                request, close = self._pending.popleft()
                if request is None:                    # the parser refused what followed
                    self._write(_bad_request("malformed request"), True)
                    return
                body = request.content
                self._reading_body = body
                try:
                    reply = await self._serve(request)
                except BadBody as exc:                 # the client is still there, waiting
                    self._write(_bad_request(str(exc)), True)
                    return
                except BodyLost:
                    return                             # the client went away mid-body: nobody to answer
                except Exception:                      # a bug must not kill the connection's owner
                    log.exception("%s handler failed for %s %s", self._name, request.method, request.path)
                    reply = self._internal_error
                if not body.is_eof() and not await _skip(body):
                    await self._answer(reply, True)    # a body too big to skip: the connection ends here
                    return
                self._reading_body = None
                await self._answer(reply, close)
        finally:
            self._worker = None
            self._reading_body = None
            if self._watchdog is not None:
                self._last_activity = self._loop.time()

    async def _answer(self, reply: Reply, close: bool) -> None:
        if reply.stream is None:
            self._write(reply, close)
        else:
            await self._write_stream(reply, close)

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

    async def _write_stream(self, reply: Reply, close: bool) -> None:
        """Each item of the reply's stream as one chunk, as it comes; the
        writer waits while the client reads slower than the stream produces.
        A client that goes away closes the stream (its producer learns it)."""
        stream = reply.stream
        try:
            if self.transport is None:
                return
            self.transport.write(encode_reply(reply, close))
            async for data in stream:
                if self.transport is None:
                    return
                if data:
                    self.transport.write(b"%x\r\n%b\r\n" % (len(data), data))
                    await self._drain()
            if self.transport is not None:
                self.transport.write(b"0\r\n\r\n")
                if close:
                    self.transport.close()
                    self.transport = None
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()


async def _skip(body: RequestBody, limit: int = 8 * 1024 * 1024) -> bool:
    """Reads and drops a body the handler did not want (a refused request),
    so the kept-alive connection can carry the next one."""
    dropped = 0
    try:
        while chunk := await body.readany():
            dropped += len(chunk)
            if dropped > limit:
                return False
    except (BadBody, BodyLost):
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
