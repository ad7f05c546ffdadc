"""One streamed response, from the runtime's chunked POST to its caller.

Owns: the bytes between the two sides, at most BUFFER_BYTES of them (a slow
caller slows the runtime's POST, as a full TCP window would on Lambda;
200 MB never sit in the host), the size cap and, for an
InvokeWithResponseStream caller, the bandwidth shaping (core/streaming.py),
and how the stream ended (`end`, once; the first to say wins: the runtime's
trailers, the cap, or the platform's timeout or crash).
A caller that goes away (`detach`) does not stop the function: what it
writes from then on is counted and dropped (spec §2.2).
Must not: parse HTTP or frame events (the APIs do).
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import AsyncIterator

from runtime_host.core.streaming import StreamEnd, TokenBucket, too_large

BUFFER_BYTES = 1024 * 1024


class ResponseStream:
    def __init__(self, content_type: str, limit_bytes: int, shaped: bool):
        self.content_type = content_type
        self.limit_bytes = limit_bytes
        self._bucket = TokenBucket() if shaped else None
        self._loop = asyncio.get_running_loop()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._has_data: asyncio.Future[None] | None = None
        self._has_room: asyncio.Future[None] | None = None
        self.size = 0                       # bytes the runtime sent (past the cap too)
        self.delivered = 0                  # bytes handed to the caller
        self.shaped_s = 0.0                 # time the bandwidth rule held the runtime back
        self.detached = False
        self.end: StreamEnd | None = None
        self.done: asyncio.Future[StreamEnd] = self._loop.create_future()

    # --- the runtime's side -----------------------------------------------------
    async def write(self, data: bytes) -> bool:
        """Passes one chunk on; False once the stream has ended (over the
        cap, or ended by the platform): the runtime's body is not wanted."""
        if self.end is not None:
            return False
        self.size += len(data)
        if self.size > self.limit_bytes:
            keep = len(data) - (self.size - self.limit_bytes)
            if keep > 0:
                self._push(data[:keep])
            self.finish(too_large(self.size, self.limit_bytes))
            return False
        if self._bucket is not None:
            wait_s = self._bucket.delay(len(data), self._loop.time())
            if wait_s > 0:
                self.shaped_s += wait_s
                await asyncio.sleep(wait_s)
        self._push(data)
        while self._buffered > BUFFER_BYTES and not self.detached and self.end is None:
            self._has_room = self._loop.create_future()
            await self._has_room
        return self.end is None

    def _push(self, data: bytes) -> None:
        if self.detached or not data:
            return
        self._chunks.append(data)
        self._buffered += len(data)
        _wake(self._has_data)

    def finish(self, end: StreamEnd) -> None:
        """The stream is over (idempotent: the first end stands)."""
        if self.end is not None:
            return
        self.end = end
        _wake(self._has_data)
        _wake(self._has_room)
        self.done.set_result(end)

    # --- the caller's side ------------------------------------------------------
    async def chunks(self) -> AsyncIterator[bytes]:
        """The bytes as they come, until the end (then see `end`)."""
        while True:
            while self._chunks:
                data = self._chunks.popleft()
                self._buffered -= len(data)
                self.delivered += len(data)
                if self._buffered <= BUFFER_BYTES:
                    _wake(self._has_room)
                yield data
            if self.end is not None:
                return
            self._has_data = self._loop.create_future()
            await self._has_data

    def detach(self) -> None:
        """The caller went away: drop what waits and what comes."""
        self.detached = True
        self._chunks.clear()
        self._buffered = 0
        _wake(self._has_room)


def _wake(waiter: asyncio.Future | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
