"""The scheduler: every function's pool, the stem cells, and the one registry
of live sandboxes, over a container backend.

Owns: creating the pools and stem cells, routing the backend's exit events
to the sandbox or stem they are about (through the registry), reaping idle
sandboxes, draining and shutting down, and what `runtime-host ps` shows of
the sandboxes. It is the SandboxLookup the Runtime API uses.
Must not: import a container engine (it has the ContainerBackend interface)
or speak HTTP.
"""
from __future__ import annotations

import asyncio
import logging
import time

from runtime_host.core.config import IMAGE_OF_RUNTIME, FunctionConfig
from runtime_host.core.invocation import Outcome, platform_error
from runtime_host.core.protocol import LATEST, SANDBOX_FAILURE
from runtime_host.core.states import SandboxState
from runtime_host.scheduler.context import SchedulerContext, StateDiskFull, Stopping
from runtime_host.scheduler.invocation import LiveInvocation
from runtime_host.scheduler.pool import FunctionPool
from runtime_host.scheduler.sandbox import Sandbox
from runtime_host.scheduler.stems import StemCells

log = logging.getLogger("runtime_host.scheduler")

REAP_INTERVAL_S = 1.0
# A container's memory figures go with its cgroup when it exits, so the peak of
# a runtime that is initializing or running is read this often: a runtime
# that dies then is reported with what it used, not with its memory size.
MEMORY_SAMPLE_S = 0.1


def _mb(n: int | None) -> float | None:
    return None if n is None else round(n / 2**20, 1)


def pool_key(name: str, version: str) -> str:
    return name if version == LATEST else f"{name}:{version}"


