"""The host: one event loop, the functions it serves, and their sandboxes.

Owns: start-up (Docker reachable, leftovers of dead hosts removed, images
present, the private network, the Runtime API listening on the network's
gateway) and shutdown (every container and the network removed); the
address book of sandboxes (by address and by container id); the environment
every sandbox gets (spec §4.1).
Must not: hold invocation or sandbox state (pools and sandboxes do).
"""
from __future__ import annotations

import asyncio
import logging
import os
import resource
import shutil
import sys
import time
import uuid
from typing import Callable
from pathlib import Path

import psutil


from runtime_host.backend.docker import image_builder
from runtime_host.backend.docker.engine import BackendError, DockerBackend, NetworkInfo, host_labels
from runtime_host.core.billing import PriceTableError, load_prices
from runtime_host.backend.docker.cgroups import cpu_seconds
from runtime_host.core.config import IMAGE_OF_RUNTIME, FunctionConfig
from runtime_host.store.ledger import Ledger, LedgerError
from runtime_host.core.invocation import Invocation, Outcome, platform_error
from runtime_host.store.logs import LogSink
from runtime_host.scheduler.pool import FunctionPool
from runtime_host.core.protocol import INIT_TIMEOUT_S, LATEST, LOOPBACK_ADDRESS, RUNTIME_API_PORT
from runtime_host.backend.docker.netns import NetnsListeners
from runtime_host.api.runtime_api import RuntimeApi
from runtime_host.api.http_server import start_server
from runtime_host.scheduler.sandbox import Sandbox
from runtime_host.core.states import SandboxState
from runtime_host.scheduler.stems import STEM_PATH, StemCells

log = logging.getLogger("runtime_host.host")

DEFAULT_REGION = "us-east-1"
DEFAULT_IDLE_TTL_S = 600           # a warm sandbox idle this long is shut down
DEFAULT_FREEZE_GRACE_S = 0.005     # an idle sandbox is frozen after this long
DEFAULT_DRAIN_TIMEOUT_S = 30.0     # on shutdown, how long in-flight invocations may take to finish
REAP_INTERVAL_S = 1.0


def _mb(n: int | None) -> float | None:
    return None if n is None else round(n / 2**20, 1)


class HostError(RuntimeError):
    """The host cannot start; the message says what to do."""


class HostStopping(RuntimeError):
    """The host is shutting down and takes no new invocations."""


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


