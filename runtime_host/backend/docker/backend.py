"""The Docker backend: the ContainerBackend interface over a local Docker engine.

Owns: putting the interface's calls together from the engine (engine.py),
the images (image_builder.py), the cgroups (cgroups.py), network namespaces
(netns.py) and output channels (output.py); the sandbox networks' addresses
(the host chooses them, so a Runtime API call's source address names its
container before it starts) and which network each sandbox joins (networks
of 30, made as needed, so that ends run side by side: engine.end); the
folders behind stem cells' /var/task and output FIFOs (and, through workdirs.py, those hosts no longer running left).
Must not: know about functions, invocations or pools beyond a ContainerSpec.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil

from runtime_host.backend.docker import firewall, image_builder, workdirs
from runtime_host.backend.docker.cgroups import ContainerCgroups, Freezer, cpu_seconds, set_cpu_quota
from runtime_host.backend.docker.engine import (CFS_PERIOD_US, LABEL_PREFIX, MIN_CFS_QUOTA_US, SHARD_PREFIX, DockerEngine,
                                                EngineSpec, NetworkInfo, host_labels)
from runtime_host.backend.docker.netns import NetnsListeners
from runtime_host.backend.docker.output import OutputFifo, read_container_output
from runtime_host.backend.interface import (OUTPUT_CHANNEL_DIR, BackendError, Container, ContainerSpec,
                                            ExitInfo)

log = logging.getLogger("runtime_host.backend.docker")

LOOPBACK_ADDRESS = "127.0.0.1"
SIGKILL_EXIT_CODE = 128 + 9


@dataclass(eq=False)
class _Docker:
    """What the Docker backend keeps for one container."""
    task_dir: Path | None = None             # behind /var/task when the code comes later (stem cells)
    fifo: OutputFifo | None = None
    reader: asyncio.Task | None = None       # the attach stream's reader
    cgroups: ContainerCgroups | None = None
    freezer: Freezer | None = None
    paused: bool = False                     # frozen by the Engine's pause (no freezer cgroup)
    exited: bool = False                     # its exit event has come
    ended: bool = False
    network: NetworkInfo | None = None       # the shard it is on


def link_tree(source: Path, target: Path) -> None:
    """The function's code into a stem's /var/task: hard links where the
    file system allows (instant, whatever the size), copies elsewhere."""
    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    shutil.copytree(source, target, symlinks=True, copy_function=link_or_copy, dirs_exist_ok=True)


def _monotonic_start_of(pid: int) -> float:
    """When process `pid` started, on time.monotonic()'s clock."""
    age_s = time.time() - psutil.Process(pid).create_time()
    return time.monotonic() - age_s


