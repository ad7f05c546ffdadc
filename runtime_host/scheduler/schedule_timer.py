"""Schedules: functions invoked on their EventBridge rate and cron expressions.

Owns: one task per rule (a function's `schedule` entry) that sleeps until the rule's next fire
time on the schedule clock, hands EventBridge's Scheduled Event to `invoke_async` (an Event
invocation: durable, retried and sent to destinations as any other) and computes the next time
from the clock's reading after the fire. A rate starts when the timer starts (on EventBridge, when
the rule is created); a time that passed while the host was down is not fired, nor is a burst
of them after the machine slept (one late fire, then the schedule goes on), as EventBridge does
not fire missed times either.
`ScaledClock(scale)` runs the schedule clock `scale` times faster than UTC from the moment it is
made (`serve --schedule-clock-scale 60`: a scheduled minute every second); tests pass a clock of
their own (`now()`, `sleep(seconds)`).
Must not: run an invocation itself, know the host (it is given a callable), or parse
expressions (core/schedules does).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Awaitable, Callable, Protocol

from runtime_host.core.config import FunctionConfig
from runtime_host.core.schedules import Schedule, rule_arn, rule_names, scheduled_event

log = logging.getLogger("runtime_host.scheduler.schedule_timer")

# The longest single sleep, in seconds of schedule time: the clock is read again at least this
# often, so a wall clock that was set, or a machine that slept, is noticed within a minute.
MAX_NAP_S = 60.0


class ScheduleClock(Protocol):
    def now(self) -> datetime: ...                         # aware, UTC

    async def sleep(self, seconds: float) -> None: ...     # seconds of this clock's time


class ScaledClock:
    """UTC, running `scale` times faster than the wall clock from when it is made (1: UTC itself)."""

    def __init__(self, scale: float = 1.0):
        if scale <= 0:
            raise ValueError(f"a schedule clock scale must be positive, not {scale}")
        self.scale = scale
        self._origin = time.time()

    def now(self) -> datetime:
        wall = time.time()
        return datetime.fromtimestamp(self._origin + (wall - self._origin) * self.scale, timezone.utc)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.scale)


@dataclass(frozen=True)
class Rule:
    """One schedule of one function, named as an EventBridge rule."""
    function: str
    name: str
    schedule: Schedule

    @property
    def expression(self) -> str:
        return self.schedule.expression


class ScheduleTimer:
    def __init__(self, functions: dict[str, FunctionConfig], region: str,
                 invoke_async: Callable[[FunctionConfig, bytes], Awaitable[str]], clock: ScheduleClock | None = None):
        self.functions = functions
        self.region = region
        self._invoke_async = invoke_async
        self.clock: ScheduleClock = clock if clock is not None else ScaledClock()
        self.rules = [Rule(fn.name, name, schedule)
                      for fn in functions.values()
                      for name, schedule in zip(rule_names(fn.name, len(fn.schedules)), fn.schedules)]
        self.next_at: dict[str, datetime | None] = {}      # rule name -> its next fire time (None: never again)
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        started_at = self.clock.now()
        loop = asyncio.get_running_loop()
        for rule in self.rules:
            self.next_at[rule.name] = rule.schedule.next_after(started_at, started_at)
            when = self.next_at[rule.name]
            log.info("schedule %s of %s (rule %s): first at %s", rule.expression, rule.function, rule.name,
                     _stamp(when) if when is not None else "never (no such time before 2200)")
            task = loop.create_task(self._run(rule, started_at), name=f"schedule {rule.name}")
            task.add_done_callback(_report_crash)
            self._tasks.append(task)

    async def stop(self) -> None:
        """No more fires; what was fired is already queued (and delivered by the async delivery)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, rule: Rule, started_at: datetime) -> None:
        while (when := self.next_at[rule.name]) is not None:
            while (left_s := (when - self.clock.now()).total_seconds()) > 0:
                await self.clock.sleep(min(left_s, MAX_NAP_S))
            await self._fire(rule, when)
            # From the clock's reading, not from `when`: times that passed meanwhile are not fired.
            after = max(when, self.clock.now())
            self.next_at[rule.name] = rule.schedule.next_after(after, started_at)
        log.info("schedule %s of %s: no fire time left before 2200", rule.expression, rule.function)

    async def _fire(self, rule: Rule, when: datetime) -> None:
        fn = self.functions.get(rule.function)
        if fn is None:
            return
        event = scheduled_event(rule_arn(self.region, rule.name), when, self.region)
        try:
            request_id = await self._invoke_async(fn, json.dumps(event).encode())
        except Exception as exc:                   # the queue refused it (the host is stopping): not fired
            log.warning("schedule %s of %s could not fire at %s: %s", rule.expression, fn.name, _stamp(when), exc)
            return
        log.info("schedule %s fired for %s: %s", rule.expression, fn.name, request_id)


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _report_crash(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped: %r", task.get_name(), task.exception())