class Scheduler:
    def __init__(self, ctx: SchedulerContext, functions: dict[str, FunctionConfig]):
        self.ctx = ctx
        self.functions = dict(functions)
        self.stems = ctx.stems = StemCells(ctx, self.functions, ctx.settings.stem_cells)
        self.pools = {name: FunctionPool(ctx, fn) for name, fn in self.functions.items()}
        self._reaper: asyncio.Task | None = None
        self._sampler: asyncio.Task | None = None

    def images_needed(self) -> list[str]:
        """Our image names the functions need (image functions bring their own)."""
        return sorted({IMAGE_OF_RUNTIME[fn.runtime] for fn in self.functions.values() if not fn.is_image})

    def code_changed(self, name: str) -> None:
        """A function's folder changed (code_reload.py): its next invocations run the new code."""
        pool = self.pools.get(name)
        if pool is not None and not self.ctx.stopping:
            log.info("code of %s changed: sandboxes from now on run the new code", name)
            pool.code_changed()

    def add_function(self, fn: FunctionConfig) -> None:
        """A function created while serving (CreateFunction): a fresh pool, and stems for its kind."""
        self.functions[fn.name] = fn
        self.pools[fn.name] = FunctionPool(self.ctx, fn)
        if fn.provisioned_concurrency:
            self.ctx.track(self.pools[fn.name].provision())
        self.stems.fill_all()

    def remove_function(self, name: str) -> None:
        """DeleteFunction: no new invocations reach it; its sandboxes finish what they hold and go.
        Its pools stay listed under another key, so the reaper and shutdown still see them."""
        self.functions.pop(name, None)
        for key in [k for k in self.pools if k == name or k.startswith(name + ":")]:
            pool = self.pools.pop(key)
            pool.code_changed()                  # idle sandboxes go now, busy ones once they answered
            self.pools[f"{key}#deleted-{id(pool)}"] = pool

    async def start(self) -> None:
        """Exits heard, provisioned sandboxes initialized and frozen, stems stocked."""
        self.ctx.backend.watch_exits(self.ctx.registry.on_exit)
        await asyncio.gather(*(pool.provision() for pool in self.pools.values()))
        self._reaper = asyncio.create_task(self._reap_forever())
        self._sampler = asyncio.create_task(self._sample_memory_forever())
        self.stems.fill_all()

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL_S)
            now = time.monotonic()
            for pool in self.pools.values():
                pool.reap_idle(now)

    async def _sample_memory_forever(self) -> None:
        sampled = (SandboxState.INITIALIZING, SandboxState.BUSY)
        while True:
            await asyncio.sleep(MEMORY_SAMPLE_S)
            for pool in self.pools.values():
                for sandbox in pool.sandboxes.values():
                    if sandbox.state in sampled:
                        sandbox.read_memory_peak()

    # --- invoking -----------------------------------------------------------------
    def new_invocation(self, fn: FunctionConfig, payload: bytes, *, qualifier: str | None = None,
                       client_context: str | None = None, trace_id: str | None = None,
                       cognito_identity: str | None = None, streaming_caller: bool = False) -> LiveInvocation:
        inv = LiveInvocation(function_name=fn.name, function=fn, payload=payload, timeout_s=fn.timeout_s,
                             invoked_arn=fn.arn(self.ctx.settings.region, qualifier),
                             client_context=client_context, cognito_identity=cognito_identity,
                             streaming_caller=streaming_caller)
        if trace_id:
            inv.trace_id = trace_id
        return inv

    async def run(self, inv: LiveInvocation) -> Outcome:
        """Runs one invocation to its outcome; raises Throttled, SandboxStartFailed or Stopping."""
        if self.ctx.stopping:
            raise Stopping("runtime-host is shutting down; no new invocations are accepted")
        refusal = self.ctx.ledger.refusal() if self.ctx.ledger is not None else None
        if refusal is not None:
            raise StateDiskFull(refusal)
        return await self.pool_for(inv.function or self.functions[inv.function_name]).invoke(inv)

    def pool_for(self, fn: FunctionConfig) -> FunctionPool:
        """A function's pool; a published version has its own (sandboxes are per version)."""
        key = pool_key(fn.name, fn.version)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = FunctionPool(self.ctx, fn)
        return pool

    # --- the Runtime API's lookup ---------------------------------------------------
    def sandbox_at(self, address: str) -> Sandbox | None:
        member = self.ctx.registry.at(address)
        return member if isinstance(member, Sandbox) else None

    def sandboxes(self) -> list[Sandbox]:
        return [s for pool in self.pools.values() for s in pool.sandboxes.values()]

    # --- stopping -------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self.ctx.stopping

    async def drain(self) -> None:
        """No new invocations; in-flight ones may finish for up to
        drain_timeout_s, then fail with a clear error (their sandbox is removed)."""
        if self.ctx.stopping:
            return
        self.ctx.stopping = True
        for task in (self._reaper, self._sampler):
            if task is not None:
                task.cancel()
        in_flight = self.in_flight()
        timeout_s = self.ctx.settings.drain_timeout_s
        if in_flight:
            log.info("waiting up to %.0f s for %d invocation(s) in flight", timeout_s, len(in_flight))
            await asyncio.wait([asyncio.ensure_future(asyncio.shield(inv.finished)) for inv in in_flight],
                               timeout=timeout_s)
            for inv in in_flight:
                inv.fail(platform_error(inv.request_id, SANDBOX_FAILURE,
                                        f"runtime-host stopped; the invocation did not finish within "
                                        f"{timeout_s:.0f} s", status="failure"))

    async def shutdown(self) -> None:
        """drain(), then every sandbox and stem removed, background work done."""
        await self.drain()
        for pool in self.pools.values():
            await pool.shutdown()
        await self.stems.shutdown()
        if self.ctx.tasks:
            _, pending = await asyncio.wait(list(self.ctx.tasks), timeout=30)
            for task in pending:
                task.cancel()

    # --- what `runtime-host ps` shows ------------------------------------------------
    def describe_sandboxes(self) -> list[dict]:
        backend = self.ctx.backend
        now = time.monotonic()
        rows = []
        for sandbox in self.sandboxes():
            busy = sandbox.state is SandboxState.BUSY
            container = sandbox.container
            cpu_s = backend.cpu_seconds(container) if container is not None else None
            rows.append({
                "function": sandbox.function.name,
                "sandbox": sandbox.id,
                "container": (sandbox.container_id or "")[:12],
                "state": sandbox.state.value,
                "initialization_type": sandbox.initialization_type,
                "age_s": round(now - sandbox.created_at, 1),
                "invocations": sandbox.invocations_served,
                "freezes": sandbox.freezes,
                "idle_s": 0.0 if busy else round(now - sandbox.last_used_at, 1),
                "address": sandbox.address,
                "memory_mb": sandbox.function.memory_mb,
                "memory_now_mb": _mb(backend.memory_now_bytes(container) if container is not None else None),
                "memory_peak_mb": _mb(backend.memory_peak_bytes(container) if container is not None else None),
                "cpu_s": None if cpu_s is None else round(cpu_s, 3),
            })
        return sorted(rows, key=lambda r: (r["function"], -r["age_s"]))

    def in_flight(self) -> list[LiveInvocation]:
        return [inv for pool in self.pools.values() for inv in pool.in_flight()]


