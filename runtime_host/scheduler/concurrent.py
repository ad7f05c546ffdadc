"""A sandbox whose runtime serves several invocations at once
(`max_concurrency = N`, as Lambda Managed Instances do; spec §4.1,
AWS_LAMBDA_MAX_CONCURRENCY; docs/spec-additions.md §5).

Owns: up to N invocations held at once, the events waiting for one of the
runtime's N `GET next` loops, and each invocation's end: its result posted
(and its stream ended) and every extension back in `next` (one loop's next
call says nothing about another loop's invocation, so a concurrent runtime
ends an invocation with its result, as RIE's LMI mode does).
The sandbox is BUSY while it holds any invocation and READY when it holds
none; only then may it be frozen.
Must not: decide placement (the pool reserves slots with `reserve`).
"""
from __future__ import annotations

import asyncio
import time
from collections import deque

from runtime_host.core.extensions import INVOKE, invoke_event
from runtime_host.core.invocation import Outcome, keep_tail
from runtime_host.core.states import IllegalTransition, InvocationEvent, InvocationState, SandboxEvent, SandboxState
from runtime_host.scheduler.invocation import LiveInvocation as Invocation
from runtime_host.scheduler.sandbox import InvalidRequestId, Sandbox, SandboxGone


class ConcurrentSandbox(Sandbox):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.capacity = self.function.max_concurrency
        self.running: dict[str, Invocation] = {}       # held: assigned and not yet ended
        self.reserved = 0                               # slots the pool promised to callers on their way
        self._undelivered: deque[Invocation] = deque()  # assigned, waiting for a free GET next
        self._loops: deque[asyncio.Future] = deque()    # GET nexts waiting for an event

    # --- what the pool asks -------------------------------------------------------
    @property
    def free_slots(self) -> int:
        return self.capacity - len(self.running) - self.reserved

    def reserve(self) -> None:
        self.reserved += 1

    def unreserve(self) -> None:
        """A caller that reserved a slot gave it up before its invocation was assigned."""
        self.reserved = max(0, self.reserved - 1)

    def held(self) -> list[Invocation]:
        return [*self.running.values()]

    @property
    def invocation(self) -> Invocation | None:
        """One of those it holds (for views that show one)."""
        return next(iter(self.running.values()), None)

    @invocation.setter
    def invocation(self, value) -> None:
        pass                                            # the base class's single slot is not used here

    # --- Runtime API: GET next ------------------------------------------------------
    async def next_invocation(self) -> Invocation:
        state = self.life.state
        if state is SandboxState.INITIALIZING:
            self.life.apply(SandboxEvent.RUNTIME_READY)
            self.extensions.close_registration()
            self.extensions.when_idle(self._init_done)
        elif state not in (SandboxState.READY, SandboxState.BUSY, SandboxState.FROZEN):
            # FROZEN: a loop whose invocation ended with its result asks for the
            # next one a moment later; the pool may have frozen the sandbox in
            # between (the request left before the freeze). It waits like the others.
            raise IllegalTransition("sandbox", state, SandboxEvent.RUNTIME_READY)
        if self._undelivered:
            return self._deliver(self._undelivered.popleft())
        loop = asyncio.get_running_loop().create_future()
        self._loops.append(loop)
        try:
            inv = await loop
        finally:
            if loop in self._loops:
                self._loops.remove(loop)
        return self._deliver(inv)

    def assign(self, inv: Invocation) -> None:
        if self.reserved:
            self.reserved -= 1
        if not self.running:
            self.life.apply(SandboxEvent.ASSIGN)
        self.running[inv.request_id] = inv
        inv.sandbox_id = self.id
        if self.extensions.any:
            self.extensions.deliver(INVOKE, invoke_event(inv.request_id, inv.deadline_ms, inv.invoked_arn,
                                                         inv.trace_id))
        while self._loops:
            loop = self._loops.popleft()
            if not loop.done():
                loop.set_result(inv)
                return
        self._undelivered.append(inv)

    # --- Runtime API: results ---------------------------------------------------------
    def current_invocation(self, request_id: str) -> Invocation:
        inv = self.running.get(request_id)
        if inv is None or inv.state is InvocationState.PENDING:
            raise InvalidRequestId(request_id)
        if not inv.life.can(InvocationEvent.RESULT):
            raise IllegalTransition("invocation", inv.state, InvocationEvent.RESULT)
        return inv

    def post_result(self, request_id: str, outcome: Outcome) -> None:
        inv = self.current_invocation(request_id)
        inv.respond(outcome)
        if outcome.stream is None:
            self._runtime_finished(inv)
        else:                                           # a stream ends the invocation at its end
            outcome.stream.done.add_done_callback(lambda _: self._runtime_finished(inv))

    def _runtime_finished(self, inv: Invocation) -> None:
        if self.running.get(inv.request_id) is not inv:
            return
        self._runtime_done(inv)
        self.extensions.when_idle(lambda: self._end(inv))

    def _end(self, inv: Invocation) -> None:
        if self.running.pop(inv.request_id, None) is not inv or inv.state is not InvocationState.RESPONDED:
            return
        if self.extensions.any:                         # their time after the response is the invocation's
            inv.extensions_done_at = time.monotonic()
        inv.runtime_next()
        self._ended(inv)

    def drop(self, inv: Invocation) -> None:
        """It failed (its timeout) while the sandbox lives on: its slot is free again."""
        if self.running.pop(inv.request_id, None) is inv:
            if inv in self._undelivered:
                self._undelivered.remove(inv)
            self._ended(inv)

    def _ended(self, inv: Invocation) -> None:
        self.last_invocation = inv
        self.invocations_served += 1
        self.last_used_at = time.monotonic()
        if not self.running and self.life.can(SandboxEvent.INVOCATION_DONE):
            self.life.apply(SandboxEvent.INVOCATION_DONE)
        self.listener.sandbox_released(self)

    # --- output: with several invocations at once, a line cannot be told apart -------
    def output_moved_on(self, inv: Invocation) -> bool:
        """Never: invocations here overlap, and output is not told apart by them."""
        return False

    def _route_output(self, data: bytes) -> None:
        self.last_output_at = time.monotonic()
        running = [inv for inv in self.running.values() if inv.state is not InvocationState.PENDING]
        for inv in running:                 # each Tail shows what the sandbox printed while it ran
            inv.append_log(data)
        if not running and self.invocations_served == 0:
            keep_tail(self.init_log, data)
        # With one invocation running its lines are its; with several, none can be told apart.
        self.log_writer.write(self.function.name, data, source=self,    # whole lines, not cut by another's
                              stream=self.log_stream, request_id=running[0].request_id if len(running) == 1 else None)
        if self.telemetry.wants_logs:
            self.telemetry.function_output(data)

    def _no_more_events(self) -> None:
        while self._loops:
            loop = self._loops.popleft()
            if not loop.done():
                loop.set_exception(SandboxGone(self.id))
                loop.exception()
