"""One sandbox: a container, its runtime, and the one invocation it may hold.

Owns: the sandbox's side of the Runtime API (what GET next, a result and an
init error do to it), its output attribution, and what its container's exit
does to what it held. Every state change goes through `self.life`
(core/states.py).

Contract with the pool (written here, as OpenWhisk's ContainerProxy does):
- The pool creates a Sandbox, has the backend create and start its
  container (`attach`, `launching`, `launched`), and awaits `ready`, which
  resolves when the runtime first calls GET next and fails with InitFailed if
  the runtime posts init/error or exits first.
- The pool hands a READY sandbox one invocation with `assign`; the sandbox
  delivers it to the runtime's waiting GET next.
- When the runtime, having posted its result, calls GET next again, the
  sandbox ends the invocation and tells its listener `sandbox_released`.
- When the container dies the registry calls `on_exit`; the sandbox fails
  what it held and tells its listener `sandbox_dead`.
Must not: decide placement, freezing times or removal (the pool does), or
talk to a container engine (it asks the backend interface to freeze, thaw
and read its memory peak).
"""
from __future__ import annotations

import asyncio
import time
from typing import Protocol

from runtime_host.backend.interface import Container, ContainerBackend, ExitInfo
from runtime_host.core.app_log_filter import app_log_filter
from runtime_host.core import logformat
from runtime_host.core.environment import ON_DEMAND, log_stream_name
from runtime_host.core.exits import describe_exit, exit_error_type
from runtime_host.core.extensions import INVOKE, invoke_event, registration_line
from runtime_host.core.invocation import Outcome, keep_tail, platform_error
from runtime_host.core.protocol import ACCOUNT_ID
from runtime_host.core.telemetry import span, subscription_line
from runtime_host.scheduler.context import LogWriter
from runtime_host.scheduler.extensions import Extension, SandboxExtensions
from runtime_host.scheduler.telemetry import SandboxTelemetry, Subscriber
from runtime_host.scheduler.invocation import LiveInvocation as Invocation
from runtime_host.core.states import (IllegalTransition, InvocationEvent, InvocationState, SandboxEvent, SandboxLife,
                     SandboxState)


class SandboxListener(Protocol):
    """What a sandbox tells its pool (the pool implements it)."""

    def sandbox_initialized(self, sandbox: "Sandbox") -> None:
        """Its init is done, before its first event is handed over (the
        init phase's CPU quota ends here: core/config.py INIT_VCPUS)."""

    def sandbox_released(self, sandbox: "Sandbox") -> None:
        """The runtime is back in GET next after its result: the sandbox is READY again."""

    def sandbox_dead(self, sandbox: "Sandbox") -> None:
        """Its container is gone."""

    def sandbox_broken(self, sandbox: "Sandbox") -> None:
        """It cannot go on (an extension failed): remove it (SHUTDOWN reason `failure`)."""


# Output that arrives this long after an invocation ended still belongs to it
# (a container's output is copied asynchronously); the pool's END/REPORT wait
# at most as long for it.
LATE_OUTPUT_S = 0.1


# How long an extension's process exit waits for news of its container's
# exit before it counts as a crash (see extension_exited).
EXTENSION_EXIT_SETTLE_S = 0.2


class InvalidRequestId(Exception):
    """A result for an id that is not this sandbox's current invocation (400)."""


class SandboxGone(Exception):
    """The runtime's GET next ends without an event: its sandbox died or was shut down."""


class InitFailed(Exception):
    def __init__(self, error_type: str, detail: str, body: bytes | None = None):
        super().__init__(detail)
        self.error_type, self.detail, self.body = error_type, detail, body

    def outcome(self, request_id: str) -> Outcome:
        if self.body is not None:      # the runtime's own init/error document
            return Outcome(body=self.body, error_type=self.error_type, status="error")
        return platform_error(request_id, self.error_type, self.detail)


