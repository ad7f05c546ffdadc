"""A request body as it arrives: buffered with flow control, decoded if the
client compressed it, ended by its trailers.

Owns: the bytes of one request's body between the parser (http_server.py
feeds them) and a handler (reads them), pausing the connection's reading
while more than HIGH_WATER_BYTES wait unread, so a runtime streaming 200 MB
to a slow caller costs the host a few hundred KB, not 200 MB; gzip and
deflate decoding (Content-Encoding); and the trailers that end a chunked
body (a streaming runtime's mid-stream error travels in them, spec §2.1).
Must not: parse HTTP (http_server.py does) or know any API.
"""
from __future__ import annotations

import asyncio
import zlib
from collections import deque
from typing import AsyncIterator, Callable

HIGH_WATER_BYTES = 256 * 1024     # unread bytes above this pause the connection's reading
LOW_WATER_BYTES = 64 * 1024       # ... and reading resumes once the handler has read down to this


class BadBody(Exception):
    """A body that cannot be decoded (Content-Encoding gzip or deflate that is not): 400."""


class BodyLost(ConnectionResetError):
    """The client went away before its body was complete."""


class Decoder:
    """Content-Encoding gzip or deflate (zlib-wrapped or raw, as clients send both)."""

    def __init__(self, encoding: str):
        self.encoding = encoding
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
        self._first = encoding != "gzip"

    def decode(self, data: bytes) -> bytes:
        try:
            if self._first and data:
                self._first = False
                # RFC 9110 says deflate is zlib-wrapped; some clients send raw deflate.
                if data[0] & 0x0F != 8:
                    self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            return self._inflate.decompress(data)
        except zlib.error:
            raise BadBody(f"Can not decode content-encoding: {self.encoding}") from None

    def flush(self) -> bytes:
        try:
            data = self._inflate.flush()
        except zlib.error:
            raise BadBody(f"Can not decode content-encoding: {self.encoding}") from None
        if not self._inflate.eof and self.encoding == "gzip":
            raise BadBody(f"Can not decode content-encoding: {self.encoding}")
        return data


class RequestBody:
    """Fed by the parser; read by a handler (`readany`, `read`, `iter_any`,
    `read_nowait`, `is_eof`, as aiohttp's StreamReader, which the handlers
    were written against). `pause`/`resume` hold the connection's reading."""

    def __init__(self, pause: Callable[[], None] = lambda: None, resume: Callable[[], None] = lambda: None,
                 decoder: Decoder | None = None):
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._exception: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._pause, self._resume = pause, resume
        self._paused = False
        self._decoder = decoder
        self.trailers: dict[str, str] = {}     # filled in when the body ends (names as sent)
        self.received = 0                      # bytes fed so far (after decoding)

    # --- the parser's side ----------------------------------------------------
    def feed(self, data: bytes) -> None:
        if self._exception is not None or self._eof:
            return
        if self._decoder is not None:
            try:
                data = self._decoder.decode(data)
            except BadBody as exc:
                self.fail(exc)
                return
        if not data:
            return
        self._chunks.append(data)
        self._size += len(data)
        self.received += len(data)
        self._wake()
        if self._size > HIGH_WATER_BYTES and not self._paused:
            self._paused = True
            self._pause()

    def finish(self, trailers: dict[str, str] | None = None) -> None:
        if self._decoder is not None and self._exception is None:
            try:
                rest = self._decoder.flush()
            except BadBody as exc:
                self.fail(exc)
                return
            self._decoder = None
            if rest:
                self.feed(rest)
        self.trailers = trailers or {}
        self._eof = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if self._eof or self._exception is not None:
            return
        self._exception = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # --- the handler's side ----------------------------------------------------
    def is_eof(self) -> bool:
        """All of it has arrived (not necessarily been read), as aiohttp's is_eof."""
        return self._eof

    def read_nowait(self) -> bytes:
        if self._exception is not None:
            raise self._exception
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._taken(len(data))
        return data

    def _taken(self, n: int) -> None:
        self._size -= n
        if self._paused and self._size <= LOW_WATER_BYTES:
            self._paused = False
            self._resume()

    async def readany(self) -> bytes:
        """The next bytes that arrived; b"" at the end. Raises BadBody or BodyLost."""
        while not self._chunks:
            if self._exception is not None:
                raise self._exception
            if self._eof:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        if self._exception is not None:
            raise self._exception
        data = self._chunks.popleft()
        self._taken(len(data))
        return data

    async def read(self) -> bytes:
        parts = []
        while chunk := await self.readany():
            parts.append(chunk)
        return b"".join(parts)

    async def iter_any(self) -> AsyncIterator[bytes]:
        while chunk := await self.readany():
            yield chunk

    iter_chunked = lambda self, _size: self.iter_any()   # noqa: E731 (aiohttp's name; chunk sizes as they come)


def empty_body() -> RequestBody:
    body = RequestBody()
    body.finish()
    return body
