"""One sandbox: a container, its runtime, and the one invocation it may hold.

Owns: the sandbox's side of the Runtime API (what GET next, a result and an
init error do to it), its output attribution, and how it reports its
container's exit. Every state change goes through `self.life` (states.py).

Contract with the pool (written here, as OpenWhisk's ContainerProxy does):
- The pool creates a Sandbox, starts its container, and awaits `ready`, which
  resolves when the runtime first calls GET next and fails with InitFailed if
  the runtime posts init/error or exits first.
- The pool hands a READY sandbox one invocation with `assign`; the sandbox
  delivers it to the runtime's waiting GET next.
- When the runtime, having posted its result, calls GET next again, the
  sandbox ends the invocation and calls `pool.on_released(self)`.
- When the container dies the host calls `on_exit`; the sandbox fails what it
  held and calls `pool.on_dead(self)`.
Must not: talk to Docker (the pool does, through the backend).
"""
from __future__ import annotations

import asyncio
import time

import psutil
from typing import TYPE_CHECKING

from runtime_host.store import logs
from runtime_host.backend.docker.cgroups import ContainerCgroups, Freezer
from runtime_host.core.invocation import Invocation, Outcome, platform_error
from runtime_host.core.protocol import RUNTIME_EXIT_ERROR, RUNTIME_OUT_OF_MEMORY
from runtime_host.core.states import (IllegalTransition, InvocationEvent, InvocationState, SandboxEvent, SandboxLife,
                     SandboxState)

if TYPE_CHECKING:
    from runtime_host.scheduler.pool import FunctionPool

# Output that arrives this long after an invocation ended still belongs to it
# (Docker copies container output asynchronously).
LATE_OUTPUT_S = 0.1          # = pool.OUTPUT_SETTLE_MAX_S

# Go's names for signals (RAPID is written in Go and prints them).
SIGNAL_NAMES = {1: "hangup", 2: "interrupt", 3: "quit", 4: "illegal instruction", 5: "trace/breakpoint trap",
                6: "aborted", 7: "bus error", 8: "floating point exception", 9: "killed",
                10: "user defined signal 1", 11: "segmentation fault", 12: "user defined signal 2",
                13: "broken pipe", 14: "alarm clock", 15: "terminated"}
MAX_SIGNAL = 64


class InvalidRequestId(Exception):
    """A result for an id that is not this sandbox's current invocation (400)."""


class SandboxGone(Exception):
    """The sandbox died or was shut down while its runtime waited in GET next."""


class InitFailed(Exception):
    def __init__(self, error_type: str, detail: str, body: bytes | None = None):
        super().__init__(detail)
        self.error_type, self.detail, self.body = error_type, detail, body

    def outcome(self, request_id: str) -> Outcome:
        if self.body is not None:      # the runtime's own init/error document
            return Outcome(body=self.body, error_type=self.error_type, status="error")
        return platform_error(request_id, self.error_type, self.detail)


def describe_exit(exit_code: int) -> str:
    """Go's wording, as RAPID prints it (spec §3.4)."""
    if 128 < exit_code <= 128 + MAX_SIGNAL:      # a shell's way to say "killed by signal N"
        sig = exit_code - 128
        return f"Runtime exited with error: signal: {SIGNAL_NAMES.get(sig, f'signal {sig}')}"
    if exit_code == 0:
        return "Runtime exited without providing a reason"
    return f"Runtime exited with error: exit status {exit_code}"


