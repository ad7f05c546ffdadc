"""Telemetry of one sandbox: its subscriptions, their buffers, delivery
(spec §8.2, §8.3).

Owns: the subscriptions its extensions made (Telemetry API or Logs API),
each one's buffer flushed at `maxItems`, `maxBytes` or `timeoutMs`, batches
POSTed in order to the subscriber's HTTP listener inside the sandbox (or
written, one JSON a line, to its TCP port), the platform events emitted
before anyone subscribed (replayed to a subscriber made during init, so it
sees the init's own events), and the function's and extensions' output cut
into lines.
Must not: decide what happened (the sandbox and the pool emit events).
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Callable

import aiohttp

from runtime_host.core.extensions import ExtensionRefusal
from runtime_host.core.logformat import platform_event as event
from runtime_host.core.telemetry import SubscriptionRequest, carried_by, category, parse_subscription

log = logging.getLogger("runtime_host.scheduler.telemetry")

BACKLOG_EVENTS = 1000           # platform events kept for a subscriber made later in the init
QUEUED_BATCHES = 100            # a subscriber that stops reading loses what is beyond this
DROPPED_REASON = ("Some logs were dropped because the downstream consumer is slower than the logs production "
                  "rate")
CONNECT_TIMEOUT_S = 5.0         # a batch to a frozen sandbox waits for its thaw, as on Lambda: no total limit


@dataclass(eq=False)
class Subscriber:
    name: str
    request: SubscriptionRequest
    items: list[dict] = field(default_factory=list)
    size: int = 0
    timer: asyncio.TimerHandle | None = None
    queue: asyncio.Queue | None = None
    sender: asyncio.Task | None = None
    sending: bool = False
    dropped_records: int = 0
    dropped_bytes: int = 0


class Lines:
    """Output cut into lines, the tail kept until its newline comes."""

    def __init__(self):
        self._rest = b""

    def feed(self, data: bytes) -> list[str]:
        data = self._rest + data
        *lines, self._rest = data.split(b"\n")
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]


class SandboxTelemetry:
    def __init__(self, address: Callable[[], str | None]):
        self._address = address                  # the sandbox's address, as the host reaches it
        self.subscribers: list[Subscriber] = []
        self.backlog: list[dict] | None = []     # None once the init is over
        self.on_subscribed: Callable[[Subscriber], None] = lambda sub: None
        self.function_lines = Lines()
        self.extension_lines: dict[str, Lines] = {}
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @property
    def wants_logs(self) -> bool:
        return any({"function", "extension"} & s.request.types for s in self.subscribers)

    # --- subscribing ----------------------------------------------------------------
    def subscribe(self, name: str, api: str, body: bytes) -> Subscriber:
        request = parse_subscription(api, body)
        if any(s.name == name and s.request.api == api for s in self.subscribers):
            raise ExtensionRefusal(400, "ValidationError", f"{name} is subscribed already")
        sub = Subscriber(name, request)
        self.subscribers.append(sub)
        for ev in self.backlog or []:
            self._add(sub, ev)
        self.on_subscribed(sub)
        return sub

    def end_backlog(self) -> None:
        """The init is over: events from now on go only to who is subscribed."""
        self.backlog = None

    # --- events --------------------------------------------------------------------
    def emit(self, event_type: str, record, epoch_s: float | None = None) -> None:
        if not self.subscribers and self.backlog is None:
            return
        ev = event(event_type, record, epoch_s)
        if self.backlog is not None and category(event_type) == "platform" and len(self.backlog) < BACKLOG_EVENTS:
            self.backlog.append(ev)
        for sub in self.subscribers:
            self._add(sub, ev)

    def function_output(self, data: bytes) -> None:
        for line in self.function_lines.feed(data):
            self.emit("function", line)

    def extension_output(self, name: str, data: bytes) -> None:
        for line in self.extension_lines.setdefault(name, Lines()).feed(data):
            self.emit("extension", line)

    def _add(self, sub: Subscriber, ev: dict) -> None:
        request = sub.request
        if category(ev["type"]) not in request.types or not carried_by(ev["type"], request.api, request.schema):
            return
        if request.api == "logs" and ev["type"] == "platform.telemetrySubscription":
            return
        sub.items.append(ev)
        sub.size += len(json.dumps(ev))
        if len(sub.items) >= request.max_items or sub.size >= request.max_bytes:
            self._flush(sub)
        elif sub.timer is None:
            sub.timer = asyncio.get_running_loop().call_later(request.timeout_ms / 1000, self._flush, sub)

    # --- delivery ------------------------------------------------------------------
    def flush_all(self) -> None:
        for sub in self.subscribers:
            self._flush(sub)

    def _flush(self, sub: Subscriber) -> None:
        if sub.timer is not None:
            sub.timer.cancel()
            sub.timer = None
        if not sub.items or self._closed:
            return
        batch, sub.items, sub.size = sub.items, [], 0
        if sub.queue is None:
            sub.queue = asyncio.Queue()
            sub.sender = asyncio.get_running_loop().create_task(self._send_in_order(sub))
        if sub.queue.qsize() >= QUEUED_BATCHES:        # it stopped reading: drop, and say so
            sub.dropped_records += len(batch)
            sub.dropped_bytes += sum(len(json.dumps(e)) for e in batch)
            return
        sub.queue.put_nowait(batch)

    def idle(self) -> bool:
        """Nothing buffered or on its way (the pool freezes a sandbox only then)."""
        return all(not s.items and not s.sending and (s.queue is None or s.queue.empty()) for s in self.subscribers)

    async def _send_in_order(self, sub: Subscriber) -> None:
        while True:
            batch = await sub.queue.get()
            address = self._address()
            if address is None:
                continue
            sub.sending = True
            try:
                if sub.request.protocol == "HTTP":
                    await self._post(f"http://{address}:{sub.request.port}{sub.request.path}", batch)
                else:
                    await self._write_tcp(address, sub.request.port, batch)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                log.info("telemetry for %s not delivered: %s", sub.name, exc or type(exc).__name__)
                sub.dropped_records += len(batch)
                sub.dropped_bytes += sum(len(json.dumps(e)) for e in batch)
            else:
                self._report_dropped(sub)
            finally:
                sub.sending = False

    def _report_dropped(self, sub: Subscriber) -> None:
        """Once it reads again, a subscriber learns what it lost (platform.logsDropped)."""
        if not sub.dropped_records:
            return
        record = {"droppedBytes": sub.dropped_bytes, "droppedRecords": sub.dropped_records,
                  "reason": DROPPED_REASON}
        sub.dropped_records = sub.dropped_bytes = 0
        self._add(sub, event("platform.logsDropped", record))

    async def _post(self, url: str, batch: list[dict]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S))
        async with self._session.post(url, data=json.dumps(batch), headers={"Content-Type": "application/json"}) as r:
            await r.read()

    async def _write_tcp(self, address: str, port: int, batch: list[dict]) -> None:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), CONNECT_TIMEOUT_S)
        writer.write(b"".join(json.dumps(e).encode() + b"\n" for e in batch))
        await writer.drain()
        writer.close()

    async def close(self) -> None:
        self._closed = True
        for sub in self.subscribers:
            if sub.timer is not None:
                sub.timer.cancel()
            if sub.sender is not None:
                sub.sender.cancel()
        if self._session is not None:
            await self._session.close()
