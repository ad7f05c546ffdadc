"""Containers and networks through the Docker SDK: the only code that does.

Owns: creating, starting, attaching to, killing and removing sandbox
containers; the host's private bridge network; the stream of container exit
events; finding what an earlier host left behind (by labels).
Must not: know about invocations or pools. Everything here is blocking (the
SDK is); `run` puts a call on this backend's own thread pool so the event
loop never waits on Docker.
"""
from __future__ import annotations

import asyncio
import io
import ipaddress
import logging
import socket
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import docker
import docker.errors
import psutil
import requests.exceptions

from runtime_host.backend.interface import OUTPUT_CHANNEL_DIR, BackendError

log = logging.getLogger("runtime_host.backend")

LABEL_PREFIX = "runtime-host."
LABEL_HOST = LABEL_PREFIX + "host"                  # the host's id (one per host process)
LABEL_HOST_PID = LABEL_PREFIX + "host-pid"
LABEL_HOST_STARTED = LABEL_PREFIX + "host-started"  # the host process's create time: pid reuse guard

# Lambda's sandbox user (sbx_user1051); the images create it.
SANDBOX_USER = "993:990"
PIDS_LIMIT = 1024            # spec §4.2: processes/threads
NOFILE_LIMIT = 1024          # spec §4.2: file descriptors
DEV_SHM_BYTES = 4096         # a read-only /dev/shm of one page (writes fail with EROFS)
DOCKER_THREADS = 32          # parallel Docker calls (a burst of cold starts)
END_WAIT_S = 10              # how long end() waits for a SIGKILLed container to stop
END_PAUSE_S = 0.005          # between two ends on one network (see end())
EVENTS_RESUBSCRIBE_S = 0.5   # after the event stream breaks, before subscribing again
CFS_PERIOD_US = 100_000
MIN_CFS_QUOTA_US = 1_000     # the kernel's floor
SUBNET_CANDIDATES = [f"172.{b}.{c}.0/20" for b in (28, 29, 30) for c in range(0, 256, 16)]
# A host's /20 is cut into networks of this size (shards, made as sandboxes need them: 64 of 30
# sandboxes each). Containers on one network end one at a time (end()); on different networks,
# side by side.
SHARD_PREFIX = 26
LABEL_SHARD = LABEL_PREFIX + "shard"


@dataclass(frozen=True)
class NetworkInfo:
    name: str
    id: str
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    block: ipaddress.IPv4Network | None = None     # the host's /20, which holds every shard
    shard: int = 0




@dataclass(frozen=True)
class EngineSpec:
    """A container as the Engine is asked for it (the interface's ContainerSpec, placed)."""
    image: str
    command: list[str] | None          # None: the image's own CMD
    env: dict[str, str]
    labels: dict[str, str]
    ip: str
    memory_mb: int
    cpus: float                        # CFS quota, in CPUs
    tmp_mb: int
    code_dir: Path | None              # mounted read-only at /var/task; None for image functions
    name: str | None = None
    entrypoint: list[str] | None = None
    io_dir: Path | None = None         # mounted read-only at /var/runtime-host (the output FIFO)
    opt_dir: Path | None = None        # mounted read-only at /opt (layers)


@dataclass(frozen=True)
class ExitInfo:
    exit_code: int
    oom_killed: bool


def host_labels(host_id: str) -> dict[str, str]:
    me = psutil.Process()
    return {LABEL_HOST: host_id, LABEL_HOST_PID: str(me.pid), LABEL_HOST_STARTED: f"{me.create_time():.3f}"}


def _host_is_alive(labels: dict[str, str]) -> bool:
    try:
        proc = psutil.Process(int(labels.get(LABEL_HOST_PID, "0")))
        return f"{proc.create_time():.3f}" == labels.get(LABEL_HOST_STARTED)
    except (psutil.Error, ValueError):
        return False


class _Chunks(io.RawIOBase):
    """An iterator of byte chunks (the engine's streamed archive) as a file
    tarfile can read from, holding one chunk at a time."""

    def __init__(self, chunks):
        self._chunks, self._held = iter(chunks), b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._held:
            self._held = next(self._chunks, None)
            if self._held is None:
                self._held = b""
                return 0
        n = min(len(buffer), len(self._held))
        buffer[:n], self._held = self._held[:n], self._held[n:]
        return n


