"""Per function: its sandboxes, which one takes an invocation, and limits.

Owns: choosing a warm sandbox (the most recently used first, so idle ones
age out) or starting a new one; the reserved-concurrency limit (429 at once
beyond it); freezing a sandbox once its runtime is back in GET next and
thawing it just before the next event; provisioned sandboxes started ahead;
reaping sandboxes idle longer than idle_ttl_s; the function timeout and the
init limit; END and REPORT when an invocation ends; removing dead sandboxes.

Must not: keep its own copy of a sandbox's state. `idle` holds exactly the
sandboxes that are READY or FROZEN with nothing to do, kept in step by
sandbox_released / sandbox_dead (the SandboxListener it implements);
everything else about a sandbox is in its `life`. Talk to a container engine:
it has the backend interface, from its SchedulerContext.

Timers, all named with their unit: freeze grace (settings.freeze_grace_s: how
long an idle sandbox stays thawed before it is frozen), INIT limit (settings.init_timeout_s),
function timeout (FunctionConfig.timeout_s), idle_ttl_s (host default or
per function), SHUTDOWN_GRACE_S between SIGTERM and SIGKILL,
RETURNING_WAIT_S (how long an invocation waits for a sandbox that has
answered but whose runtime is not yet back in GET next, before starting a
new one).
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass

from runtime_host.backend.interface import (LABEL_FUNCTION, LABEL_SANDBOX, LABEL_VERSION, BackendError,
                                            ContainerSpec, ExitInfo)
from runtime_host.core import logformat
from runtime_host.core.billing import billed_duration_ms, bytes_to_mb_rounded_up, cost_usd, gb_seconds, report_line
from runtime_host.core.config import IMAGE_OF_RUNTIME, FunctionConfig, init_vcpus
from runtime_host.core.environment import ON_DEMAND, PROVISIONED, runtime_command, sandbox_env
from runtime_host.core.exits import SIGKILL_EXIT_CODE
from runtime_host.core.extensions import (EXTENSIONS_DIR, FAILURE, SHUTDOWN, SPINDOWN, TIMEOUT, extension_env,
                                          shutdown_event, shutdown_window_ms)
from runtime_host.core.invocation import Outcome, platform_error
from runtime_host.core.protocol import LOOPBACK_RUNTIME_API, SANDBOX_FAILURE, SANDBOX_TIMEDOUT
from runtime_host.core.rules import ledger_outcome
from runtime_host.core.states import InvocationState, SandboxEvent, SandboxState
from runtime_host.scheduler.context import SandboxStartFailed, SchedulerContext, Throttled
from runtime_host.scheduler.invocation import LiveInvocation as Invocation
from runtime_host.scheduler.concurrent import ConcurrentSandbox
from runtime_host.scheduler.sandbox import LATE_OUTPUT_S, InitFailed, Sandbox
from runtime_host.store.ledger import Record

log = logging.getLogger("runtime_host.scheduler.pool")

# After an invocation ends, END/REPORT close its log once the sandbox's
# output has been quiet this long (at most OUTPUT_SETTLE_MAX_S after the end).
OUTPUT_QUIET_S = 0.01
OUTPUT_SETTLE_MAX_S = LATE_OUTPUT_S
SHUTDOWN_GRACE_S = 2.0
RETURNING_WAIT_S = 0.25
INIT_ERROR_EXIT_WAIT_S = 0.5     # a runtime that posted init/error gets this long to exit by itself
# spec §3.1: provisioned concurrency may take up to 130 s (or the timeout) to init.
PROVISIONED_INIT_TIMEOUT_S = 130.0


@dataclass
class PoolCounts:
    """What happened to the pool since the host started, as plain counters
    (read by GET /metrics, api/metrics.py): an integer addition is all the
    invoke path pays for them."""
    throttles: int = 0            # invocations refused: reserved concurrency reached
    freezes: int = 0
    thaws: int = 0


class FunctionPool:
    def __init__(self, ctx: SchedulerContext, function: FunctionConfig):
        self.ctx = ctx
        self.function = function
        self.sandboxes: dict[str, Sandbox] = {}
        self.idle: list[Sandbox] = []             # READY/FROZEN, most recently used last
        self._waiting: deque[asyncio.Future[Sandbox]] = deque()   # invocations waiting for a returning sandbox
        self.freeze_enabled = function.freeze and ctx.settings.freeze
        self._extension_names: list[str] | None = None
        self.code_generation = 0                  # bumped when the function's folder changes (code_reload.py)
        self.idle_ttl_s = function.idle_ttl_s or ctx.settings.idle_ttl_s
        self.counts = PoolCounts()

    # --- invoking -----------------------------------------------------------
    async def invoke(self, inv: Invocation) -> Outcome:
        """Runs one invocation to its outcome (what the caller gets), recorded
        in the ledger before it is returned. The rest of the invocation
        (END/REPORT) finishes in the background; await `inv.reported` for it."""
        try:
            if self.function.max_concurrency > 1:
                sandbox = self._acquire_slot()         # raises Throttled
                run = self._run_concurrent
            else:
                sandbox = await self._acquire()        # raises Throttled
                run = self._run
        except Throttled:
            self.counts.throttles += 1
            raise
        self._report_when_finished(sandbox, inv)
        try:
            outcome = await run(sandbox, inv)
        except SandboxStartFailed:
            await self.ctx.ledger.record(self._ledger_record(sandbox, inv, inv.outcome.result()))
            raise
        if outcome.stream is not None:         # billed to the stream's end: recorded then
            self.ctx.track(self._record_streamed(sandbox, inv, outcome))
            return outcome
        await self.ctx.ledger.record(self._ledger_record(sandbox, inv, outcome))
        return outcome

    async def _record_streamed(self, sandbox: Sandbox, inv: Invocation, answer: Outcome) -> None:
        end = await answer.stream.done
        if inv.failure is not None:            # timed out or crashed mid-stream
            outcome = inv.failure
        elif end.error_code is not None:       # the runtime's trailers, or the size cap
            outcome = Outcome(b"", error_type=end.error_code, status="error")
        else:
            outcome = answer
        await self.ctx.ledger.record(self._ledger_record(sandbox, inv, outcome))

    def _ledger_record(self, sandbox: Sandbox, inv: Invocation, outcome: Outcome) -> Record:
        fn = self.function
        inv.max_memory_used_mb = self._max_memory_used_mb(sandbox)
        billed = billed_duration_ms(inv.duration_ms, inv.init_duration_ms)
        return Record(
            request_id=inv.request_id, function=fn.name, version=fn.version, started_at=inv.received_epoch_ms / 1000,
            duration_ms=round(inv.duration_ms, 2), billed_ms=billed,
            init_ms=round(inv.init_duration_ms, 2) if inv.init_duration_ms is not None else None,
            memory_mb=fn.memory_mb, max_memory_used_mb=inv.max_memory_used_mb, cold=inv.cold,
            outcome=ledger_outcome(outcome), error_type=outcome.error_type, architecture=fn.architecture,
            gb_s=gb_seconds(billed, fn.memory_mb), cost_usd=cost_usd(billed, fn.memory_mb, self.ctx.prices[fn.architecture]))

    def _max_memory_used_mb(self, sandbox: Sandbox) -> int:
        """The sandbox's memory cgroup peak, in whole MB; the whole size after an OOM kill."""
        peak = sandbox.read_memory_peak()
        if sandbox.oom_killed or peak is None:
            return self.function.memory_mb
        return min(self.function.memory_mb, bytes_to_mb_rounded_up(peak))

    async def _run(self, sandbox: Sandbox, inv: Invocation) -> Outcome:
        if sandbox.state is SandboxState.STARTING:
            inv.cold = True
            try:
                await self._start(sandbox)
                await asyncio.wait_for(asyncio.shield(sandbox.ready), self.ctx.settings.init_timeout_s)
            except InitFailed as exc:
                # A runtime that posted init/error exits by itself (spec §1.6):
                # give it a moment, so its exit status is its own.
                self.destroy_soon(sandbox, wait_exit_s=INIT_ERROR_EXIT_WAIT_S if exc.body is not None else 0.0)
                inv.fail(exc.outcome(inv.request_id))
                return inv.outcome.result()
            except asyncio.TimeoutError:
                self.destroy_soon(sandbox)
                inv.fail(platform_error(inv.request_id, SANDBOX_TIMEDOUT,
                                        f"Init timed out after {self.ctx.settings.init_timeout_s:.2f} seconds",
                                        status="timeout"))
                return inv.outcome.result()
            except BackendError as exc:
                self.destroy_soon(sandbox)
                inv.fail(platform_error(inv.request_id, SANDBOX_FAILURE, str(exc), status="failure"))
                raise SandboxStartFailed(str(exc)) from None
            inv.init_duration_ms = sandbox.init_duration_ms
        elif sandbox.state is SandboxState.FROZEN:
            self.counts.thaws += 1
            await sandbox.thaw()
        if sandbox.state is not SandboxState.READY:   # it died while we waited for it
            inv.fail(platform_error(inv.request_id, SANDBOX_FAILURE, "the sandbox stopped before the event "
                                    "could be handed over", status="failure"))
            return inv.outcome.result()
        inv.start_clock()
        sandbox.assign(inv)
        # Relative to now (the clock just started): the loop's clock need not be time.monotonic() (uvloop's is
        # libuv's, in whole ms).
        timer = asyncio.get_running_loop().call_later(inv.timeout_s, self._on_deadline, sandbox, inv)
        inv.finished.add_done_callback(lambda _: timer.cancel())
        # Not shielded: a shield is one more loop hop on every invocation's
        # path. Only the invoking task awaits the outcome; if it is cancelled
        # (the host stopping), the future is cancelled with it, and respond()
        # and fail() leave a done future alone.
        return await inv.outcome

    # --- several invocations in one sandbox (max_concurrency > 1) -------------------
    def _acquire_slot(self) -> ConcurrentSandbox:
        """A slot in a live sandbox with room (one already running first, then
        one starting), or a new sandbox; raises Throttled."""
        best = None
        for sandbox in self.sandboxes.values():
            if sandbox.removing or sandbox.code_generation < self.code_generation or sandbox.free_slots <= 0 \
                    or sandbox.state in (SandboxState.SHUTTING_DOWN,
                                                                                 SandboxState.DEAD,
                                                                                 SandboxState.INIT_FAILED):
                continue
            running = sandbox.state in (SandboxState.READY, SandboxState.BUSY, SandboxState.FROZEN)
            if best is None or (running and not best[0]):
                best = (running, sandbox)
        sandbox = best[1] if best is not None else self._reserve_new()
        sandbox.reserve()
        if sandbox in self.idle:
            self.idle.remove(sandbox)
        if sandbox.freeze_timer is not None:
            sandbox.freeze_timer.cancel()
        return sandbox

    async def _run_concurrent(self, sandbox: ConcurrentSandbox, inv: Invocation) -> Outcome:
        try:
            if sandbox.state is SandboxState.STARTING and sandbox.bring_up is None:
                inv.cold = True
                sandbox.bring_up = asyncio.ensure_future(self._bring_up(sandbox))
            if sandbox.bring_up is not None:
                failure = await asyncio.shield(sandbox.bring_up)
                if failure is not None:
                    error_type, detail, status, body = failure
                    inv.fail(Outcome(body=body, error_type=error_type, status=status) if body is not None
                             else platform_error(inv.request_id, error_type, detail, status=status))
                    if status == "failure":
                        raise SandboxStartFailed(detail)
                    return inv.outcome.result()
                if inv.cold:
                    inv.init_duration_ms = sandbox.init_duration_ms
            if sandbox.state is SandboxState.FROZEN:
                self.counts.thaws += 1
                await sandbox.thaw()
            if sandbox.state not in (SandboxState.READY, SandboxState.BUSY):
                inv.fail(platform_error(inv.request_id, SANDBOX_FAILURE, "the sandbox stopped before the event "
                                        "could be handed over", status="failure"))
                return inv.outcome.result()
            inv.start_clock()
            sandbox.assign(inv)
        finally:
            if inv.sandbox_id is None:
                sandbox.unreserve()
        timer = asyncio.get_running_loop().call_later(inv.timeout_s, self._on_deadline, sandbox, inv)
        inv.finished.add_done_callback(lambda _: timer.cancel())
        return await inv.outcome

    async def _bring_up(self, sandbox: Sandbox) -> tuple[str, str, str, bytes | None] | None:
        """Starts a sandbox for whoever waits on it: None once it is ready,
        else (error type, detail, status, the runtime's own error body)."""
        try:
            await self._start(sandbox)
            await asyncio.wait_for(asyncio.shield(sandbox.ready), self.ctx.settings.init_timeout_s)
            return None
        except InitFailed as exc:
            self.destroy_soon(sandbox, wait_exit_s=INIT_ERROR_EXIT_WAIT_S if exc.body is not None else 0.0)
            return exc.error_type, exc.detail, "error", exc.body
        except asyncio.TimeoutError:
            self.destroy_soon(sandbox)
            return (SANDBOX_TIMEDOUT, f"Init timed out after {self.ctx.settings.init_timeout_s:.2f} seconds",
                    "timeout", None)
        except BackendError as exc:
            self.destroy_soon(sandbox)
            return SANDBOX_FAILURE, str(exc), "failure", None

    async def _acquire(self) -> Sandbox:
        sandbox = self._take_idle()
        if sandbox is not None:
            return sandbox
        # A sandbox whose runtime has answered is about to come back to GET
        # next: a caller that invokes again at once (a loop, a benchmark)
        # waits for it instead of paying a cold start.
        returning = sum(1 for s in self.sandboxes.values() if s.state is SandboxState.BUSY
                        and s.invocation is not None and s.invocation.state is InvocationState.RESPONDED)
        if returning > len(self._waiting):
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                return await asyncio.wait_for(waiter, RETURNING_WAIT_S)
            except asyncio.TimeoutError:
                if waiter.done() and not waiter.cancelled():
                    return waiter.result()          # handed over just as the wait ran out
            finally:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
        return self._reserve_new()

    def _take_idle(self) -> Sandbox | None:
        while self.idle:
            sandbox = self.idle.pop()
            if sandbox.state in (SandboxState.READY, SandboxState.FROZEN):
                if sandbox.freeze_timer is not None:
                    sandbox.freeze_timer.cancel()
                return sandbox
        return None

    def _reserve_new(self, initialization_type: str = ON_DEMAND) -> Sandbox:
        # Concurrency counts sandboxes that can hold an invocation; one being
        # removed (crashed, timed out, reaped) no longer does.
        alive = sum(1 for s in self.sandboxes.values()
                    if not s.removing and s.state not in (SandboxState.SHUTTING_DOWN, SandboxState.DEAD))
        if alive >= self.function.reserved_concurrency:
            raise Throttled(self.function.name)
        kind = ConcurrentSandbox if self.function.max_concurrency > 1 else Sandbox
        sandbox = kind(self, self.function, uuid.uuid4().hex[:12], backend=self.ctx.backend,
                       code_generation=self.code_generation,
                          log_writer=self.ctx.log_writer, initialization_type=initialization_type)
        self.sandboxes[sandbox.id] = sandbox
        return sandbox

    async def _start(self, sandbox: Sandbox) -> None:
        stems = self.ctx.stems
        key = stems.key_of(self.function)
        stem = stems.take(key) if sandbox.initialization_type == ON_DEMAND else None
        if stem is None:
            stem = await stems.start_now(key, self.ctx.settings.init_timeout_s)
        if stem is not None:
            await self._start_from_stem(sandbox, stem)
            return
        backend = self.ctx.backend
        container = await backend.create(self._container_spec(sandbox))
        if self._extension_names is None and self.function.is_image:
            # A container image has no layers: its extensions are its own
            # /opt/extensions, read once from the first container (not started yet).
            try:
                self._extension_names = await backend.list_files(container, EXTENSIONS_DIR)
            except BackendError:
                await backend.end(container)
                raise
        # Known before the runtime can call: its init waits for them, and they may still register after its first next.
        sandbox.extensions.expect(self._external_extensions())
        sandbox.attach(container)
        self.ctx.registry.add(sandbox, container)
        sandbox.launching()
        await backend.start(container)
        sandbox.launched()
        # Without a stem the runtime is already running: its extensions start
        # beside it (a stem holds the runtime back until they registered).
        await self._launch_extensions(sandbox, self._container_spec(sandbox).env)

    async def _start_from_stem(self, sandbox: Sandbox, stem) -> None:
        """A running stem cell becomes this sandbox: no container start on
        the invocation's path, only the runtime's own init."""
        spec = self._container_spec(sandbox)
        self.ctx.stems.hand_over(stem, sandbox)
        if sandbox.runtime_server is not None:        # its own loopback listener
            spec.env["AWS_LAMBDA_RUNTIME_API"] = LOOPBACK_RUNTIME_API
        sandbox.launching()
        await self._launch_extensions(sandbox, spec.env)
        await self.ctx.stems.specialize(stem, self.function, spec.env, spec.command)
        sandbox.launched()
        # So the engine's own listing names its function (off the invocation's path).
        self.ctx.track(self.ctx.backend.rename(sandbox.container, spec.name))

    def _external_extensions(self) -> list[str]:
        if self._extension_names is None:        # the layers are put together when the host starts
            self._extension_names = external_extensions(self.ctx.opt_dirs.get(self.function.name))
        return self._extension_names

    async def _launch_extensions(self, sandbox: Sandbox, runtime_env: dict[str, str]) -> None:
        """Starts every file in the layers' /opt/extensions, as RAPID does,
        and returns once each has registered (spec §3.1: extension init
        comes before runtime init). Raises InitFailed if one fails first."""
        names = self._external_extensions()
        if not names:
            return
        extensions = sandbox.extensions
        extensions.expect(names)
        env = extension_env(runtime_env)
        for name in names:
            await self.ctx.backend.exec(
                sandbox.container, [f"{EXTENSIONS_DIR}/{name}"], env,
                on_output=lambda data, name=name: sandbox.extension_output(name, data),
                on_exit=lambda code, name=name: sandbox.extension_exited(name, code))
        registered = asyncio.ensure_future(extensions.all_registered())
        failed = asyncio.ensure_future(asyncio.shield(sandbox.ready))
        try:
            await asyncio.wait((registered, failed), timeout=self.ctx.settings.init_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            registered.cancel()
            if not failed.done():
                failed.cancel()
            elif not failed.cancelled():
                failed.exception()                # retrieved: the sandbox's ready says it again below
        if sandbox.ready.done() and sandbox.ready.exception() is not None:
            raise sandbox.ready.exception()
        if not sandbox.ready.done() and (not registered.done() or registered.cancelled()):
            missing = sorted(set(names) - {e.name for e in extensions.by_id.values()})
            raise InitFailed(SANDBOX_TIMEDOUT, f"extensions did not register within "
                             f"{self.ctx.settings.init_timeout_s:.2f} seconds: {', '.join(missing)}")

    def _container_spec(self, sandbox: Sandbox) -> ContainerSpec:
        fn = self.function
        image = fn.image if fn.is_image else self.ctx.images[IMAGE_OF_RUNTIME[fn.runtime]]
        env = sandbox_env(fn, region=self.ctx.settings.region, runtime_api=self.ctx.runtime_api_address,
                          initialization_type=sandbox.initialization_type, version=fn.version,
                          log_stream=sandbox.log_stream)
        return ContainerSpec(image=image, command=runtime_command(fn), env=env,
                             labels={LABEL_FUNCTION: fn.name, LABEL_VERSION: fn.version, LABEL_SANDBOX: sandbox.id},
                             memory_mb=fn.memory_mb, cpus=min(init_vcpus(fn.memory_mb), self.ctx.settings.cores),
                             tmp_mb=fn.ephemeral_storage_mb, code_dir=None if fn.is_image else fn.code_dir,
                             opt_dir=self.ctx.opt_dirs.get(fn.name), name=f"rh-{fn.name[:40]}-{sandbox.id}")

    # --- freezing -------------------------------------------------------------
    def _freeze(self, sandbox: Sandbox) -> None:
        """Called once the caller has its answer and the runtime is back in
        GET next: from here the sandbox gets no CPU until it is thawed."""
        if not self.freeze_enabled or sandbox.state is not SandboxState.READY or sandbox not in self.idle:
            return
        last = sandbox.last_invocation
        if sandbox.telemetry.subscribers and (not sandbox.telemetry.idle() or (
                last is not None and not last.reported.done())):
            # Its extensions get the invocation's records before it is frozen:
            # what is buffered goes now (not at every REPORT: back to back,
            # records wait for the subscriber's timeoutMs and go in batches).
            if last is not None and last.reported.done():
                sandbox.telemetry.flush_all()
            sandbox.freeze_timer = asyncio.get_running_loop().call_later(
                self.ctx.settings.freeze_grace_s, self._freeze, sandbox)
            return
        if sandbox.freeze():
            self.counts.freezes += 1

    # --- the end of an invocation --------------------------------------------
    def _on_deadline(self, sandbox: Sandbox, inv: Invocation) -> None:
        timeout_s = self.function.timeout_s
        failed = inv.fail(platform_error(inv.request_id, SANDBOX_TIMEDOUT, logformat.timeout_message(timeout_s),
                                         status="timeout"))
        if failed:
            line = logformat.timeout_lines(self.function.logging, inv.request_id, timeout_s)
            inv.append_log(line)
            self.ctx.log_writer.write(self.function.name, line, stream=sandbox.log_stream, request_id=inv.request_id)
            if isinstance(sandbox, ConcurrentSandbox):
                # Its other invocations go on: only this one's slot is given up
                # (a late result for it is refused as an unknown request id).
                sandbox.drop(inv)
            else:
                self.destroy_soon(sandbox, reason=TIMEOUT)

    def _report_when_finished(self, sandbox: Sandbox, inv: Invocation) -> None:
        """END and REPORT once the invocation has ended and its output has
        settled (callbacks and timers, not a task: this runs for every
        invocation, and a task costs more than the work)."""
        inv.finished.add_done_callback(lambda _: self._report_once_settled(sandbox, inv))

    def _report_once_settled(self, sandbox: Sandbox, inv: Invocation) -> None:
        # Docker copies output asynchronously, and on a busy machine a line
        # printed before the result can land after it: END waits until the
        # sandbox has been quiet for OUTPUT_QUIET_S since the end (at most
        # OUTPUT_SETTLE_MAX_S). Only a Tail caller and `run` wait for this.
        # Once a later invocation has been delivered to the sandbox, output
        # is its, not inv's: without that, a function called back to back
        # kept every END waiting the whole OUTPUT_SETTLE_MAX_S, rescheduled
        # some 15 times (a tenth of the host's CPU per warm invocation).
        if inv.ended_at is not None and not sandbox.output_moved_on(inv):
            now = time.monotonic()
            give_up_at = inv.ended_at + OUTPUT_SETTLE_MAX_S
            wait_s = max(inv.ended_at, sandbox.last_output_at) + OUTPUT_QUIET_S - now
            if wait_s > 0 and now < give_up_at:
                asyncio.get_running_loop().call_later(min(wait_s, give_up_at - now),
                                                      self._report_once_settled, sandbox, inv)
                return
        try:
            fn = self.function
            # The figure the ledger recorded, unless the sandbox was OOM-killed since.
            used_mb = fn.memory_mb if sandbox.oom_killed else (inv.max_memory_used_mb or self._max_memory_used_mb(sandbox))
            failure = inv.failure      # only platform failures add Status to REPORT
            status = failure.status if failure else "success"
            report = report_line(inv.request_id, inv.duration_ms, fn.memory_mb, used_mb, inv.init_duration_ms,
                                 status=status, error_type=failure.error_type if failure else None)
            text = logformat.end_lines(fn.logging, inv.request_id, report, status=status, duration_ms=inv.duration_ms,
                                       memory_mb=fn.memory_mb, max_memory_used_mb=used_mb,
                                       init_duration_ms=inv.init_duration_ms,
                                       error_type=failure.error_type if failure else None)
            if text:                          # a JSON function's system level may keep none of it
                inv.append_log(text)
                self.ctx.log_writer.write(fn.name, text, stream=sandbox.log_stream, request_id=inv.request_id)
            inv.report = report
            if sandbox.telemetry.subscribers:
                sandbox.telemetry.emit("platform.end", {"requestId": inv.request_id})   # Logs API only
                sandbox.telemetry.emit("platform.report", logformat.report_record(
                    inv.request_id, status, inv.duration_ms, fn.memory_mb, used_mb, inv.init_duration_ms,
                    failure.error_type if failure else None))
        except Exception:                     # never leave a Tail caller waiting for a REPORT
            log.exception("could not write the REPORT of %s", inv.request_id)
        finally:
            inv.mark_reported()

    # --- what sandboxes tell the pool (SandboxListener) ---------------------
    def sandbox_initialized(self, sandbox: Sandbox) -> None:
        # From the init phase's quota (INIT_VCPUS) to the memory size's share,
        # before the runtime is handed its first event.
        if sandbox.container is not None:
            self.ctx.backend.set_cpus(sandbox.container, min(self.function.vcpus, self.ctx.settings.cores))

    def sandbox_released(self, sandbox: Sandbox) -> None:
        """The runtime is back in GET next: hand the sandbox to a waiting
        invocation, or keep it warm (and frozen) for the next one."""
        if sandbox.state is not SandboxState.READY:
            return
        if sandbox.code_generation < self.code_generation:
            self.destroy_soon(sandbox, graceful=True)   # its runtime loaded code that changed since
            return
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(sandbox)
                return
        if self.ctx.stopping:
            self.destroy_soon(sandbox)
            return
        self.idle.append(sandbox)
        if self.freeze_enabled:
            # After a short grace (OpenWhisk's pauseGrace): a caller invoking
            # again at once finds it still thawed, and the answer already on
            # its way goes out first. _freeze checks it is still idle.
            # The grace counts from this release: a timer left from an earlier
            # one would freeze a sandbox that came back a moment ago.
            if sandbox.freeze_timer is not None:
                sandbox.freeze_timer.cancel()
            sandbox.freeze_timer = asyncio.get_running_loop().call_later(
                self.ctx.settings.freeze_grace_s, self._freeze, sandbox)

    def code_changed(self) -> None:
        """The function's folder changed: idle sandboxes go now, busy ones once
        they have answered; new ones start from the new code."""
        self.code_generation += 1
        for sandbox in list(self.sandboxes.values()):
            if sandbox.state in (SandboxState.READY, SandboxState.FROZEN) and not sandbox.removing:
                self.destroy_soon(sandbox, graceful=True)

    def sandbox_dead(self, sandbox: Sandbox) -> None:
        if sandbox in self.idle:
            self.idle.remove(sandbox)
        self.destroy_soon(sandbox)

    def sandbox_broken(self, sandbox: Sandbox) -> None:
        self.destroy_soon(sandbox, reason=FAILURE)

    # --- provisioned concurrency, reaping, removal ----------------------------
    async def provision(self) -> None:
        """Starts, initializes and freezes `provisioned_concurrency` sandboxes
        (AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency)."""
        missing = self.function.provisioned_concurrency - sum(
            1 for s in self.sandboxes.values() if s.initialization_type == PROVISIONED)
        await asyncio.gather(*(self._provision_one() for _ in range(max(0, missing))))

    async def _provision_one(self) -> None:
        try:
            sandbox = self._reserve_new(PROVISIONED)
        except Throttled:
            return
        try:
            await self._start(sandbox)
            await asyncio.wait_for(asyncio.shield(sandbox.ready), PROVISIONED_INIT_TIMEOUT_S)
        except (InitFailed, asyncio.TimeoutError, BackendError) as exc:
            log.error("provisioned sandbox of %s failed to initialize: %s", self.function.name, exc)
            self.destroy_soon(sandbox)
            return
        self.sandbox_released(sandbox)

    def reap_idle(self, now: float) -> None:
        """Shuts down sandboxes idle longer than idle_ttl_s (provisioned ones stay)."""
        for sandbox in list(self.idle):
            if sandbox.initialization_type == PROVISIONED:
                continue
            if now - sandbox.last_used_at > self.idle_ttl_s:
                self.idle.remove(sandbox)
                self.destroy_soon(sandbox, graceful=True)

    def destroy_soon(self, sandbox: Sandbox, graceful: bool = False, wait_exit_s: float = 0.0,
                     reason: str = SPINDOWN) -> None:
        """`reason`: what extensions subscribed to SHUTDOWN are told (spec §3.5)."""
        if sandbox.removing:
            return
        sandbox.removing = True
        # A runtime that posted init/error keeps that state while it is given
        # time to exit by itself: its calls meanwhile are refused as RAPID
        # refuses them in InitError.
        if not wait_exit_s and sandbox.life.can(SandboxEvent.SHUTDOWN):
            sandbox.life.apply(SandboxEvent.SHUTDOWN)
        if sandbox in self.idle:
            self.idle.remove(sandbox)
        self.ctx.track(self._destroy(sandbox, graceful, wait_exit_s, reason))

    async def _shutdown_extensions(self, sandbox: Sandbox, reason: str) -> None:
        """SHUTDOWN to the extensions registered for it, then up to Lambda's
        window (spec §3.5) for them to finish (back in next, or exited)."""
        extensions = sandbox.extensions
        extensions.shutting_down = True
        if not extensions.subscribers(SHUTDOWN) or sandbox.container is None or sandbox.state is SandboxState.DEAD:
            return
        window_s = shutdown_window_ms(extensions.count(external=True), extensions.count(external=False)) / 1000
        await self.ctx.backend.thaw(sandbox.container)
        done = asyncio.get_running_loop().create_future()
        extensions.deliver(SHUTDOWN, shutdown_event(reason, int((time.time() + window_s) * 1000)))
        extensions.when_idle(lambda: done.done() or done.set_result(None))
        try:
            await asyncio.wait_for(done, window_s)
        except asyncio.TimeoutError:
            pass

    async def _destroy(self, sandbox: Sandbox, graceful: bool, wait_exit_s: float = 0.0,
                       reason: str = SPINDOWN) -> None:
        """SIGTERM and a grace period when graceful, then the backend ends it
        (thawed first: a frozen process cannot die). Never raises: a sandbox
        that cannot be removed must not take the host down."""
        backend = self.ctx.backend
        container = sandbox.container
        try:
            if wait_exit_s and sandbox.state is not SandboxState.DEAD:
                try:
                    await asyncio.wait_for(asyncio.shield(sandbox.exited), wait_exit_s)
                except asyncio.TimeoutError:
                    pass
            if sandbox.life.can(SandboxEvent.SHUTDOWN):
                sandbox.life.apply(SandboxEvent.SHUTDOWN)
            if sandbox.extensions.any:
                await self._shutdown_extensions(sandbox, reason)
            if container is not None:
                if graceful and sandbox.state is not SandboxState.DEAD:
                    await backend.thaw(container)
                    await backend.signal(container, "SIGTERM")
                    try:
                        await asyncio.wait_for(asyncio.shield(sandbox.exited), SHUTDOWN_GRACE_S)
                    except asyncio.TimeoutError:
                        pass
                info = await backend.end(container)
                if sandbox.state is not SandboxState.DEAD and info is not None:
                    sandbox.on_exit(info)
        except Exception as exc:
            log.warning("could not remove sandbox %s of %s: %s", sandbox.id, self.function.name, exc)
        finally:
            if sandbox.state is not SandboxState.DEAD:
                sandbox.on_exit(ExitInfo(SIGKILL_EXIT_CODE, False))
            self.sandboxes.pop(sandbox.id, None)
            self.ctx.registry.remove(sandbox, container)
            if sandbox.runtime_server is not None:
                sandbox.runtime_server.close()
            await sandbox.telemetry.close()
            if (not self.ctx.stopping and self.function.provisioned_concurrency
                    and sandbox.initialization_type == PROVISIONED):
                self.ctx.track(self.provision())   # Lambda keeps provisioned capacity up

    def in_flight(self) -> list[Invocation]:
        return [inv for s in self.sandboxes.values() for inv in s.held()
                if inv.state in (InvocationState.PENDING, InvocationState.RUNNING, InvocationState.RESPONDED)]

    async def shutdown(self) -> None:
        for sandbox in list(self.sandboxes.values()):
            self.destroy_soon(sandbox)


def external_extensions(opt_dir) -> list[str]:
    """The files a function's layers put in /opt/extensions, by name (RAPID
    starts every non-directory entry, sorted, not recursively)."""
    if opt_dir is None:
        return []
    folder = opt_dir / "extensions"
    try:
        return sorted(p.name for p in folder.iterdir() if not p.is_dir())
    except OSError:
        return []

