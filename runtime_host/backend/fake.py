"""An in-memory container backend, for unit tests of everything above it.

A "container" here is an asyncio task running a *program*: an async
function the test gives (`FakeBackend(program=...)`), usually a small
runtime that talks to the host's real Runtime API over real loopback HTTP.
Each container gets its own address (127.0.N.M: all of 127/8 is loopback on
Linux), so the Runtime API tells containers apart by the caller's address
exactly as it does on the Docker network; with `loopback_listener=True` it
also gets a listener of its own, as the Docker backend's netns listener.

Owns: pretending to be a container engine, faithfully enough for the
scheduler: creation before start, an exit event when a program returns,
raises or is killed, SIGTERM delivered to the program, frozen flags, a
settable memory peak, and a record of every call for tests to assert on.
Must not: import a container engine, or sleep: nothing here takes wall time.
"""
from __future__ import annotations

import asyncio
import itertools
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

from runtime_host.backend.interface import BackendError, Container, ContainerSpec, ExitInfo

KILLED = 128 + 9
TERMINATED = 128 + 15
GATEWAY = "127.0.0.1"


@dataclass(eq=False)
class FakeProcess:
    """What a program sees of its container."""
    container: Container
    spec: ContainerSpec
    env: dict[str, str]
    sigterm: asyncio.Event = field(default_factory=asyncio.Event)
    code_dir: Path | None = None             # /var/task, once there
    opt_dir: Path | None = None              # /opt, once there

    @property
    def runtime_api(self) -> str:
        return self.env.get("AWS_LAMBDA_RUNTIME_API", "")

    def output(self, data: bytes) -> None:
        """As if it printed."""
        self.container.output(data)


Program = Callable[[FakeProcess], Awaitable[int]]


@dataclass(eq=False)
class _Fake:
    spec: ContainerSpec
    process: FakeProcess | None = None
    task: asyncio.Task | None = None
    frozen: bool = False
    cpus: float | None = None            # the quota set since creation (set_cpus), if any
    memory_peak_bytes: int | None = 11 * 2**20
    exit_info: ExitInfo | None = None
    ended: bool = False
    listener: socket.socket | None = None
    execs: list[asyncio.Task] = field(default_factory=list)


