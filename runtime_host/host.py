"""The host: composes the layers below it, and holds no rules of its own.

Owns: building the parts in order (ledger and log files; the container
backend; the Runtime API listening on the backend's network with the
stem-cell endpoint beside it; the scheduler with its pools and stem cells)
and taking them down in the reverse order; the `Invoker` the Invoke API
uses; what `runtime-host ps` shows of the host process itself.
Must not: hold invocation or sandbox state, or decide anything a pool,
sandbox or backend decides: every method here is a call to one of them.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import resource
import sys
import time
import uuid
from pathlib import Path

import psutil

from runtime_host.api.extensions_api import ExtensionsApi
from runtime_host.api.metrics import HostMetrics
from runtime_host.api.runtime_api import RuntimeApi
from runtime_host.api.stem_api import STEM_PATH, StemEndpoint
from runtime_host.backend.interface import BackendError, ContainerBackend
from runtime_host.core.billing import PriceTableError, load_prices
from runtime_host.core.config import IMAGE_OF_RUNTIME, FunctionConfig
from runtime_host.core.invocation import Outcome
from runtime_host.core.protocol import INIT_TIMEOUT_S, LATEST, RUNTIME_API_PORT
from runtime_host.scheduler.async_delivery import AsyncDelivery
from runtime_host.scheduler.code_reload import CodeWatcher
from runtime_host.scheduler.context import (DEFAULT_DRAIN_TIMEOUT_S, DEFAULT_FREEZE_GRACE_S, DEFAULT_IDLE_TTL_S,
                                            DEFAULT_REGION, SchedulerContext, SchedulerSettings)
from runtime_host.scheduler.invocation import LiveInvocation
from runtime_host.scheduler.registry import Registry
from runtime_host.scheduler.sandbox import Sandbox
from runtime_host.scheduler.schedule_timer import ScheduleTimer
from runtime_host.scheduler.scheduler import Scheduler
from runtime_host.store import layers
from runtime_host.store.event_queue import EventQueue
from runtime_host.store.versions import Alias, VersionStore
from runtime_host.store.function_store import FunctionStore
from runtime_host.store.ledger import Ledger, LedgerError
from runtime_host.store.logs import LogSink

log = logging.getLogger("runtime_host.host")

class HostError(RuntimeError):
    """The host cannot start; the message says what to do."""


def raise_open_file_limit() -> None:
    """Each sandbox holds about six descriptors here (its output stream, its
    Runtime API listener and connection, cgroup files), so the 1,024 a login
    shell usually allows runs out near 170 sandboxes. Raise the soft limit
    to the hard one, as Go programs (and so dockerd) do at start."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20), hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s; the host may run out of "
                        "descriptors beyond ~%d sandboxes (raise it with `ulimit -n`)", soft, exc, soft // 6)


def docker_backend(host_id: str, state_dir: Path) -> ContainerBackend:
    """The default backend (imported here only when used, so the scheduler's
    unit tests never load the Docker SDK)."""
    from runtime_host.backend.docker.backend import DockerBackend
    return DockerBackend(host_id, state_dir / "stems" / host_id[:12])