class Sandbox:
    def __init__(self, listener: SandboxListener, function, sandbox_id: str, *, backend: ContainerBackend,
                 log_writer: LogWriter, initialization_type: str = ON_DEMAND, code_generation: int = 0):
        self.listener = listener
        self.function = function
        self.id = sandbox_id
        self.backend = backend
        self.log_writer = log_writer
        self.initialization_type = initialization_type
        self.code_generation = code_generation      # the pool's, when it started (code_reload.py)
        self.app_filter = app_log_filter(function.logging.is_json, function.logging.application_level)
        self.log_stream = log_stream_name(function.version)   # its AWS_LAMBDA_LOG_STREAM_NAME and its lines' stream
        self.life = SandboxLife()
        self.container: Container | None = None
        self.runtime_server = None                 # the Runtime API on its own loopback, if it has one (closable)
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
        self.freezes = 0
        self.freeze_timer: asyncio.TimerHandle | None = None   # the pool's freeze grace, from the last release
        self.removing = False                      # the pool has begun removing it
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.bring_up: asyncio.Future | None = None    # its start, shared by whoever waits (max_concurrency > 1)
        # Extensions and telemetry (spec §8): any sandbox may have internal
        # extensions; external ones are started by the pool from /opt/extensions.
        self.extensions = SandboxExtensions(function.name, function.version, function.handler, ACCOUNT_ID)
        self.extensions.on_failure = self._extension_failed
        self.extensions.on_registered = self._extension_registered
        self.telemetry = SandboxTelemetry(lambda: self.address)
        self.telemetry.on_subscribed = self._subscribed

    @property
    def container_id(self) -> str | None:
        return self.container.id if self.container is not None else None

    @property
    def address(self) -> str | None:
        return self.container.address if self.container is not None else None

    @property
    def state(self) -> SandboxState:
        return self.life.state

    def attach(self, container: Container) -> None:
        """Its container exists (not necessarily started); its output comes here from now on."""
        self.container = container
        container.on_output = self.on_output

    def launching(self) -> None:
        """Called just before the runtime (and its extensions) are started:
        from here on they may call the Runtime API."""
        self.life.apply(SandboxEvent.LAUNCH)
        self.init_started_at = time.monotonic()
        self.telemetry.emit("platform.initStart", {"initializationType": self.initialization_type, "phase": "init"})

    def launched(self) -> None:
        """The runtime runs. Init Duration counts from its process's exec,
        not from the container's set-up (as in Lambda, where INIT excludes
        provisioning); a stem cell's process is older than the launch."""
        started = self.container.process_started_at if self.container is not None else None
        if started is not None:
            self.init_started_at = max(self.init_started_at, started)
        if self.ready_at is not None:
            self.init_duration_ms = max(0.0, (self.ready_at - self.init_started_at) * 1000)
        self.read_memory_peak()             # a first figure, should it exit before any other read

    # --- Runtime API: GET next ---------------------------------------------
    async def next_invocation(self) -> Invocation:
        """What GET next returns; raises IllegalTransition (a 403) where the
        runtime may not ask for work."""
        state = self.life.state
        if state is SandboxState.INITIALIZING:
            self.life.apply(SandboxEvent.RUNTIME_READY)
            self.extensions.close_registration()
            # The init ends when the runtime and every extension are in their next (spec §3.1).
            self.extensions.when_idle(self._init_done)
        elif state is SandboxState.BUSY:
            inv = self.invocation
            if inv.state in (InvocationState.PENDING, InvocationState.RUNNING):
                return self._deliver(inv)          # first delivery, or RAPID's re-delivery
            self._runtime_back(inv)
        elif state is not SandboxState.READY:      # INIT_FAILED, SHUTTING_DOWN, DEAD
            raise IllegalTransition("sandbox", state, SandboxEvent.RUNTIME_READY)
        # A second GET next while one is open (a runtime that polls twice, or
        # reconnected) waits beside it, and both get the next event, as in
        # RAPID, whose RuntimeReadyState.Ready lets every caller wait and then
        # hands each the event (internal/lambda/core/states.go).
        if self._waiter is None or self._waiter.done():
            self._waiter = asyncio.get_running_loop().create_future()
        inv = await self._waiter
        return self._deliver(inv)

    def _init_done(self) -> None:
        if self.ready.done() or self.life.state not in (SandboxState.READY, SandboxState.FROZEN):
            return
        self.ready_at = time.monotonic()
        self.init_duration_ms = (self.ready_at - self.init_started_at) * 1000
        self.listener.sandbox_initialized(self)
        self.ready.set_result(None)
        kind = self.initialization_type
        self.telemetry.emit("platform.initRuntimeDone", {"initializationType": kind, "phase": "init",
                                                         "status": "success"})
        self.telemetry.emit("platform.initReport", {"initializationType": kind, "phase": "init", "status": "success",
                                                    "metrics": {"durationMs": round(self.init_duration_ms, 3)}})
        self.telemetry.end_backlog()

    def _deliver(self, inv: Invocation) -> Invocation:
        first = inv.state is InvocationState.PENDING
        inv.deliver()
        if first:
            if self.invocations_served == 0 and self.init_log:
                inv.append_log(self.init_log)      # a cold start's tail shows its init output
            line = logformat.start_lines(self.function.logging, inv.request_id, self.function.version)
            if line:                               # a JSON function's system level may drop it
                inv.append_log(line)
                self.log_writer.write(self.function.name, line, stream=self.log_stream, request_id=inv.request_id)
            self.telemetry.emit("platform.start", {"requestId": inv.request_id, "version": self.function.version})
        return inv

    def _runtime_back(self, inv: Invocation) -> None:
        """The runtime, having answered, asks for the next event: the
        invocation ends now, or once every extension is back in its next."""
        self._runtime_done(inv)
        if self.extensions.idle():
            self._end_invocation(inv)
        else:
            self.extensions.when_idle(lambda: self._extensions_back(inv))

    def _extensions_back(self, inv: Invocation) -> None:
        if self.invocation is inv and inv.state is InvocationState.RESPONDED:
            inv.extensions_done_at = time.monotonic()   # their time after the response is the invocation's
            self._end_invocation(inv)

    def _runtime_done(self, inv: Invocation, status: str = "success") -> None:
        if not self.telemetry.subscribers:
            return
        start_epoch = inv.clock_started_epoch_ms / 1000
        delivered = inv.delivered_at or inv.received_at
        answered = inv.response_started_at or inv.responded_at or time.monotonic()
        ended = inv.responded_at or time.monotonic()
        self.telemetry.emit("platform.runtimeDone", {
            "requestId": inv.request_id, "status": status,
            "metrics": {"durationMs": round((ended - delivered) * 1000, 3), "producedBytes": inv.produced_bytes},
            "spans": [span("responseLatency", start_epoch, (answered - delivered) * 1000),
                      span("responseDuration", start_epoch + (answered - delivered), (ended - answered) * 1000)]})

    def _end_invocation(self, inv: Invocation) -> None:
        if self.app_filter is not None:      # a last line with no newline is decided on as the invocation's
            held = self.app_filter.flush()
            if held:
                self._route_output(held)
        inv.runtime_next()
        self.last_invocation, self.invocation = inv, None
        self.invocations_served += 1
        self.last_used_at = time.monotonic()
        self.life.apply(SandboxEvent.INVOCATION_DONE)
        self.listener.sandbox_released(self)

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
        # At the same moment as the runtime (spec §3.3). RAPID releases the
        # extensions first; the runtime first here puts its event on the wire
        # first, which is on the caller's path (bench "extensions": noop
        # +0.77 -> +0.40 ms p50, 2026-12-07).
        if self.extensions.any:
            self.extensions.deliver(INVOKE, invoke_event(inv.request_id, inv.deadline_ms, inv.invoked_arn,
                                                         inv.trace_id))

    def output_moved_on(self, inv: Invocation) -> bool:
        """Whether output from now on belongs to a later invocation than inv
        (one has been delivered here since): waiting for more of inv's late
        output is then pointless, on_output gives it to the later one."""
        later = self.invocation
        return later is not None and later is not inv and later.state is not InvocationState.PENDING

    def on_output(self, data: bytes) -> None:
        """The runtime's output, as it comes (chunks, not lines)."""
        if self.app_filter is not None:      # JSON format with an application level: lines below it go
            data = self.app_filter.feed(data)
            if not data:
                self.last_output_at = time.monotonic()
                return
        self._route_output(data)

    def _route_output(self, data: bytes) -> None:
        """To the invocation it belongs to (its Tail), the function's log, telemetry."""
        now = time.monotonic()
        self.last_output_at = now
        inv = self.invocation
        owner = None
        if inv is not None and inv.state is not InvocationState.PENDING:
            owner = inv
        elif (self.last_invocation is not None and self.last_invocation.ended_at is not None
              and now - self.last_invocation.ended_at < LATE_OUTPUT_S):
            owner = self.last_invocation
        elif self.invocations_served == 0:
            keep_tail(self.init_log, data)          # only a cold start's Tail shows it
        if owner is not None:
            owner.append_log(data)
        self.log_writer.write(self.function.name, data, source=self,    # whole lines, not cut by another's
                              stream=self.log_stream, request_id=owner.request_id if owner is not None else None)
        if self.telemetry.wants_logs:
            self.telemetry.function_output(data)

    # --- extensions ------------------------------------------------------------
    async def extension_next(self, ext: Extension) -> dict:
        return await self.extensions.next_event(ext)

    def extension_output(self, name: str, data: bytes) -> None:
        """An external extension's output: the function's log, its own telemetry stream."""
        inv = self.invocation
        if inv is not None and inv.state is not InvocationState.PENDING:
            inv.append_log(data)
        else:
            inv = None
        self.log_writer.write(self.function.name, data, source=(self, name),   # its process's own lines
                              stream=self.log_stream, request_id=inv.request_id if inv is not None else None)
        if self.telemetry.wants_logs:
            self.telemetry.extension_output(name, data)

    def extension_exited(self, name: str, exit_code: int) -> None:
        self.extensions.process_exited(name)
        if self.extensions.shutting_down:
            return
        # Its process may end a moment before its container's exit is known
        # (both die together): only one that outlives that moment crashed.
        asyncio.get_running_loop().call_later(EXTENSION_EXIT_SETTLE_S, self._extension_exit_settled, name, exit_code)

    def _extension_exit_settled(self, name: str, exit_code: int) -> None:
        if self.life.state not in (SandboxState.SHUTTING_DOWN, SandboxState.DEAD) and not self.removing:
            self.extensions.crashed(name, exit_code)

    def _extension_registered(self, ext: Extension) -> None:
        line = registration_line(ext.name, ext.events)
        self.log_writer.write(self.function.name, line, stream=self.log_stream)
        keep_tail(self.init_log, line)
        self.telemetry.emit("platform.extension", {"name": ext.name, "state": "Ready", "events": sorted(ext.events)})

    def _subscribed(self, sub: Subscriber) -> None:
        types = sorted(sub.request.types)
        line = subscription_line(sub.name, types)
        self.log_writer.write(self.function.name, line, stream=self.log_stream)
        event = "platform.telemetrySubscription" if sub.request.api == "telemetry" else "platform.logsSubscription"
        self.telemetry.emit(event, {"name": sub.name, "state": "Subscribed", "types": types})

    def _extension_failed(self, error_type: str, detail: str) -> None:
        """An extension crashed or reported an error: the init fails, or the
        invocation it held, and the sandbox is reset (spec §3.4)."""
        if not self.ready.done():
            self.ready.set_exception(InitFailed(error_type, detail))
            return
        for inv in self.held():
            inv.fail(platform_error(inv.request_id, error_type, detail, status="error"))
        self.listener.sandbox_broken(self)

    # --- freezing (the pool decides when; the backend does it) ---------------
    def freeze(self) -> bool:
        """READY -> FROZEN: from here the sandbox gets no CPU until thawed.
        False (and still READY) where the backend cannot freeze it."""
        if not self.life.can(SandboxEvent.FREEZE) or not self.backend.freeze(self.container):
            return False
        self.life.apply(SandboxEvent.FREEZE)
        self.freezes += 1
        return True

    async def thaw(self) -> None:
        """FROZEN -> READY."""
        self.life.apply(SandboxEvent.THAW)
        await self.backend.thaw(self.container)

    def read_memory_peak(self) -> int | None:
        """The container's memory peak, or the last one read (after its exit)."""
        if self.container is not None:
            peak = self.backend.memory_peak_bytes(self.container)
            if peak is not None:
                self.peak_memory_bytes = peak
        return self.peak_memory_bytes

    def held(self) -> list[Invocation]:
        """The invocations this sandbox holds now."""
        return [self.invocation] if self.invocation is not None else []

    def _no_more_events(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(SandboxGone(self.id))
            self._waiter.exception()           # retrieved: nobody may be waiting any more

    def on_exit(self, info: ExitInfo) -> None:
        if self.life.state is SandboxState.DEAD:
            return
        self.life.apply(SandboxEvent.EXITED)
        self.exit_code, self.oom_killed = info.exit_code, info.oom_killed
        error_type = exit_error_type(info.oom_killed)
        detail = describe_exit(info.exit_code)
        if not self.ready.done():
            self.ready.set_exception(InitFailed(error_type, detail))
        for inv in self.held():
            inv.fail(platform_error(inv.request_id, error_type, detail, status="error"))
        self._no_more_events()
        if not self.exited.done():
            self.exited.set_result(None)
        self.extensions.shutting_down = True
        self.extensions.wake_all()
        self.listener.sandbox_dead(self)