class FakeBackend:
    name = "fake"

    def __init__(self, program: Program | None = None, *, loopback_listener: bool = False,
                 fail_create: str | None = None):
        self.program = program or idle_program
        self.loopback_listener = loopback_listener
        self.fail_create = fail_create           # a BackendError message for every create, when set
        self.containers: list[Container] = []
        self.calls: list[tuple[str, str]] = []   # (method, container name), in order
        self._on_exit: Callable[[str, ExitInfo], None] | None = None
        self._addresses = (f"127.0.{n // 250 + 1}.{n % 250 + 2}" for n in itertools.count())
        self._ids = itertools.count(1)
        self.opened = self.closed = False
        # What `exec` runs, by path (argv[0]): tests put fake extensions here.
        self.exec_programs: dict[str, Program] = {}
        self.image_files: dict[tuple[str, str], list[str]] = {}   # (image, folder) -> its files, for list_files

    # --- the host's lifetime ---------------------------------------------------
    @property
    def runtime_api_address(self) -> str:
        return GATEWAY

    async def open(self) -> None:
        self.opened = True

    async def close(self) -> None:
        for c in list(self.containers):
            await self.end(c)
        self.closed = True

    async def ensure_image(self, image_name: str, progress=None) -> str:
        return f"fake/{image_name}:latest"

    # --- one container -----------------------------------------------------------
    async def create(self, spec: ContainerSpec) -> Container:
        if self.fail_create:
            raise BackendError(self.fail_create)
        container = Container(id=f"fake{next(self._ids):06d}", address=next(self._addresses), name=spec.name or "",
                              backend_state=_Fake(spec))
        if spec.output_channel:
            container.output_path = "/var/runtime-host/out"
        self.containers.append(container)
        self.calls.append(("create", container.name))
        return container

    async def start(self, container: Container) -> None:
        state: _Fake = container.backend_state
        self.calls.append(("start", container.name))
        container.pid = 10_000 + int(container.id[4:])
        container.process_started_at = time.monotonic()
        state.process = FakeProcess(container, state.spec, dict(state.spec.env),
                                    code_dir=state.spec.code_dir, opt_dir=state.spec.opt_dir)
        state.task = asyncio.create_task(self._run(container))

    async def _run(self, container: Container) -> None:
        state: _Fake = container.backend_state
        try:
            code = await self.program(state.process)
        except asyncio.CancelledError:
            code = KILLED
        except Exception:
            code = 1
        self._exited(container, ExitInfo(int(code), False))

    def _exited(self, container: Container, info: ExitInfo) -> None:
        state: _Fake = container.backend_state
        if state.exit_info is not None:
            return
        state.exit_info = info
        if self._on_exit is not None:
            asyncio.get_running_loop().call_soon(self._on_exit, container.id, info)

    async def exec(self, container: Container, argv: list[str], env: dict[str, str],
                   on_output: Callable[[bytes], None], on_exit: Callable[[int], None]) -> None:
        state: _Fake = container.backend_state
        self.calls.append(("exec " + argv[0], container.name))
        program = self.exec_programs.get(argv[0])
        if program is None:
            raise BackendError(f"fake: nothing to run at {argv[0]}")
        process = FakeProcess(container, state.spec, dict(env), code_dir=state.spec.code_dir,
                              opt_dir=state.spec.opt_dir)

        async def run() -> None:
            try:
                code = await program(process)
            except asyncio.CancelledError:
                code = KILLED
            except Exception:
                code = 1
            on_exit(int(code))

        state.execs.append(asyncio.create_task(run()))

    async def listen_inside(self, container: Container, port: int):
        if not self.loopback_listener:
            return None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((GATEWAY, 0))
        sock.listen(64)
        sock.setblocking(False)
        container.backend_state.listener = sock
        return sock

    def listener_address(self, container: Container) -> str | None:
        """host:port of its own listener, for a fake program to call instead of 127.0.0.1:9001."""
        sock = container.backend_state.listener
        return None if sock is None else "%s:%d" % sock.getsockname()

    async def place_code(self, container: Container, code_dir: Path) -> None:
        self.calls.append(("place_code", container.name))
        container.backend_state.process.code_dir = code_dir

    async def rename(self, container: Container, name: str) -> None:
        container.name = name

    # --- freezing and accounting ----------------------------------------------------
    def freeze(self, container: Container) -> bool:
        self.calls.append(("freeze", container.name))
        container.backend_state.frozen = True
        return True

    async def thaw(self, container: Container) -> None:
        self.calls.append(("thaw", container.name))
        container.backend_state.frozen = False

    def is_frozen(self, container: Container) -> bool:
        return container.backend_state.frozen

    def memory_peak_bytes(self, container: Container) -> int | None:
        """As a cgroup's: gone with the container's exit."""
        state: _Fake = container.backend_state
        return None if state.exit_info is not None else state.memory_peak_bytes

    def set_memory_peak(self, container: Container, peak_bytes: int) -> None:
        container.backend_state.memory_peak_bytes = peak_bytes

    def memory_now_bytes(self, container: Container) -> int | None:
        return container.backend_state.memory_peak_bytes

    def cpu_seconds(self, container: Container) -> float | None:
        return 0.0

    # --- ends --------------------------------------------------------------------------
    def watch_exits(self, on_exit: Callable[[str, ExitInfo], None]) -> None:
        self._on_exit = on_exit

    def kill(self, container: Container, exit_code: int = KILLED, oom: bool = False) -> None:
        """As if the container died now (a crash, `docker kill`, the OOM killer)."""
        state: _Fake = container.backend_state
        if state.task is not None and not state.task.done():
            state.task.cancel()
        for task in state.execs:                 # its other processes die with it
            task.cancel()
        self._exited(container, ExitInfo(exit_code, oom))

    async def confine(self, runtime_api_port: int) -> None:
        self.confined_to = runtime_api_port       # nothing to enforce: fake containers share the host's loopback

    def set_cpus(self, container: Container, cpus: float) -> None:
        state: _Fake = container.backend_state
        self.calls.append((f"set_cpus {cpus:g}", container.name))
        state.cpus = cpus

    async def list_files(self, container: Container, path: str) -> list[str]:
        state: _Fake = container.backend_state
        self.calls.append(("list_files " + path, container.name))
        return sorted(self.image_files.get((state.spec.image, path), []))

    async def signal(self, container: Container, signal_name: str) -> None:
        self.calls.append((signal_name, container.name))
        state: _Fake = container.backend_state
        if signal_name == "SIGKILL":
            self.kill(container)
        elif signal_name == "SIGTERM" and state.process is not None:
            state.process.sigterm.set()

    async def end(self, container: Container) -> ExitInfo | None:
        state: _Fake = container.backend_state
        if state.ended:
            return None
        state.ended = True
        self.calls.append(("end", container.name))
        state.frozen = False
        self.kill(container)
        if state.task is not None:
            await asyncio.gather(state.task, return_exceptions=True)
        if container in self.containers:
            self.containers.remove(container)
        return state.exit_info


async def idle_program(process: FakeProcess) -> int:
    """A container whose program never calls anything; ends on SIGTERM."""
    await process.sigterm.wait()
    return 0
