"""Per function: its sandboxes, which one takes an invocation, and limits.

Owns: choosing a warm sandbox (the most recently used first, so idle ones
can age out) or starting a new one, the reserved-concurrency limit (429 at
once beyond it), the function timeout and the init limit, writing END and
REPORT when an invocation ends, and removing dead sandboxes.
Must not: keep its own copy of a sandbox's state; `idle` holds exactly the
sandboxes whose state is READY, kept in step by on_released / on_dead.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING

from . import logs
from .backend.containers import (LABEL_FUNCTION, LABEL_SANDBOX, LABEL_VERSION, BackendError,
                                 ContainerSpec)
from .billing import report_line
from .cgroups import bytes_to_mb_rounded_up
from .config import FunctionConfig
from .invocation import Invocation, Outcome, platform_error
from .protocol import INIT_TIMEOUT_S, LATEST, SANDBOX_TIMEDOUT
from .sandbox import InitFailed, Sandbox
from .states import SandboxEvent, SandboxState

if TYPE_CHECKING:
    from .host import Host

log = logging.getLogger("runtime_host.pool")

# After an invocation ends, wait for the container's output to go quiet for
# this long (at most OUTPUT_SETTLE_MAX_S) before END/REPORT close its log.
OUTPUT_QUIET_S = 0.005
OUTPUT_SETTLE_MAX_S = 0.05


class Throttled(Exception):
    """Every sandbox the function may have is busy (TooManyRequestsException)."""


class SandboxStartFailed(Exception):
    """The container could not be created or started (a host-side problem)."""


class FunctionPool:
    def __init__(self, host: "Host", function: FunctionConfig):
        self.host = host
        self.function = function
        self.sink = host.sink
        self.sandboxes: dict[str, Sandbox] = {}
        self.idle: list[Sandbox] = []            # READY sandboxes, most recently used last

    # --- invoking -----------------------------------------------------------
    async def invoke(self, inv: Invocation) -> Outcome:
        """Runs one invocation to its outcome (what the caller gets). The rest
        of the invocation (END/REPORT) finishes in the background; await
        `inv.reported` for it."""
        sandbox = self._take_idle() or self._reserve_new()     # raises Throttled
        asyncio.create_task(self._report_when_finished(sandbox, inv))
        if sandbox.state is SandboxState.STARTING:
            try:
                await self._start(sandbox)
                await asyncio.wait_for(asyncio.shield(sandbox.ready), INIT_TIMEOUT_S)
            except InitFailed as exc:
                self._destroy_soon(sandbox)
                inv.fail(exc.outcome(inv.request_id))
                return inv.outcome.result()
            except asyncio.TimeoutError:
                self._destroy_soon(sandbox)
                inv.fail(platform_error(inv.request_id, SANDBOX_TIMEDOUT,
                                        f"Init timed out after {INIT_TIMEOUT_S:.2f} seconds", status="timeout"))
                return inv.outcome.result()
            except BackendError as exc:
                self._destroy_soon(sandbox)
                inv.fail(platform_error(inv.request_id, "Sandbox.Failure", str(exc), status="failure"))
                raise SandboxStartFailed(str(exc)) from None
            inv.init_duration_ms = sandbox.init_duration_ms
        sandbox.assign(inv)
        timer = asyncio.get_running_loop().call_at(inv.deadline_monotonic, self._on_deadline, sandbox, inv)
        inv.finished.add_done_callback(lambda _: timer.cancel())
        return await asyncio.shield(inv.outcome)

    def _take_idle(self) -> Sandbox | None:
        while self.idle:
            sandbox = self.idle.pop()
            if sandbox.state is SandboxState.READY:
                return sandbox
        return None

    def _reserve_new(self) -> Sandbox:
        if len(self.sandboxes) >= self.function.reserved_concurrency:
            raise Throttled(self.function.name)
        sandbox = Sandbox(self, sandbox_id=uuid.uuid4().hex[:12], ip=self.host.allocate_ip())
        self.sandboxes[sandbox.id] = sandbox
        return sandbox

    async def _start(self, sandbox: Sandbox) -> None:
        spec = self._container_spec(sandbox)
        backend = self.host.backend
        sandbox.container_id = await backend.run(backend.create_container, spec, self.host.network)
        self.host.register(sandbox)
        sock = await backend.run(backend.attach_output, sandbox.container_id)
        sandbox.output_task = asyncio.create_task(logs.read_container_output(sock, sandbox.on_output))
        sandbox.launching()
        pid = await backend.run(backend.start, sandbox.container_id)
        sandbox.launched(pid)

    def _container_spec(self, sandbox: Sandbox) -> ContainerSpec:
        fn = self.function
        if fn.is_image:
            image, command = fn.image, ([fn.handler] if fn.handler else None)
        else:
            image = self.host.image_for(fn)
            command = ["/var/task/bootstrap"] if fn.is_custom_runtime else ["/var/runtime/bootstrap"]
        labels = {**self.host.labels, LABEL_FUNCTION: fn.name, LABEL_VERSION: LATEST, LABEL_SANDBOX: sandbox.id}
        return ContainerSpec(image=image, command=command, env=self.host.sandbox_env(fn), labels=labels,
                             ip=sandbox.ip, memory_mb=fn.memory_mb, tmp_mb=fn.ephemeral_storage_mb,
                             code_dir=None if fn.is_image else fn.code_dir,
                             name=f"rh-{fn.name[:40]}-{sandbox.id}")

    # --- the end of an invocation --------------------------------------------
    def _on_deadline(self, sandbox: Sandbox, inv: Invocation) -> None:
        seconds = float(self.function.timeout_s)
        failed = inv.fail(platform_error(inv.request_id, SANDBOX_TIMEDOUT,
                                         f"Task timed out after {seconds:.2f} seconds", status="timeout"))
        if failed:
            line = f"{logs.utc_timestamp()} {inv.request_id} Task timed out after {seconds:.2f} seconds\n".encode()
            inv.append_log(line)
            self.sink.write(self.function.name, line)
            self._destroy_soon(sandbox)

    async def _report_when_finished(self, sandbox: Sandbox, inv: Invocation) -> None:
        try:
            await inv.finished
            started = time.monotonic()
            while (time.monotonic() - sandbox.last_output_at < OUTPUT_QUIET_S
                   and time.monotonic() - started < OUTPUT_SETTLE_MAX_S):
                await asyncio.sleep(OUTPUT_QUIET_S)
            peak = sandbox.read_memory_peak()
            fn = self.function
            used_mb = fn.memory_mb if sandbox.oom_killed or peak is None else min(fn.memory_mb, bytes_to_mb_rounded_up(peak))
            failure = inv.failure      # only platform failures add Status to REPORT
            status = failure.status if failure else "success"
            text = logs.end_line(inv.request_id) + (report_line(
                inv.request_id, inv.duration_ms, fn.memory_mb, used_mb, inv.init_duration_ms,
                status=status, error_type=failure.error_type if failure else None) + "\n").encode()
            inv.append_log(text)
            self.sink.write(fn.name, text)
            inv.report = text.decode().splitlines()[-1]
        finally:
            if not inv.reported.done():
                inv.reported.set_result(None)

    # --- what sandboxes tell the pool ---------------------------------------
    def on_released(self, sandbox: Sandbox) -> None:
        if sandbox.state is SandboxState.READY:
            self.idle.append(sandbox)

    def on_dead(self, sandbox: Sandbox) -> None:
        if sandbox in self.idle:
            self.idle.remove(sandbox)
        self._destroy_soon(sandbox)

    # --- removal ------------------------------------------------------------
    def _destroy_soon(self, sandbox: Sandbox) -> None:
        if getattr(sandbox, "_destroying", False):
            return
        sandbox._destroying = True
        if sandbox.life.can(SandboxEvent.SHUTDOWN):
            sandbox.life.apply(SandboxEvent.SHUTDOWN)
        if sandbox in self.idle:
            self.idle.remove(sandbox)
        task = asyncio.create_task(self._destroy(sandbox))
        self.host.track(task)

    async def _destroy(self, sandbox: Sandbox) -> None:
        backend = self.host.backend
        try:
            if sandbox.container_id is not None:
                await backend.run(backend.kill, sandbox.container_id)
                if sandbox.state is not SandboxState.DEAD:
                    info = await backend.run(backend.exit_info, sandbox.container_id)
                    if info is not None:
                        sandbox.on_exit(info.exit_code, info.oom_killed)
                await backend.run(backend.remove, sandbox.container_id)
        except Exception as exc:  # a sandbox that cannot be removed must not take the host down
            log.warning("could not remove sandbox %s of %s: %s", sandbox.id, self.function.name, exc)
        finally:
            if sandbox.state is not SandboxState.DEAD:
                sandbox.on_exit(137, False)
            if sandbox.output_task is not None:
                sandbox.output_task.cancel()
            self.sandboxes.pop(sandbox.id, None)
            self.host.unregister(sandbox)

    async def shutdown(self) -> None:
        for sandbox in list(self.sandboxes.values()):
            self._destroy_soon(sandbox)
