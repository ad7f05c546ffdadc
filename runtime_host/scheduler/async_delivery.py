"""Delivering asynchronous (`Event`) invocations, as Lambda's internal queue
does (spec §7; docs/spec-additions.md §7).

Owns: accepting an event (committed to the durable queue before the caller
gets its 202, under the request id the function will see), handing due
events to the scheduler, retrying function errors (the function's
maximum_retry_attempts, after Lambda's backoff) and throttles or sandbox
failures (backoff up to the event's maximum age), and sending the outcome
to the function's on-success or on-failure destination.
`retry_scale` shrinks every wait (1.0 = Lambda's; tests and impatient users
use less); the order of things is Lambda's either way.
Must not: run an invocation itself (the scheduler does) or know HTTP.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

from runtime_host.core.async_invoke import (EVENT_AGE_EXCEEDED, RETRIES_EXHAUSTED, SUCCESS, AsyncConfig, Destination,
                                            destination_record, from_stored, retry_delay_s, throttle_delay_s,
                                            to_stored)
from runtime_host.core.config import FunctionConfig
from runtime_host.core.invocation import Outcome
from runtime_host.scheduler.context import SandboxStartFailed, StateDiskFull, Stopping, Throttled
from runtime_host.scheduler.invocation import LiveInvocation
from runtime_host.store.event_queue import DONE, FAILED, QUEUED, EventQueue, QueuedEvent

log = logging.getLogger("runtime_host.scheduler.async_delivery")

MAX_AT_ONCE = 64               # events being delivered at once (the rest wait in the queue)
IDLE_LOOK_S = 5.0              # with nothing due, the queue is looked at again this often


@dataclass
class DeliveryCounts:
    """Per function, since the host started (read by GET /metrics, api/metrics.py)."""
    dropped: Counter = field(default_factory=Counter)               # given up on: retries or event age exhausted
    dead_letter_errors: Counter = field(default_factory=Counter)    # on-failure records that could not be delivered
    destination_failures: Counter = field(default_factory=Counter)  # any destination's record not delivered


class AsyncDelivery:
    def __init__(self, queue: EventQueue, functions: dict[str, FunctionConfig], region: str,
                 new_invocation: Callable[..., LiveInvocation], run: Callable[[LiveInvocation], Awaitable[Outcome]],
                 retry_scale: float = 1.0):
        self.queue = queue
        self.functions = functions
        self.region = region
        self._new_invocation = new_invocation
        self._run = run
        self.retry_scale = retry_scale
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task] = set()
        self._throttles: dict[str, int] = {}
        self._dispatcher: asyncio.Task | None = None
        self._stopping = False
        self.started_at = time.time()
        self.overrides: dict[str, tuple[AsyncConfig, float]] = {}   # PutFunctionEventInvokeConfig: (config, when)
        self.counts = DeliveryCounts()

    async def start(self) -> None:
        waiting = await self.queue.open()
        for name in self.functions:
            stored = await self.queue.get_config(name)
            if stored is not None:
                self.overrides[name] = (from_stored(stored["config"]), stored["last_modified"])
        if waiting:
            log.info("%d queued event(s) from before this start will be delivered", waiting)
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch_forever())

    def config_of(self, fn: FunctionConfig) -> AsyncConfig:
        override = self.overrides.get(fn.name)
        return override[0] if override is not None else fn.async_invoke

    def api_config(self, fn: FunctionConfig) -> tuple[AsyncConfig, float] | None:
        """What GetFunctionEventInvokeConfig shows: the API's, else function.toml's [async] if it has one."""
        if fn.name in self.overrides:
            return self.overrides[fn.name]
        return (fn.async_invoke, self.started_at) if fn.async_invoke != AsyncConfig() else None

    async def set_config(self, fn: FunctionConfig, config: AsyncConfig | None) -> None:
        """Put (or, with None, delete) the function's event-invoke configuration; kept across restarts."""
        if config is None:
            self.overrides.pop(fn.name, None)
            await self.queue.put_config(fn.name, None)
            return
        now = time.time()
        self.overrides[fn.name] = (config, now)
        await self.queue.put_config(fn.name, {"config": to_stored(config), "last_modified": now})

    # --- accepting ------------------------------------------------------------------
    async def accept(self, fn: FunctionConfig, payload: bytes, *, qualifier: str | None = None,
                     trace_id: str | None = None) -> str:
        """Queues an event durably; returns its request id (the one the function will see).
        Raises StateDiskFull when it cannot be queued."""
        now = time.time()
        event = QueuedEvent(request_id=str(uuid.uuid4()), function=fn.name, payload=payload, qualifier=qualifier,
                            trace_id=trace_id, received_at=now, next_attempt_at=now)
        try:
            await self.queue.put(event)
        except OSError as exc:      # not queued: refused, never a 202 for an event that could be lost
            raise StateDiskFull(f"the event could not be queued durably ({exc}); free space on the disk of "
                                "the host's state directory") from None
        self._wake.set()
        return event.request_id

    # --- delivering -----------------------------------------------------------------
    async def _dispatch_forever(self) -> None:
        while not self._stopping:
            self._wake.clear()
            room = MAX_AT_ONCE - len(self._running)
            due = await self.queue.claim_due(time.time(), room) if room > 0 else []
            for event in due:
                task = asyncio.get_running_loop().create_task(self._deliver(event))
                self._running.add(task)
                task.add_done_callback(self._finished)
            if due and len(due) == room:
                continue
            next_at = await self.queue.next_due_at()
            wait_s = IDLE_LOOK_S if next_at is None else max(0.0, min(IDLE_LOOK_S, next_at - time.time()))
            try:
                await asyncio.wait_for(self._wake.wait(), wait_s)
            except asyncio.TimeoutError:
                pass

    def _finished(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        self._wake.set()                           # room for one more
        if not task.cancelled() and task.exception() is not None:
            log.error("event delivery failed: %r", task.exception())

    async def _deliver(self, event: QueuedEvent) -> None:
        fn = self.functions.get(event.function)
        if fn is None:
            await self._give_up(event, None, f"function {event.function} is no longer served", None)
            return
        config = self.config_of(fn)
        if time.time() - event.received_at > config.maximum_event_age_s:
            await self._give_up(event, fn, f"older than maximum_event_age_s = {config.maximum_event_age_s}", None,
                                condition=EVENT_AGE_EXCEEDED)
            return
        inv = self._new_invocation(fn, event.payload, qualifier=event.qualifier, trace_id=event.trace_id)
        inv.request_id = event.request_id          # the 202's id is the invocation's (its log, REPORT, ledger)
        try:
            outcome = await self._run(inv)
        except (Throttled, SandboxStartFailed) as exc:
            throttles = self._throttles.get(event.request_id, 0) + 1
            self._throttles[event.request_id] = throttles
            await self._again(event, throttle_delay_s(throttles, self.retry_scale), f"{type(exc).__name__}: {exc}")
            return
        except (Stopping, asyncio.CancelledError):
            event.state = QUEUED                   # delivered after the restart
            await self.queue.save(event)
            raise
        self._throttles.pop(event.request_id, None)
        if self._stopping and outcome.platform:    # ended by the host stopping: not the function's try
            event.state = QUEUED
            await self.queue.save(event)
            return
        event.attempts += 1
        if not outcome.is_error:
            event.state, event.finished_at, event.last_error = DONE, time.time(), None
            await self.queue.save(event)
            await self._send(fn, config.on_success, event, outcome, SUCCESS)
            return
        error = f"{outcome.error_type}: {_message(outcome.body)}"
        if event.attempts <= config.maximum_retry_attempts:
            await self._again(event, retry_delay_s(event.attempts, self.retry_scale), error)
            return
        await self._give_up(event, fn, error, outcome, condition=RETRIES_EXHAUSTED)

    async def _again(self, event: QueuedEvent, delay_s: float, error: str) -> None:
        event.state, event.next_attempt_at, event.last_error = QUEUED, time.time() + delay_s, error
        await self.queue.save(event)
        self._wake.set()

    async def _give_up(self, event: QueuedEvent, fn: FunctionConfig | None, error: str, outcome: Outcome | None,
                       condition: str = RETRIES_EXHAUSTED) -> None:
        event.state, event.finished_at, event.last_error = FAILED, time.time(), error
        await self.queue.save(event)
        log.warning("event %s for %s dropped after %d attempt(s): %s", event.request_id, event.function,
                    event.attempts, error)
        self.counts.dropped[event.function] += 1
        if fn is not None:
            await self._send(fn, self.config_of(fn).on_failure, event, outcome, condition)

    async def _send(self, fn: FunctionConfig, destination: Destination | None, event: QueuedEvent,
                    outcome: Outcome | None, condition: str) -> None:
        if destination is None:
            return
        record = destination_record(
            request_id=event.request_id, function_arn=fn.arn(self.region, "$LATEST"), condition=condition,
            invoke_count=event.attempts, payload=event.payload, status_code=200 if outcome is not None else None,
            function_error="Unhandled" if outcome is not None and outcome.is_error else None,
            response=outcome.body if outcome is not None and outcome.stream is None else None)
        body = json.dumps(record).encode()
        if destination.kind == "function":
            target = self.functions.get(destination.target)
            if target is None:
                log.error("destination function %s of %s is not served; the record of %s is lost",
                          destination.target, fn.name, event.request_id)
                self._not_delivered(fn, condition)
                return
            await self.accept(target, body)        # Lambda invokes a destination function asynchronously
        else:
            folder = Path(destination.target)
            try:
                await asyncio.get_running_loop().run_in_executor(None, _write_record, folder, event.request_id,
                                                                 condition, body)
            except OSError:
                self._not_delivered(fn, condition)
                raise                              # logged with its traceback by _finished

    def _not_delivered(self, fn: FunctionConfig, condition: str) -> None:
        self.counts.destination_failures[fn.name] += 1
        if condition != SUCCESS:                   # the on-failure record: Lambda's dead-letter path
            self.counts.dead_letter_errors[fn.name] += 1

    async def stop_taking(self) -> None:
        """No more events are started; those being delivered go on (the host drains them)."""
        self._stopping = True
        self._wake.set()
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)

    async def stop(self) -> None:
        """After the host's drain: what is still being delivered is queued again
        for the next start (at least once, as Lambda)."""
        await self.stop_taking()
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)


def _write_record(folder: Path, request_id: str, condition: str, body: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    path = folder / f"{stamp}-{condition}-{request_id}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(body)
    tmp.replace(path)                              # a reader never sees half a record


def _message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("errorMessage", ""))[:500]
    except (ValueError, AttributeError):
        return body[:500].decode("utf-8", "replace")