class Host:
    def __init__(self, functions: dict[str, FunctionConfig], *, state_dir: Path = Path(".runtime-host"),
                 region: str = DEFAULT_REGION, echo_logs: bool = True, image_progress=None,
                 freeze: bool = True, freeze_grace_s: float = DEFAULT_FREEZE_GRACE_S,
                 idle_ttl_s: int = DEFAULT_IDLE_TTL_S,
                 init_timeout_s: float = INIT_TIMEOUT_S, drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
                 prices_path: Path | None = None, ledger_sync: str = "normal", stem_cells: int = 1,
                 backend: ContainerBackend | None = None, runtime_api_port: int = RUNTIME_API_PORT,
                 protocol_observer=None, async_retry_scale: float = 1.0, reload_code: bool = False,
                 schedule_clock=None):
        self.functions = dict(functions)
        self.state_dir = Path(state_dir)
        self.region = region
        self.id = uuid.uuid4().hex
        self.sink = LogSink(self.state_dir / "logs", echo=sys.stderr if echo_logs else None)
        self.image_progress = image_progress
        self.backend = backend if backend is not None else docker_backend(self.id, self.state_dir)
        self.runtime_api_port = runtime_api_port
        # Set by `runtime-host conformance`: records every Runtime API call.
        self.protocol_observer = protocol_observer
        self.started_at = time.time()
        try:
            prices = load_prices(prices_path)
        except PriceTableError as exc:
            raise HostError(f"{exc}; the host does not start with a price table it cannot read") from None
        self.ledger_sync = ledger_sync
        self.ledger: Ledger | None = None
        self._process = psutil.Process()
        self.runtime_api: RuntimeApi | None = None
        self._runtime_server: asyncio.AbstractServer | None = None
        settings = SchedulerSettings(region=region, freeze=freeze, freeze_grace_s=freeze_grace_s,
                                     idle_ttl_s=idle_ttl_s, init_timeout_s=init_timeout_s,
                                     drain_timeout_s=drain_timeout_s, stem_cells=stem_cells,
                                     cores=os.cpu_count() or 1)
        self.ctx = SchedulerContext(backend=self.backend, registry=Registry(), settings=settings,
                                    ledger=None, log_writer=self.sink, prices=prices, listeners=None)
        self.scheduler = Scheduler(self.ctx, self.functions)
        self.versions = VersionStore(self.state_dir)
        self._versions: dict[tuple[str, str], FunctionConfig] = {}
        # Folders made by CreateFunction (store/function_store.py) change through the API only, by a
        # rename of the whole folder, which a watch would lose: they are not watched.
        self.function_store = FunctionStore(self.state_dir)
        watched = {n: f for n, f in self.functions.items() if not self.function_store.owns(f.code_dir)}
        self.code_watcher = CodeWatcher(watched, self.scheduler.code_changed) if reload_code else None
        # Event invocations: durable in the state directory before their 202.
        self.event_queue = EventQueue(self.state_dir)
        self.async_delivery = AsyncDelivery(self.event_queue, self.functions, region, self.scheduler.new_invocation,
                                            self.scheduler.run, retry_scale=async_retry_scale)
        # `schedule` in function.toml: EventBridge rules, fired as Event invocations.
        self.schedule_timer = ScheduleTimer(self.functions, region, self.invoke_async, schedule_clock)
        # GET /metrics (api/metrics.py): counted as records go to the ledger, the rest read when scraped.
        self.metrics = HostMetrics(self.scheduler, self.async_delivery)

    # --- lifecycle ----------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        raise_open_file_limit()
        try:
            self.ledger = Ledger(self.state_dir, self.ledger_sync)
        except LedgerError as exc:
            raise HostError(str(exc)) from None
        self.ledger.start(loop)
        self.ctx.ledger = self.metrics.metered(self.ledger)
        try:
            await self.backend.open()
            for image_name in self.scheduler.images_needed():
                self.ctx.images[image_name] = await self.backend.ensure_image(image_name, self.image_progress)
        except BackendError as exc:
            raise HostError(str(exc)) from None
        for fn in self.functions.values():
            if fn.layers:
                try:
                    self.ctx.opt_dirs[fn.name] = await loop.run_in_executor(
                        None, layers.assemble, fn.layers, self.state_dir / "layers")
                except (OSError, ValueError) as exc:
                    raise HostError(f"function {fn.name}: its layers could not be put together under /opt: {exc}") from None
        self.runtime_api = RuntimeApi(self.scheduler, self.protocol_observer)
        ExtensionsApi(self.runtime_api)          # the Extensions, Telemetry and Logs APIs on the same listener
        self.runtime_api.add_route("GET", STEM_PATH, StemEndpoint(self.scheduler.stems).handle)
        self._runtime_server = await self.runtime_api.start(self.backend.runtime_api_address, self.runtime_api_port)
        port = self._runtime_server.sockets[0].getsockname()[1]
        self.ctx.runtime_api_address = f"{self.backend.runtime_api_address}:{port}"
        await self.backend.confine(port)          # sandboxes reach this machine at that port only (firewall.py)
        self.ctx.listeners = self.runtime_api
        await self.scheduler.start()
        for fn in self.functions.values():
            for destination in (fn.async_invoke.on_success, fn.async_invoke.on_failure):
                if destination is not None and destination.kind == "function" and destination.target not in self.functions:
                    log.warning("function %s: its destination function %s is not served here; records sent "
                                "there are lost", fn.name, destination.target)
        await self.async_delivery.start()
        self.schedule_timer.start()
        if self.code_watcher is not None:
            self.code_watcher.start()

    async def drain(self) -> None:
        await self.schedule_timer.stop()
        if self.code_watcher is not None:
            await self.code_watcher.stop()
        await self.async_delivery.stop_taking()
        await self.scheduler.drain()
        await self.async_delivery.stop()

    async def stop(self) -> None:
        """drain(), then every sandbox, the Runtime API and the backend's containers and network removed."""
        await self.drain()
        await self.scheduler.shutdown()
        if self._runtime_server is not None:
            self._runtime_server.close()
        try:
            await self.backend.close()
        except Exception as exc:                 # never lose the ledger over a container left behind
            log.warning("could not remove every container: %s", exc)
        await self.async_delivery.stop()
        self.event_queue.close()
        if self.ledger is not None:
            self.ledger.close()
        self.sink.close()

    # --- the Invoker the Invoke API uses -------------------------------------
    @property
    def stopping(self) -> bool:
        return self.scheduler.stopping

    def resolve(self, name: str) -> FunctionConfig | None:
        return self.functions.get(name)

    def track(self, coro) -> asyncio.Task:
        return self.ctx.track(coro)

    async def invoke(self, fn: FunctionConfig, payload: bytes, *, qualifier: str | None = None,
                     client_context: str | None = None, trace_id: str | None = None,
                     cognito_identity: str | None = None, streaming_caller: bool = False,
                     request_id: str | None = None) -> tuple[LiveInvocation, Outcome]:
        """request_id: the id the caller already gave the event (a function URL's requestContext)."""
        inv = self.scheduler.new_invocation(fn, payload, qualifier=qualifier, client_context=client_context,
                                            trace_id=trace_id, cognito_identity=cognito_identity,
                                            streaming_caller=streaming_caller)
        if request_id is not None:
            inv.request_id = request_id
        return inv, await self.scheduler.run(inv)

    # --- versions and aliases (store/versions.py) -------------------------------------
    def version_of(self, fn: FunctionConfig, version: str) -> FunctionConfig | None:
        """A published version's configuration (its own copy of the code), or None."""
        key = (fn.name, version)
        if key not in self._versions:
            published = self.versions.get(fn.name, version)
            if published is None:
                return None
            self._versions[key] = dataclasses.replace(fn, code_dir=published.code_dir, version=version,
                                                      description=published.description)
        return self._versions[key]

    def qualified(self, fn: FunctionConfig, qualifier: str | None) -> FunctionConfig | None:
        """What a qualifier names: $LATEST, a version, or an alias (a weighted
        alias picks one of its two versions at random, by weight)."""
        if qualifier is None or qualifier == LATEST:
            return fn
        if qualifier.isdigit():
            return self.version_of(fn, qualifier)
        alias = self.versions.aliases(fn.name).get(qualifier)
        if alias is None:
            return None
        version = alias.function_version
        if alias.weights:
            extra, weight = next(iter(alias.weights.items()))
            if random.random() < weight:
                version = extra
        return fn if version == LATEST else self.version_of(fn, version)

    async def publish_version(self, fn: FunctionConfig, description: str) -> tuple[FunctionConfig, bool]:
        published, created = await asyncio.get_running_loop().run_in_executor(
            None, self.versions.publish, fn.name, fn.code_dir, description)
        return self.version_of(fn, published.version), created

    # --- functions made through the API (api/function_admin.py) -------------------------
    async def add_function(self, fn: FunctionConfig) -> None:
        """A function created while serving: its image ready, then served from its next invocation."""
        if not fn.is_image and IMAGE_OF_RUNTIME[fn.runtime] not in self.ctx.images:
            image_name = IMAGE_OF_RUNTIME[fn.runtime]
            try:
                self.ctx.images[image_name] = await self.backend.ensure_image(image_name, self.image_progress)
            except BackendError as exc:
                raise HostError(str(exc)) from None
        self.functions[fn.name] = fn             # the dict async delivery and schedules read too
        self.scheduler.add_function(fn)
        log.info("function %s created (%s, %s): served from its next invocation", fn.name, fn.runtime, fn.handler)

    def code_replaced(self, fn: FunctionConfig) -> None:
        """New code in a created function's folder: as code reload does, old sandboxes finish and are retired."""
        self.scheduler.code_changed(fn.name)

    async def remove_function(self, fn: FunctionConfig) -> None:
        """DeleteFunction: no longer served; its versions and aliases go with it, as on Lambda."""
        self.functions.pop(fn.name, None)
        self.scheduler.remove_function(fn.name)
        for key in [k for k in self._versions if k[0] == fn.name]:
            del self._versions[key]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.versions.delete_function, fn.name)
        await loop.run_in_executor(None, self.function_store.retire, fn.name)

    async def auto_publish_alias(self, fn: FunctionConfig, alias_name: str) -> str:
        """SAM's AutoPublishAlias: a version of the code as it is now (the newest one again if the
        code did not change) and the alias pointed at it; the version's number."""
        published, _ = await self.publish_version(fn, "AutoPublishAlias")
        aliases = self.versions.aliases(fn.name)
        if alias_name not in aliases or aliases[alias_name].function_version != published.version:
            aliases[alias_name] = Alias(alias_name, published.version, "AutoPublishAlias", {}, str(uuid.uuid4()))
            await asyncio.get_running_loop().run_in_executor(None, self.versions.save_aliases, fn.name, aliases)
        return published.version

    def event_invoke_config(self, fn: FunctionConfig):
        return self.async_delivery.api_config(fn)

    async def set_event_invoke_config(self, fn: FunctionConfig, config) -> None:
        await self.async_delivery.set_config(fn, config)

    async def invoke_async(self, fn: FunctionConfig, payload: bytes, *, qualifier: str | None = None,
                           trace_id: str | None = None) -> str:
        """An Event invocation: queued durably; its request id (the one the function will see)."""
        return await self.async_delivery.accept(fn, payload, qualifier=qualifier, trace_id=trace_id)

    # --- what cli and conformance may see --------------------------------------
    @property
    def runtime_api_address(self) -> str:
        """host:port where sandboxes without a listener of their own reach the Runtime API."""
        return self.ctx.runtime_api_address

    def sandboxes(self) -> list[Sandbox]:
        return self.scheduler.sandboxes()

    def sandbox_at(self, address: str) -> Sandbox | None:
        return self.scheduler.sandbox_at(address)

    async def signal(self, sandbox: Sandbox, signal_name: str) -> None:
        """Sends a signal to a sandbox's container (conformance: SIGTERM)."""
        if sandbox.container is not None:
            await self.backend.signal(sandbox.container, signal_name)

    def code_changed(self, function_name: str) -> None:
        """The function's code changed (warm_run.py sees it by fingerprint): its warm sandboxes retire."""
        self.scheduler.code_changed(function_name)

    def log_path(self, function_name: str) -> Path:
        """The file every line of the function's output is appended to."""
        return self.sink.log_dir / f"{function_name}.log"

    def memory_now_bytes(self, sandbox: Sandbox) -> int | None:
        """A sandbox's memory in use now, as its backend measures it (None if it cannot)."""
        return self.backend.memory_now_bytes(sandbox.container) if sandbox.container is not None else None

    def describe_host(self) -> dict:
        """The host process itself, for `runtime-host ps`."""
        with self._process.oneshot():
            cpu = self._process.cpu_times()
            return {"pid": self._process.pid, "rss_mb": round(self._process.memory_info().rss / 2**20, 1),
                    "cpu_s": round(cpu.user + cpu.system, 2), "uptime_s": round(time.time() - self.started_at, 1),
                    "sandboxes": len(self.sandboxes()), "functions": len(self.functions),
                    "stem_cells_ready": self.scheduler.stems.ready_count(), "backend": self.backend.name}

    def describe_sandboxes(self) -> list[dict]:
        return self.scheduler.describe_sandboxes()