class DockerBackend:
    name = "docker"

    def __init__(self, host_id: str, work_dir: Path):
        self.host_id = host_id
        self.work_dir = Path(work_dir)          # stem cells' code and output folders
        self._work_dir_lock: int | None = None  # flocked while this host lives (workdirs.py)
        self.labels = host_labels(host_id)
        self.engine: DockerEngine | None = None
        self.network: NetworkInfo | None = None          # shard 0: its gateway is the Runtime API's address
        self.shards: list[NetworkInfo] = []
        self._shard_lock = asyncio.Lock()
        self.netns = NetnsListeners()
        self._free_ips: dict[int, list[str]] = {}        # by shard
        self._containers: dict[str, Container] = {}     # by id, from create to end
        self._tasks: set[asyncio.Task] = set()
        self._confined = False                   # firewall rules of ours in place (confine)
        self._warned: set[str] = set()

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)

    def _track(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the host's lifetime ------------------------------------------------------
    async def open(self) -> None:
        try:
            if self._work_dir_lock is None:
                self._work_dir_lock = workdirs.claim(self.work_dir)
        except OSError as exc:
            raise BackendError(f"cannot lock {workdirs.lock_path(self.work_dir)}: {exc}; the state directory "
                               "must be writable") from None
        self.engine = await asyncio.get_running_loop().run_in_executor(None, DockerEngine, self.host_id)
        removed = await self.engine.run(self.engine.remove_orphans)
        if removed:
            log.warning("removed %d container(s) left by a host that is no longer running", removed)
        # Their containers are gone: the folders behind them may go too.
        live = await self.engine.run(self.engine.live_host_ids)
        folders = await asyncio.get_running_loop().run_in_executor(
            None, workdirs.remove_leftovers, self.work_dir.parent, self.work_dir.name, live)
        if folders:
            log.warning("removed %d folder(s) under %s left by a host that is no longer running",
                        len(folders), self.work_dir.parent)
        try:
            rules = await self.engine.run(firewall.remove_orphans, live)
            if rules:
                log.warning("removed %d firewall rule(s) left by a host that is no longer running", rules)
        except firewall.FirewallError:
            pass                                  # confine() says it, once
        self.network = await self.engine.run(self.engine.create_network, self.labels)
        self._add_shard(self.network)

    async def confine(self, runtime_api_port: int) -> None:
        """Sandboxes reach this machine at the Runtime API's port only, and
        nothing at 169.254.0.0/16 (firewall.py): the whole block, every shard."""
        try:
            await self.engine.run(firewall.confine, self.host_id, self.network.block, runtime_api_port)
            self._confined = True
        except firewall.FirewallError as exc:
            self._warn_once("firewall", f"sandboxes are not kept from this machine's other ports and from "
                            f"169.254.169.254: {exc} (the host needs root and iptables)")

    def _add_shard(self, network: NetworkInfo) -> None:
        self.shards.append(network)
        upper_half = list(network.subnet.subnets(prefixlen_diff=1))[1]
        self._free_ips[network.shard] = [str(ip) for ip in upper_half.hosts()]   # pop() takes from the top

    async def _shard_with_room(self) -> NetworkInfo:
        """The shard with the most free addresses; a new one when all are full.
        Spreading sandboxes over networks is what lets them end side by side
        (engine.end); the cold start that needs a new network waits for its
        creation (one Docker call), one in 30."""
        async with self._shard_lock:
            best = max(self.shards, key=lambda n: len(self._free_ips[n.shard]))
            if self._free_ips[best.shard]:
                return best
            index = len(self.shards)
            if index >= 2 ** (SHARD_PREFIX - self.network.block.prefixlen):
                raise BackendError("the sandbox network has no free address left")
            shard = await self.engine.run(self.engine.create_shard, self.network, index, self.labels)
            self._add_shard(shard)
            return shard

    @property
    def runtime_api_address(self) -> str:
        # The gateway exists only on the host side of our private network:
        # sandboxes reach it, nothing outside the host does.
        return str(self.network.gateway)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=30)
        self.netns.close()
        if self.engine is not None:
            leftovers = await self.engine.run(self.engine.our_containers)
            # Side by side across networks, one at a time within one (engine.end).
            await asyncio.gather(*(self.engine.end(c["Id"], self.engine.network_of(c)) for c in leftovers))
            for network in reversed(self.shards):
                try:
                    await self.engine.run(self.engine.remove_network, network)
                except BackendError as exc:          # the others still go; the next host removes this one
                    log.warning("%s", exc)
            if self._confined:
                await self.engine.run(firewall.release, self.host_id)
            self.engine.close()
        shutil.rmtree(self.work_dir, ignore_errors=True)
        if self._work_dir_lock is not None:
            workdirs.release(self.work_dir, self._work_dir_lock)
            self._work_dir_lock = None

    async def ensure_image(self, image_name: str, progress: Callable[[str], None] | None = None) -> str:
        try:
            return await asyncio.get_running_loop().run_in_executor(
                None, image_builder.ensure_image, image_name, progress)
        except image_builder.ImageBuildError as exc:
            raise BackendError(str(exc)) from None

    # --- one container ------------------------------------------------------------
    async def create(self, spec: ContainerSpec) -> Container:
        network = await self._shard_with_room()
        ip = self._free_ips[network.shard].pop()
        container = Container(id="", address=ip, name=spec.name or "", backend_state=_Docker(network=network))
        state: _Docker = container.backend_state
        code_dir, io_dir = spec.code_dir, None
        try:
            if spec.code_later:
                state.task_dir = self.work_dir / uuid.uuid4().hex[:12]
                state.task_dir.mkdir(parents=True)
                code_dir = state.task_dir
            if spec.output_channel:
                try:
                    fifo_dir = self.work_dir / (uuid.uuid4().hex[:12] + "-io")
                    state.fifo = OutputFifo(fifo_dir, container.output)
                    io_dir = fifo_dir
                    container.output_path = f"{OUTPUT_CHANNEL_DIR}/{OutputFifo.NAME}"
                except OSError as exc:          # no FIFOs here: output goes through Docker
                    log.debug("no output FIFO for %s: %s", spec.name, exc)
            labels = {**self.labels, **{LABEL_PREFIX + k: v for k, v in spec.labels.items()}}
            engine_spec = EngineSpec(image=spec.image, command=spec.command, env=spec.env, labels=labels, ip=ip,
                                     memory_mb=spec.memory_mb, cpus=spec.cpus, tmp_mb=spec.tmp_mb,
                                     code_dir=code_dir, name=spec.name, io_dir=io_dir, opt_dir=spec.opt_dir)
            container.id = await self.engine.run(self.engine.create_container, engine_spec, network)
            self._containers[container.id] = container
            sock = await self.engine.run(self.engine.attach_output, container.id)
            state.reader = asyncio.create_task(read_container_output(sock, container.output))
        except BaseException:
            await self._release(container)
            raise
        return container

    async def start(self, container: Container) -> None:
        state: _Docker = container.backend_state
        container.pid = await self.engine.run(self.engine.start, container.id)
        try:
            state.cgroups = ContainerCgroups.of_pid(container.pid)
            state.freezer = Freezer.of(state.cgroups)
            # Init Duration counts from the runtime's exec, not from Docker's
            # container set-up (as in Lambda, where INIT excludes provisioning).
            container.process_started_at = _monotonic_start_of(container.pid)
        except (OSError, psutil.Error):
            state.cgroups = None      # already gone; its exit event follows

    async def listen_inside(self, container: Container, port: int):
        sock = await self.netns.listen(container.pid, LOOPBACK_ADDRESS, port)
        if sock is None and not self.netns.available:
            self._warn_once("netns", "sandboxes reach the Runtime API through the bridge gateway, not their own "
                            f"loopback ({self.netns.reason}); about 0.1 ms slower per invocation")
        return sock

    async def place_code(self, container: Container, code_dir: Path) -> None:
        state: _Docker = container.backend_state
        if state.task_dir is None:
            raise BackendError(f"container {container.name} was not created to take code later")
        # A big code tree takes a while: not on the loop.
        await asyncio.get_running_loop().run_in_executor(None, link_tree, code_dir, state.task_dir)

    async def rename(self, container: Container, name: str) -> None:
        container.name = name
        await self.engine.run(self.engine.rename, container.id, name)

    # --- freezing -----------------------------------------------------------------
    def freeze(self, container: Container) -> bool:
        state: _Docker = container.backend_state
        if state.freezer is not None:
            state.freezer.freeze()
            return True
        if state.exited:
            return True                             # nothing left to run: its exit event follows
        self._warn_once("freezer", "no freezer cgroup reachable for sandboxes; freezing with the Engine's "
                        "pause/unpause instead (about 9 ms each way instead of 0.13 ms)")
        state.paused = True
        self._track(self.engine.run(self.engine.pause, container.id))
        return True

    async def thaw(self, container: Container) -> None:
        state: _Docker = container.backend_state
        if state.freezer is not None:
            state.freezer.thaw()
        elif state.paused:
            state.paused = False
            await self.engine.run(self.engine.unpause, container.id)

    # --- accounting ---------------------------------------------------------------
    def memory_peak_bytes(self, container: Container) -> int | None:
        groups = container.backend_state.cgroups
        return groups.memory_peak_bytes() if groups is not None else None

    def memory_now_bytes(self, container: Container) -> int | None:
        groups = container.backend_state.cgroups
        return groups.memory_now_bytes() if groups is not None else None

    def set_cpus(self, container: Container, cpus: float) -> None:
        quota_us = max(MIN_CFS_QUOTA_US, int(cpus * CFS_PERIOD_US))
        groups = container.backend_state.cgroups
        if groups is not None and set_cpu_quota(groups, quota_us, CFS_PERIOD_US):
            return
        # No cgroup we can write: the engine's update, off the loop (slower, same effect).
        self._warn_once("cpu-quota", "cannot write sandboxes' CPU quota in their cgroup; changing it through "
                        "the Docker engine instead")
        self._track(self.engine.run(self.engine.set_cpu_quota, container.id, quota_us))

    def cpu_seconds(self, container: Container) -> float | None:
        groups = container.backend_state.cgroups
        return cpu_seconds(groups) if groups is not None else None

    # --- ends ---------------------------------------------------------------------
    def watch_exits(self, on_exit: Callable[[str, ExitInfo], None]) -> None:
        def exited(container_id: str, exit_code: int, oom: bool) -> None:
            container = self._containers.get(container_id)
            if container is not None:               # its cgroup is going away: stop reading it
                container.backend_state.exited = True
                self._close_cgroups(container.backend_state)
            if exit_code == SIGKILL_EXIT_CODE and not oom:
                # SIGKILL: the Engine knows whether the kernel's OOM killer sent it.
                self._track(self._exit_after_asking_engine(container_id, exit_code, on_exit))
                return
            on_exit(container_id, ExitInfo(exit_code, oom))
        self.engine.watch_exits(asyncio.get_running_loop(), exited)

    async def _exit_after_asking_engine(self, container_id: str, exit_code: int,
                                        on_exit: Callable[[str, ExitInfo], None]) -> None:
        info = await self.engine.run(self.engine.exit_info, container_id)
        on_exit(container_id, ExitInfo(exit_code, bool(info and info.oom_killed)))

    async def exec(self, container: Container, argv: list[str], env: dict[str, str],
                   on_output: Callable[[bytes], None], on_exit: Callable[[int], None]) -> None:
        # One thread per process for as long as it runs (an extension lives as
        # long as its sandbox): the engine's pool of threads is for short calls.
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()

        def deliver(data: bytes) -> None:
            loop.call_soon_threadsafe(on_output, data)

        def run() -> None:
            loop.call_soon_threadsafe(_settle, started, None)
            try:
                code = self.engine.exec_streaming(container.id, argv, env, deliver)
            except BackendError as exc:
                log.warning("%s", exc)
                code = -1
            loop.call_soon_threadsafe(on_exit, code)

        threading.Thread(target=run, name=f"exec-{argv[0].rsplit('/', 1)[-1]}", daemon=True).start()
        await started

    async def list_files(self, container: Container, path: str) -> list[str]:
        return await self.engine.run(self.engine.list_files, container.id, path)

    async def signal(self, container: Container, signal_name: str) -> None:
        await self.engine.run(self.engine.kill, container.id, signal_name)

    async def end(self, container: Container) -> ExitInfo | None:
        state: _Docker = container.backend_state
        if state.ended:
            return None
        state.ended = True
        info = None
        try:
            if container.id:
                await self.thaw(container)        # a frozen process cannot die
                info = await self.engine.end(container.id, state.network.name if state.network else "")
        finally:
            await self._release(container)
        return info

    async def _release(self, container: Container) -> None:
        state: _Docker = container.backend_state
        if state.reader is not None:
            state.reader.cancel()
        if state.fifo is not None:
            state.fifo.close()                    # what is still in the pipe reaches the log first
            shutil.rmtree(state.fifo.directory, ignore_errors=True)
        self._close_cgroups(state)
        self._containers.pop(container.id, None)
        if state.network is not None:                 # reuse addresses last: late packets hit nobody
            self._free_ips[state.network.shard].insert(0, container.address)
        if state.task_dir is not None:            # a big code tree takes a while: not on the loop
            await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(shutil.rmtree, state.task_dir, ignore_errors=True))

    @staticmethod
    def _close_cgroups(state: _Docker) -> None:
        if state.freezer is not None:
            state.freezer.close()
        if state.cgroups is not None:
            state.cgroups.close()
        state.freezer = state.cgroups = None


def _settle(future: asyncio.Future, value) -> None:
    if not future.done():
        future.set_result(value)