class _Overlap(Exception):
    """The engine refused a subnet: another network has it."""


class DockerEngine:
    """docker-py's low-level client, in the calls the Docker backend makes (blocking: run them with `run`)."""

    def __init__(self, host_id: str):
        self.host_id = host_id
        try:
            self.client = docker.from_env(max_pool_size=DOCKER_THREADS)
            self.client.ping()
        except docker.errors.DockerException as exc:
            raise BackendError(f"cannot reach the Docker engine ({exc}); run scripts/ensure-docker "
                               "(or 'make docker') to start one") from None
        self.api = self.client.api
        self._pool = ThreadPoolExecutor(max_workers=DOCKER_THREADS, thread_name_prefix="docker")
        self._events = None
        self._events_thread: threading.Thread | None = None
        self._closing = False
        self._ending: dict[str, asyncio.Lock] = {}   # one per network: see end()

    async def run(self, fn: Callable, *args):
        """fn(*args) on this engine's threads. An engine that does not answer
        (stopped, restarting) is a BackendError naming it, never a bare
        ConnectionError: callers hold no sandbox for a call that failed."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except requests.exceptions.RequestException as exc:
            raise BackendError(f"the Docker engine did not answer ({type(exc).__name__}: {exc}); is dockerd "
                               "running? scripts/ensure-docker starts it") from None

    def close(self) -> None:
        self._closing = True
        if self._events is not None:
            self._events.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    # --- network ------------------------------------------------------------
    def create_network(self, labels: dict[str, str]) -> NetworkInfo:
        """A bridge network of this host's own (shard 0), with a subnet we
        choose so that sandboxes get addresses we know before they start (the
        Runtime API tells sandboxes apart by their address). Inter-container
        traffic off. Its subnet is the first /26 of a free /20 (`block`),
        whose other /26s are this host's further shards (create_shard)."""
        taken = []
        for net in self.api.networks():
            for cfg in (net.get("IPAM") or {}).get("Config") or []:
                if cfg.get("Subnet") and ":" not in cfg["Subnet"]:
                    taken.append(ipaddress.ip_network(cfg["Subnet"], strict=False))
        for addrs in psutil.net_if_addrs().values():
            for a in addrs:
                if a.family == socket.AF_INET:
                    taken.append(ipaddress.ip_network(f"{a.address}/32"))
        name = f"runtime-host-{self.host_id[:12]}"
        for candidate in SUBNET_CANDIDATES:
            subnet = ipaddress.ip_network(candidate)
            if any(subnet.overlaps(t) for t in taken):
                continue
            try:
                return self._create_bridge(name, subnet, next(subnet.subnets(new_prefix=SHARD_PREFIX)), 0, labels)
            except _Overlap:
                continue
        raise BackendError("no free /20 subnet in 172.28-30.x.x for the sandbox network; remove unused "
                           "Docker networks ('docker network prune')")

    def create_shard(self, primary: NetworkInfo, index: int, labels: dict[str, str]) -> NetworkInfo:
        """Shard `index` of the host's /20: a network like the first. Its
        sandboxes reach the Runtime API at the first network's gateway all
        the same: an address of the host's own, delivered locally (no
        forwarding between bridges, which Docker's isolation rules drop)."""
        subnet = list(primary.block.subnets(new_prefix=SHARD_PREFIX))[index]
        try:
            return self._create_bridge(f"{primary.name}-{index}", primary.block, subnet, index, labels)
        except _Overlap:
            raise BackendError(f"cannot create network {primary.name}-{index}: {subnet} is taken") from None

    def _create_bridge(self, name: str, block: ipaddress.IPv4Network, subnet: ipaddress.IPv4Network, index: int,
                       labels: dict[str, str]) -> NetworkInfo:
        gateway = next(subnet.hosts())
        # Docker hands out addresses only from the lower half (containers a
        # user attaches by hand); the host gives sandboxes the upper half.
        lower_half = next(subnet.subnets(prefixlen_diff=1))
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
            subnet=str(subnet), gateway=str(gateway), iprange=str(lower_half))])
        try:
            net = self.api.create_network(name, driver="bridge", ipam=ipam, labels={**labels, LABEL_SHARD: str(index)},
                                          options={"com.docker.network.bridge.enable_icc": "false"})
        except docker.errors.APIError as exc:
            if "overlap" in str(exc).lower():
                raise _Overlap() from None
            raise BackendError(f"cannot create network {name}: {exc}") from None
        return NetworkInfo(name=name, id=net["Id"], subnet=subnet, gateway=gateway, block=block, shard=index)

    def remove_network(self, network: NetworkInfo, wait_s: float = 30) -> None:
        """Removes it, waiting up to wait_s while a container whose removal
        began elsewhere (an end cancelled at a stop, its thread still
        running) still holds an endpoint on it."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.api.remove_network(network.id)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                if "active endpoints" not in str(exc) or time.monotonic() > deadline:
                    raise BackendError(f"cannot remove network {network.name}: {exc.explanation or exc}") from None
                time.sleep(0.2)

    # --- containers ---------------------------------------------------------
    def create_container(self, spec: EngineSpec, network: NetworkInfo) -> str:
        mounts = []
        if spec.code_dir is not None:
            mounts.append(docker.types.Mount("/var/task", str(spec.code_dir), type="bind", read_only=True))
        if spec.opt_dir is not None:
            mounts.append(docker.types.Mount("/opt", str(spec.opt_dir), type="bind", read_only=True))
        if spec.io_dir is not None:
            mounts.append(docker.types.Mount(OUTPUT_CHANNEL_DIR, str(spec.io_dir), type="bind", read_only=True))
        # Only /tmp is writable, as on Lambda, which has no /dev/shm: Docker's
        # own (64 MB, writable) is not made when a mount is there already.
        mounts.append(docker.types.Mount("/dev/shm", None, type="tmpfs", read_only=True,
                                         tmpfs_size=DEV_SHM_BYTES))
        host_config = self.api.create_host_config(
            mem_limit=spec.memory_mb * 1024 * 1024,
            memswap_limit=spec.memory_mb * 1024 * 1024,       # equal to mem_limit: no swap
            cpu_period=CFS_PERIOD_US,
            cpu_quota=max(MIN_CFS_QUOTA_US, int(spec.cpus * CFS_PERIOD_US)),
            read_only=True,
            tmpfs={"/tmp": f"size={spec.tmp_mb}m,mode=1777,exec"},
            mounts=mounts,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=PIDS_LIMIT,
            ulimits=[docker.types.Ulimit(name="nofile", soft=NOFILE_LIMIT, hard=NOFILE_LIMIT)],
            network_mode=network.name,
            # Telemetry API subscribers listen on sandbox.localdomain, as on Lambda (spec §8.2).
            extra_hosts={"sandbox.localdomain": spec.ip} if spec.ip else None,
            # The host reads output through its attach stream and keeps it in its
            # own log files; a Docker log driver would write every line a second
            # time (about 0.1 ms of dockerd CPU per line on our machines).
            log_config=docker.types.LogConfig(type=docker.types.LogConfig.types.NONE),
        )
        networking = self.api.create_networking_config(
            {network.name: self.api.create_endpoint_config(ipv4_address=spec.ip)})
        try:
            created = self.api.create_container(
                image=spec.image, command=spec.command, entrypoint=spec.entrypoint, environment=spec.env,
                labels=spec.labels, user=SANDBOX_USER, working_dir="/var/task", host_config=host_config,
                networking_config=networking, name=spec.name, stdin_open=False, tty=False)
        except docker.errors.ImageNotFound:
            raise BackendError(f"image {spec.image!r} not found; build it ('runtime-host images build') "
                               "or, for runtime = \"image\", build or load your image first") from None
        except docker.errors.APIError as exc:
            raise BackendError(f"cannot create a container from {spec.image!r}: {exc.explanation or exc}") from None
        return created["Id"]

    def attach_output(self, container_id: str) -> socket.socket:
        """A raw socket carrying the container's stdout and stderr (Docker's
        multiplexed frames). Attached before start so no output is missed."""
        sock = self.api.attach_socket(container_id, params={"stdout": 1, "stderr": 1, "stream": 1})
        raw = getattr(sock, "_sock", sock)
        raw.setblocking(False)
        return raw

    def start(self, container_id: str) -> int:
        """Starts the container; returns its init process's pid on the host."""
        self.api.start(container_id)
        return int(self.api.inspect_container(container_id)["State"]["Pid"])

    def kill(self, container_id: str, signal: str = "SIGKILL") -> None:
        try:
            self.api.kill(container_id, signal=signal)
        except docker.errors.APIError:
            pass   # already stopped or gone: what we wanted

    def exec_streaming(self, container_id: str, argv: list[str], env: dict[str, str],
                       on_output: Callable[[bytes], None]) -> int:
        """Runs argv inside the container (as its user, beside its first
        process) and passes its output on as it comes; blocks until the
        process ends and returns its exit status. For a thread of its own."""
        try:
            exec_id = self.api.exec_create(container_id, argv, environment=env, user=SANDBOX_USER,
                                           workdir="/opt", stdout=True, stderr=True)["Id"]
            for chunk in self.api.exec_start(exec_id, stream=True):
                on_output(chunk)
            return int(self.api.exec_inspect(exec_id).get("ExitCode") or 0)
        except docker.errors.APIError as exc:
            raise BackendError(f"cannot run {argv[0]} in container {container_id[:12]}: "
                               f"{exc.explanation or exc}") from None
        except (requests.exceptions.ConnectionError, OSError) as exc:
            raise BackendError(f"lost the Docker engine while running {argv[0]}: {exc}") from None

    def list_files(self, container_id: str, path: str) -> list[str]:
        """The names of the non-directory entries directly in `path` of a
        container's file system (created or running), sorted; [] if there
        is no such folder. Read through the engine's archive call, which
        carries the files' contents too: call it once per image, not per
        sandbox."""
        try:
            stream, _ = self.api.get_archive(container_id, path)
        except docker.errors.NotFound:
            return []
        except docker.errors.APIError as exc:
            raise BackendError(f"cannot read {path} in container {container_id[:12]}: {exc.explanation or exc}") from None
        names = []
        with tarfile.open(fileobj=_Chunks(stream), mode="r|") as tar:   # streamed: contents are skipped, not kept
            for member in tar:
                parts = member.name.split("/")
                if len(parts) == 2 and parts[1] and not member.isdir():
                    names.append(parts[1])
        return sorted(names)

    def set_cpu_quota(self, container_id: str, quota_us: int) -> None:
        try:
            self.api.update_container(container_id, cpu_quota=quota_us, cpu_period=CFS_PERIOD_US)
        except docker.errors.APIError as exc:
            log.warning("could not set the CPU quota of container %s: %s", container_id[:12], exc.explanation or exc)

    def rename(self, container_id: str, name: str) -> None:
        try:
            self.api.rename(container_id, name)
        except docker.errors.APIError:
            pass   # a name is a convenience for `docker ps`; never worth failing over

    def pause(self, container_id: str) -> None:
        """The Engine's freeze: only where the freezer cgroup cannot be reached."""
        self.api.pause(container_id)

    def unpause(self, container_id: str) -> None:
        try:
            self.api.unpause(container_id)
        except docker.errors.APIError:
            pass   # not paused, or gone

    async def end(self, container_id: str, network: str = "") -> ExitInfo | None:
        """SIGKILL and wait until it has stopped, one container of a network
        at a time; then read how it ended and remove it. Docker 20.10's libnetwork
        (Debian's docker.io 20.10.24 here) can deadlock when one container's
        endpoint leaves its network (getSvcRecords: the network's lock, then
        the controller's) while the controller handles another's endpoint
        delete (the controller's, then the network's): moby/libnetwork#2679,
        fixed after 20.10.24. dockerd then never again answers a call that
        touches a network, `docker info` included, until it is restarted.
        Seen here once (2026-12-01), as a host stopped with 10 sandboxes
        ending at once. Both locks are of one network (getSvcRecords takes
        the leaving endpoint's network; processEndpointDelete, the deleted
        endpoint's): ends on different networks cannot close that circle, so
        a lock per network, and the host spreads its sandboxes over networks
        (create_shard). An asyncio lock, not a thread lock: containers
        waiting their turn must not hold the executor's threads that cold
        starts need."""
        async with self._ending.setdefault(network, asyncio.Lock()):
            await self.run(self._stop_now, container_id)
        # Stopped, its network released: removing it touches no network, so
        # removals run side by side.
        info = await self.run(self.exit_info, container_id)
        await self.run(self.remove, container_id)
        return info

    def _stop_now(self, container_id: str) -> None:
        self.kill(container_id)
        try:
            # Docker marks it stopped once its exit is handled, network released.
            self.api.wait(container_id, timeout=END_WAIT_S, condition="not-running")
        except Exception:        # gone already, or not stopped in time: remove(force) still ends it
            pass
        # libnetwork's watch loop handles the endpoint delete just after:
        # give it that moment before the next container's exit.
        time.sleep(END_PAUSE_S)

    def remove(self, container_id: str) -> None:
        try:
            self.api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise

    def exit_info(self, container_id: str) -> ExitInfo | None:
        try:
            state = self.api.inspect_container(container_id)["State"]
        except docker.errors.NotFound:
            return None
        return ExitInfo(exit_code=int(state.get("ExitCode", -1)), oom_killed=bool(state.get("OOMKilled")))

    def our_containers(self) -> list[dict]:
        return self.api.containers(all=True, filters={"label": f"{LABEL_HOST}={self.host_id}"})

    @staticmethod
    def network_of(listed: dict) -> str:
        """The network a container of our_containers() is on ("" if none)."""
        return next(iter(((listed.get("NetworkSettings") or {}).get("Networks") or {})), "")

    # --- exits --------------------------------------------------------------
    def watch_exits(self, loop: asyncio.AbstractEventLoop,
                    on_exit: Callable[[str, int, bool], None]) -> None:
        """Calls on_exit(container_id, exit_code, oom) on the loop when one of
        this host's containers dies. One thread for all containers, fed by the
        Engine's event stream, so an exit is seen within milliseconds. When
        the stream breaks (dockerd restarted) it subscribes again, from the
        second of the last event it saw, until close(): exits during the gap
        are delivered then (an exit heard twice is harmless: a dead sandbox
        ignores the second)."""
        filters = {"type": "container", "event": ["die", "oom"], "label": f"{LABEL_HOST}={self.host_id}"}
        oom: set[str] = set()

        def pump() -> None:
            since = None
            while not self._closing:
                try:
                    self._events = self.api.events(decode=True, filters=filters, since=since)
                    for ev in self._events:
                        since = ev.get("time", since)
                        cid = ev.get("id") or ev.get("Actor", {}).get("ID", "")
                        if ev.get("status") == "oom" or ev.get("Action") == "oom":
                            oom.add(cid)
                            continue
                        code = int(ev.get("Actor", {}).get("Attributes", {}).get("exitCode", -1))
                        if loop.is_closed():
                            return
                        loop.call_soon_threadsafe(on_exit, cid, code, cid in oom)
                        oom.discard(cid)
                except Exception as exc:          # the engine went away, or close() ended the stream
                    if self._closing or loop.is_closed():
                        return
                    log.warning("the Docker engine's event stream broke (%s); subscribing again", exc)
                if since is None:
                    since = int(time.time())
                time.sleep(EVENTS_RESUBSCRIBE_S)

        self._events_thread = threading.Thread(target=pump, name="docker-events", daemon=True)
        self._events_thread.start()

    # --- leftovers ----------------------------------------------------------
    def remove_orphans(self) -> int:
        """Removes containers and networks of hosts that are no longer running
        (a host killed with -9 cannot clean up after itself)."""
        removed = 0
        for c in self.api.containers(all=True, filters={"label": LABEL_HOST}):
            if not _host_is_alive(c.get("Labels") or {}):
                self.remove(c["Id"])
                removed += 1
        for net in self.api.networks(filters={"label": LABEL_HOST}):
            if not _host_is_alive(net.get("Labels") or {}):
                try:
                    self.api.remove_network(net["Id"])
                except docker.errors.APIError as exc:
                    log.warning("could not remove leftover network %s: %s", net.get("Name"), exc)
        return removed

    def live_host_ids(self) -> set[str]:
        """The ids of running hosts with a container or a network on this engine."""
        labelled = [*self.api.containers(all=True, filters={"label": LABEL_HOST}),
                    *self.api.networks(filters={"label": LABEL_HOST})]
        return {labels[LABEL_HOST] for labels in (x.get("Labels") or {} for x in labelled)
                if labels.get(LABEL_HOST) and _host_is_alive(labels)}
