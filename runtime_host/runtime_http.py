"""The HTTP/1.1 server under the Runtime API: lean, because it is on every
invocation's path three times over.

aiohttp's web layer (Request, Response, router, middlewares) costs about
110 µs of the host's CPU per request; the Runtime API has five fixed routes,
small fixed-shape answers and one caller per connection, so this module
drives aiohttp's own HTTP parser (llhttp, `aiohttp.http.HttpRequestParser`)
from a plain asyncio protocol and writes answers as bytes, at about a third
of that (bench: `make bench`, warm latency). The Invoke API, which users'
tools talk to, stays on aiohttp's web layer.

Owns: parsing requests, keep-alive, one answer per request in order, and the
wire format of answers (status line, Date, Content-Type, Content-Length).
Must not: know the Runtime API's routes or rules (runtime_api.py does); a
`serve(request) -> Reply` coroutine is all it calls.
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

log = logging.getLogger("runtime_host.runtime_http")

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


def encode_reply(reply: Reply, close: bool) -> bytes:
    lines = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Unknown')}\r\nDate: {_date()}\r\n"]
    if reply.content_type is not None:
        lines.append(f"Content-Type: {reply.content_type}\r\n")
    for name, value in reply.headers.items():
        lines.append(f"{name}: {value}\r\n")
    if close:
        lines.append("Connection: close\r\n")
    lines.append(f"Content-Length: {len(reply.body)}\r\n\r\n")
    head = "".join(lines).encode("latin-1", "replace")
    return head + reply.body if len(reply.body) < 65536 else head   # big bodies: written separately


Serve = Callable[[Request], Awaitable[Reply]]


class Connection(BaseProtocol):
    """One client connection. Requests are answered one at a time, in order
    (a runtime never pipelines, but HTTP/1.1 allows it), by one task that
    lives as long as the connection has work."""

    def __init__(self, serve: Serve):
        loop = asyncio.get_running_loop()
        super().__init__(loop)
        self._serve = serve
        self._parser = HttpRequestParser(self, loop, READ_BUFFER_BYTES, max_line_size=MAX_LINE_BYTES,
                                         max_field_size=MAX_FIELD_BYTES, payload_exception=ConnectionResetError)
        self._pending: deque = deque()
        self._worker: asyncio.Task | None = None
        self.remote = ""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if peer else ""

    def connection_lost(self, exc) -> None:
        super().connection_lost(exc)
        self.transport = None
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
        if not messages:
            return
        for message, payload in messages:
            # curl and others wait (1 s) for a go-ahead before a big body, as Go's
            # server (RAPID's) gives it: say continue at once, we read every body.
            if not payload.is_eof() and message.headers.get("Expect", "").lower() == "100-continue":
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._pending.extend(messages)
        if self._worker is None:
            self._worker = self._loop.create_task(self._work())

    async def _work(self) -> None:
        try:
            while self._pending and self.transport is not None:
                message, payload = self._pending.popleft()
                raw_path, _, query = message.path.partition("?")
                request = Request(message.method, raw_path, query, message.headers, payload, self.remote)
                try:
                    reply = await self._serve(request)
                except ConnectionResetError:           # the client went away mid-body: nobody to answer
                    return
                except Exception:                      # a bug must not kill the connection's owner
                    log.exception("Runtime API handler failed for %s %s", message.method, raw_path)
                    reply = Reply(500, b'{"errorMessage":"Internal Server Error","errorType":"InternalServerError"}\n')
                if not payload.is_eof() and not await _drain(payload):
                    self._write(reply, True)           # a body too big to skip: the connection ends here
                    return
                self._write(reply, message.should_close)
        finally:
            self._worker = None

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


async def start_server(serve: Serve, *, host: str | None = None, port: int | None = None,
                       sock=None) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: Connection(serve), host=host, port=port, sock=sock)