class Host:
    def __init__(self, functions: dict[str, FunctionConfig], *, state_dir: Path = Path(".runtime-host"),
                 region: str = DEFAULT_REGION, echo_logs: bool = True, image_progress=None,
                 freeze: bool = True, freeze_grace_s: float = DEFAULT_FREEZE_GRACE_S,
                 idle_ttl_s: int = DEFAULT_IDLE_TTL_S,
                 init_timeout_s: float = INIT_TIMEOUT_S, drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
                 prices_path: Path | None = None, ledger_sync: str = "normal", stem_cells: int = 1):
        self.functions = dict(functions)
        self.state_dir = Path(state_dir)
        self.region = region
        self.id = uuid.uuid4().hex
        self.labels = host_labels(self.id)
        self.sink = LogSink(self.state_dir / "logs", echo=sys.stderr if echo_logs else None)
        self.image_progress = image_progress
        self.pools: dict[str, FunctionPool] = {}
        self.backend: DockerBackend | None = None
        self.network: NetworkInfo | None = None
        self._images: dict[str, str] = {}
        self._by_ip: dict[str, Sandbox] = {}
        self._by_container: dict[str, Sandbox] = {}
        self._free_ips: list[str] = []
        self.runtime_api: RuntimeApi | None = None
        self._runtime_server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self._reaper: asyncio.Task | None = None
        self._warned: set[str] = set()
        self.started_at = time.time()
        self.freeze_enabled = freeze
        self.freeze_grace_s = freeze_grace_s
        self.idle_ttl_s = idle_ttl_s
        self.init_timeout_s = init_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.stopping = False
        self.cores = os.cpu_count() or 1
        try:
            self.prices = load_prices(prices_path)
        except PriceTableError as exc:
            raise HostError(f"{exc}; the host does not start with a price table it cannot read") from None
        self.ledger_sync = ledger_sync
        self.ledger: Ledger | None = None
        self._process = psutil.Process()
        self.stems = StemCells(self, stem_cells)
        self.netns = NetnsListeners()
        # Set by `runtime-host conformance` before start(): records every Runtime API call.
        self.protocol_observer = None

    # --- lifecycle ----------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        raise_open_file_limit()
        try:
            self.ledger = Ledger(self.state_dir, self.ledger_sync)
        except LedgerError as exc:
            raise HostError(str(exc)) from None
        self.ledger.start(loop)
        try:
            self.backend = await loop.run_in_executor(None, DockerBackend, self.id)
        except BackendError as exc:
            raise HostError(str(exc)) from None
        removed = await self.backend.run(self.backend.remove_orphans)
        if removed:
            log.warning("removed %d container(s) left by a host that is no longer running", removed)
        await self._ensure_images()
        self.network = await self.backend.run(self.backend.create_network, self.labels)
        upper_half = list(self.network.subnet.subnets(prefixlen_diff=1))[1]
        self._free_ips = [str(ip) for ip in upper_half.hosts()]   # pop() takes from the top
        self.backend.watch_exits(loop, self._on_container_exit)
        self.runtime_api = RuntimeApi(self)
        self.runtime_api.add_route("GET", STEM_PATH, self.stems.handle)
        # The gateway address exists only on the host side of our private network:
        # sandboxes reach the Runtime API, nothing outside the host does.
        self._runtime_server = await self.runtime_api.start(str(self.network.gateway), RUNTIME_API_PORT)
        self.pools = {name: FunctionPool(self, fn) for name, fn in self.functions.items()}
        # Provisioned sandboxes are initialized and frozen before the first invocation arrives.
        await asyncio.gather(*(pool.provision() for pool in self.pools.values()))
        self._reaper = asyncio.create_task(self._reap_forever())
        self.stems.fill_all()

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL_S)
            now = time.monotonic()
            for pool in self.pools.values():
                pool.reap_idle(now)

    def warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)

    async def _ensure_images(self) -> None:
        needed = sorted({IMAGE_OF_RUNTIME[fn.runtime] for fn in self.functions.values() if not fn.is_image})
        loop = asyncio.get_running_loop()
        for runtime in needed:
            try:
                self._images[runtime] = await loop.run_in_executor(
                    None, image_builder.ensure_image, runtime, self.image_progress)
            except image_builder.ImageBuildError as exc:
                raise HostError(str(exc)) from None

    async def drain(self) -> None:
        """No new invocations; in-flight ones may finish for up to
        drain_timeout_s, then fail with a clear error (their sandbox is removed)."""
        if self.stopping:
            return
        self.stopping = True
        if self._reaper is not None:
            self._reaper.cancel()
        in_flight = [inv for pool in self.pools.values() for inv in pool.in_flight()]
        if in_flight:
            log.info("waiting up to %.0f s for %d invocation(s) in flight", self.drain_timeout_s, len(in_flight))
            await asyncio.wait([asyncio.ensure_future(asyncio.shield(inv.finished)) for inv in in_flight],
                               timeout=self.drain_timeout_s)
            for inv in in_flight:
                inv.fail(platform_error(inv.request_id, "Sandbox.Failure",
                                        f"runtime-host stopped; the invocation did not finish within "
                                        f"{self.drain_timeout_s:.0f} s", status="failure"))

    async def stop(self) -> None:
        """drain(), then every container and the network are removed."""
        await self.drain()
        for pool in self.pools.values():
            await pool.shutdown()
        await self.stems.shutdown()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=30)
            for task in pending:
                task.cancel()
        if self._runtime_server is not None:
            self._runtime_server.close()
        self.netns.close()
        if self.backend is not None:
            leftovers = await self.backend.run(self.backend.our_containers)
            for c in leftovers:
                await self.backend.end(c["Id"])
            if self.network is not None:
                await self.backend.run(self.backend.remove_network, self.network)
            self.backend.close()
        if self.ledger is not None:
            self.ledger.close()
        shutil.rmtree(self.stems.root, ignore_errors=True)
        self.sink.close()

    def track(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- invoking -----------------------------------------------------------
    def resolve(self, name: str) -> FunctionConfig | None:
        return self.functions.get(name)

    async def invoke(self, fn: FunctionConfig, payload: bytes, *, qualifier: str | None = None,
                     client_context: str | None = None, trace_id: str | None = None,
                     cognito_identity: str | None = None) -> tuple[Invocation, Outcome]:
        if self.stopping:
            raise HostStopping("runtime-host is shutting down; no new invocations are accepted")
        inv = Invocation(function_name=fn.name, payload=payload, timeout_s=fn.timeout_s,
                         invoked_arn=fn.arn(self.region, qualifier), client_context=client_context,
                         cognito_identity=cognito_identity)
        if trace_id:
            inv.trace_id = trace_id
        outcome = await self.pools[fn.name].invoke(inv)
        return inv, outcome

    # --- sandboxes' address book ---------------------------------------------
    def allocate_ip(self) -> str:
        if not self._free_ips:
            raise BackendError("the sandbox network has no free address left")
        return self._free_ips.pop()

    def release_ip(self, ip: str) -> None:
        self._free_ips.insert(0, ip)     # reuse addresses last: late packets hit nobody

    @property
    def runtime_api_address(self) -> str:
        """Where a sandbox without a listener of its own finds the Runtime API."""
        return f"{self.network.gateway}:{RUNTIME_API_PORT}"

    async def runtime_api_inside(self, pid: int, sandbox_of: Callable[[], Sandbox | None]) -> asyncio.AbstractServer | None:
        """The Runtime API on LOOPBACK_RUNTIME_API inside the network
        namespace of container process `pid`, for the sandbox `sandbox_of()`
        names when a request comes; None where that cannot be had (the
        sandbox then uses the gateway; said once in the log)."""
        sock = await self.netns.listen(pid, LOOPBACK_ADDRESS, RUNTIME_API_PORT)
        if sock is None:
            if not self.netns.available:
                self.warn_once("netns", "sandboxes reach the Runtime API through the bridge gateway, not their own "
                               f"loopback ({self.netns.reason}); about 0.1 ms slower per invocation")
            return None
        api = self.runtime_api
        return await start_server(lambda request: api.serve_as(request, sandbox_of()), sock=sock)

    def image_of(self, image_name: str) -> str:
        return self._images[image_name]

    def register(self, sandbox: Sandbox) -> None:
        self._by_ip[sandbox.ip] = sandbox
        self._by_container[sandbox.container_id] = sandbox

    def unregister(self, sandbox: Sandbox) -> None:
        if self._by_ip.pop(sandbox.ip, None) is not None or sandbox.container_id is None:
            self._free_ips.insert(0, sandbox.ip)     # reuse addresses last: late packets hit nobody
        if sandbox.container_id:
            self._by_container.pop(sandbox.container_id, None)

    def sandbox_at(self, ip: str) -> Sandbox | None:
        return self._by_ip.get(ip)

    def sandboxes(self) -> list[Sandbox]:
        return [s for pool in self.pools.values() for s in pool.sandboxes.values()]

    def describe_host(self) -> dict:
        """The host process itself, for `runtime-host ps`."""
        with self._process.oneshot():
            cpu = self._process.cpu_times()
            return {"pid": self._process.pid, "rss_mb": round(self._process.memory_info().rss / 2**20, 1),
                    "cpu_s": round(cpu.user + cpu.system, 2), "uptime_s": round(time.time() - self.started_at, 1),
                    "sandboxes": len(self.sandboxes()), "functions": len(self.functions),
                    "stem_cells_ready": self.stems.ready_count()}

    def describe_sandboxes(self) -> list[dict]:
        """What `runtime-host ps` shows, one row per sandbox."""
        now = time.monotonic()
        rows = []
        for sandbox in self.sandboxes():
            busy = sandbox.state is SandboxState.BUSY
            cpu_s = cpu_seconds(sandbox.cgroups) if sandbox.cgroups else None
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
                "address": sandbox.ip,
                "memory_mb": sandbox.function.memory_mb,
                "memory_now_mb": _mb(sandbox.cgroups.memory_now_bytes() if sandbox.cgroups else None),
                "memory_peak_mb": _mb(sandbox.cgroups.memory_peak_bytes() if sandbox.cgroups else None),
                "cpu_s": None if cpu_s is None else round(cpu_s, 3),
            })
        return sorted(rows, key=lambda r: (r["function"], -r["age_s"]))

    def _on_container_exit(self, container_id: str, exit_code: int, oom: bool) -> None:
        sandbox = self._by_container.get(container_id)
        if sandbox is None:
            self.stems.on_exit(container_id)
            return
        if exit_code == 128 + 9 and not oom:
            # SIGKILL: the Engine knows whether the kernel's OOM killer sent it.
            self.track(asyncio.create_task(self._exit_after_asking_engine(sandbox, exit_code)))
            return
        sandbox.on_exit(exit_code, oom)

    async def _exit_after_asking_engine(self, sandbox: Sandbox, exit_code: int) -> None:
        info = await self.backend.run(self.backend.exit_info, sandbox.container_id)
        sandbox.on_exit(exit_code, bool(info and info.oom_killed))

    # --- what a sandbox is given --------------------------------------------
    def image_for(self, fn: FunctionConfig) -> str:
        return self._images[IMAGE_OF_RUNTIME[fn.runtime]]

    def sandbox_env(self, fn: FunctionConfig) -> dict[str, str]:
        """spec §4.1, with the function's own variables (validated in config)."""
        stream = time.strftime("%Y/%m/%d", time.gmtime()) + f"/[{LATEST}]{uuid.uuid4().hex}"
        env = {
            "AWS_LAMBDA_RUNTIME_API": self.runtime_api_address,
            "AWS_LAMBDA_FUNCTION_NAME": fn.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": LATEST,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "LAMBDA_TASK_ROOT": "/var/task",
            "LAMBDA_RUNTIME_DIR": "/var/runtime",
            "TZ": ":UTC",
            "LANG": "C.UTF-8",        # Lambda says en_US.UTF-8; Debian's minimal base has only C.UTF-8
            "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
            "LD_LIBRARY_PATH": "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        }
        if fn.handler:
            env["_HANDLER"] = fn.handler
        if not fn.is_custom_runtime and not fn.is_image:
            env["AWS_EXECUTION_ENV"] = f"AWS_Lambda_{fn.lambda_runtime}"
        env.update(fn.environment)
        return env