class Sandbox:
    def __init__(self, pool: "FunctionPool", sandbox_id: str, ip: str):
        self.pool = pool
        self.function = pool.function
        self.id = sandbox_id
        self.ip = ip
        self.life = SandboxLife()
        self.container_id: str | None = None
        self.cgroups: ContainerCgroups | None = None
        self.created_at = time.monotonic()
        self.init_started_at: float | None = None
        self.init_duration_ms: float | None = None
        self.ready_at: float | None = None
        self.invocation: Invocation | None = None
        self.last_invocation: Invocation | None = None
        self.invocations_served = 0
        self.last_used_at = self.created_at
        self.last_output_at = 0.0
        self.peak_memory_bytes: int | None = None
        self.init_log = bytearray()
        self.exit_code: int | None = None
        self.oom_killed = False
        self._waiter: asyncio.Future[Invocation] | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ready.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)
        self.output_task: asyncio.Task | None = None
        self.freezer: Freezer | None = None
        self.freezes = 0
        self.pid: int | None = None                # the container's first process, on the host
        self.stem_dir = None                       # the folder behind /var/task, when started from a stem cell
        self.runtime_server = None                 # the Runtime API on its own loopback, if it has one
        self.output = None                         # its output FIFO (logs.OutputFifo), if it has one
        self.freeze_timer: asyncio.TimerHandle | None = None   # the pool's freeze grace, from the last release
        self.initialization_type = "on-demand"
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def state(self) -> SandboxState:
        return self.life.state

    def launching(self) -> None:
        """Called just before the container is started: from here on its
        runtime may call the Runtime API."""
        self.life.apply(SandboxEvent.LAUNCH)
        self.init_started_at = time.monotonic()

    def launched(self, pid: int) -> None:
        """The container runs; pid is its first process on the host."""
        self.pid = pid
        try:
            self.cgroups = ContainerCgroups.of_pid(pid)
            self.freezer = Freezer.of(self.cgroups)
            # Init Duration counts from the runtime's exec, not from Docker's
            # container set-up (as in Lambda, where INIT excludes provisioning).
            age_s = time.time() - psutil.Process(pid).create_time()
            self.init_started_at = max(self.init_started_at, time.monotonic() - age_s)
        except (OSError, psutil.Error):
            self.cgroups = None      # already gone; its exit event follows
        if self.ready_at is not None:
            self.init_duration_ms = max(0.0, (self.ready_at - self.init_started_at) * 1000)

    # --- Runtime API: GET next ---------------------------------------------
    async def next_invocation(self) -> Invocation:
        """What GET next returns; raises IllegalTransition (a 403) where the
        runtime may not ask for work."""
        state = self.life.state
        if state is SandboxState.INITIALIZING:
            self.life.apply(SandboxEvent.RUNTIME_READY)
            self.ready_at = time.monotonic()
            self.init_duration_ms = (self.ready_at - self.init_started_at) * 1000
            self.ready.set_result(None)
        elif state is SandboxState.BUSY:
            inv = self.invocation
            if inv.state in (InvocationState.PENDING, InvocationState.RUNNING):
                return self._deliver(inv)          # first delivery, or RAPID's re-delivery
            self._end_invocation(inv)
        elif state is not SandboxState.READY:      # INIT_FAILED, SHUTTING_DOWN, DEAD
            raise IllegalTransition("sandbox", state, SandboxEvent.RUNTIME_READY)
        if self._waiter is not None and not self._waiter.done():
            # The runtime asked again while a poll was open (it reconnected):
            # the old poll is void, and answered as a gone sandbox would be.
            self._waiter.set_exception(SandboxGone(self.id))
            self._waiter.exception()
        self._waiter = asyncio.get_running_loop().create_future()
        inv = await self._waiter
        return self._deliver(inv)

    def _deliver(self, inv: Invocation) -> Invocation:
        first = inv.state is InvocationState.PENDING
        inv.deliver()
        if first:
            if self.invocations_served == 0 and self.init_log:
                inv.append_log(self.init_log)      # a cold start's tail shows its init output
            line = logs.start_line(inv.request_id)
            inv.append_log(line)
            self.pool.sink.write(self.function.name, line)
        return inv

    def _end_invocation(self, inv: Invocation) -> None:
        inv.runtime_next()
        self.last_invocation, self.invocation = inv, None
        self.invocations_served += 1
        self.last_used_at = time.monotonic()
        self.life.apply(SandboxEvent.INVOCATION_DONE)
        self.pool.on_released(self)

    # --- Runtime API: results ----------------------------------------------
    def current_invocation(self, request_id: str) -> Invocation:
        """Validates a result's id before its body is read (RAPID: validate,
        then transition; a transition cannot be undone)."""
        inv = self.invocation
        if inv is None or inv.request_id != request_id or inv.state is InvocationState.PENDING:
            raise InvalidRequestId(request_id)
        if not inv.life.can(InvocationEvent.RESULT):
            raise IllegalTransition("invocation", inv.state, InvocationEvent.RESULT)
        return inv

    def post_result(self, request_id: str, outcome: Outcome) -> None:
        self.current_invocation(request_id).respond(outcome)

    def post_init_error(self, error_type: str, body: bytes) -> None:
        self.life.apply(SandboxEvent.INIT_ERROR)
        if not self.ready.done():
            self.ready.set_exception(InitFailed(error_type, "init error", body))

    # --- the host's side ----------------------------------------------------
    def assign(self, inv: Invocation) -> None:
        self.life.apply(SandboxEvent.ASSIGN)
        self.invocation = inv
        inv.sandbox_id = self.id
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(inv)

    def on_output(self, data: bytes) -> None:
        now = time.monotonic()
        self.last_output_at = now
        inv = self.invocation
        if inv is not None and inv.state is not InvocationState.PENDING:
            inv.append_log(data)
        elif (self.last_invocation is not None and self.last_invocation.ended_at is not None
              and now - self.last_invocation.ended_at < LATE_OUTPUT_S):
            self.last_invocation.append_log(data)
        elif self.invocations_served == 0:
            self.init_log += data
        self.pool.sink.write(self.function.name, data)

    # --- freezing (the pool decides when; the cgroup does it) ----------------
    def freeze(self) -> bool:
        """READY -> FROZEN through the freezer cgroup; False if this sandbox
        has no reachable freezer (the pool then uses the Engine's pause)."""
        if self.freezer is None:
            return False
        self.life.apply(SandboxEvent.FREEZE)
        self.freezer.freeze()
        self.freezes += 1
        return True

    def frozen_by_engine(self) -> None:
        self.life.apply(SandboxEvent.FREEZE)
        self.freezes += 1

    def thaw(self) -> bool:
        """FROZEN -> READY; False if the Engine must unpause it (no freezer)."""
        self.life.apply(SandboxEvent.THAW)
        if self.freezer is None:
            return False
        self.freezer.thaw()
        return True

    def read_memory_peak(self) -> int | None:
        if self.cgroups is not None:
            peak = self.cgroups.memory_peak_bytes()
            if peak is not None:
                self.peak_memory_bytes = peak
        return self.peak_memory_bytes

    def on_exit(self, exit_code: int, oom_killed: bool) -> None:
        if self.life.state is SandboxState.DEAD:
            return
        self.life.apply(SandboxEvent.EXITED)
        self.exit_code, self.oom_killed = exit_code, oom_killed
        error_type = RUNTIME_OUT_OF_MEMORY if oom_killed else RUNTIME_EXIT_ERROR
        detail = describe_exit(exit_code)
        if not self.ready.done():
            self.ready.set_exception(InitFailed(error_type, detail))
        inv = self.invocation
        if inv is not None:
            inv.fail(platform_error(inv.request_id, error_type, detail, status="error"))
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(SandboxGone(self.id))
            self._waiter.exception()           # retrieved: nobody may be waiting any more
        if self.freezer is not None:
            self.freezer.close()
        if self.cgroups is not None:
            self.cgroups.close()
        if not self.exited.done():
            self.exited.set_result(None)
        self.pool.on_dead(self)
