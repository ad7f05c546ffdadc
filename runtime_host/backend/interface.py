"""The container backend interface: what the scheduler needs from wherever
sandboxes run, and nothing about how.

Owns: the shapes that cross the line (ContainerSpec, Container, ExitInfo),
the `ContainerBackend` protocol every backend implements (`docker/` is the
real one, `fake.py` the one unit tests use), and BackendError.
Must not: import a container engine, or know about functions, invocations
or pools beyond what a ContainerSpec says.

The contract, in the order a sandbox meets it:
- `open()` once: the engine is reachable, what an earlier host left behind is
  removed, the host's network exists. After it, `runtime_api_address` is the
  address (host part) on which the host must serve the Runtime API for
  containers that have no listener of their own.
- `ensure_image(name)` gives the reference of one of our runtime images.
- `create(spec)` makes a container that has not started yet, with the
  address its calls will come from (`Container.address`): the host learns
  who calls before the first call can arrive. Its output reaches
  `Container.on_output` from the first byte.
- `start(c)` starts it; afterwards `c.pid` and `c.process_started_at` are set.
- `listen_inside(c, port)`: a listening socket on the container's own
  loopback, for its Runtime API; None where the backend cannot (the
  container then calls `runtime_api_address`).
- `place_code(c, code_dir)`: the function's code appears at /var/task of
  a container created with `ContainerSpec.code_later` (a stem cell). Its
  layers are not placed late: a stem cell is made for one set of layers
  (`ContainerSpec.opt_dir`), so a cold start links only the code.
- `freeze(c)` / `thaw(c)`: no CPU at all between invocations, where the
  backend can; `freeze` never waits (a slow pause is started, and `thaw`
  waits for it) and returns False where it cannot freeze at all: the
  sandbox then stays READY, thawed.
- `memory_peak_bytes`, `memory_now_bytes`, `cpu_seconds`: its accounting.
- `watch_exits(on_exit)`: `on_exit(container_id, ExitInfo)` on the event
  loop, as soon as the backend learns of a container ending for any reason
  (Docker: within milliseconds), OOM kills told apart where it can.
- `exec(c, argv, env, on_output, on_exit)`: another process in a running
  container (an external extension), as its user; its output reaches
  `on_output`, its exit status `on_exit` (on the loop). It ends with the
  container.
- `signal(c, name)`, then `end(c)`: stopped for good, removed, its address
  and channels released; ExitInfo of how it ended (None if already gone).
- `close()` once: every container of this host ended, the network removed.

All methods are called on the event loop and never block it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

# Keys of ContainerSpec.labels (a backend stores them where it can find them
# again, e.g. as Docker labels, so a restarted host removes what it left).
LABEL_FUNCTION = "function"
LABEL_VERSION = "version"
LABEL_SANDBOX = "sandbox"
LABEL_STEM = "stem"

# Where, inside a container, the output channel of `ContainerSpec.output_channel` is.
OUTPUT_CHANNEL_DIR = "/var/runtime-host"


class BackendError(RuntimeError):
    """The backend refused something; the message says what and what to do."""


@dataclass(frozen=True)
class ContainerSpec:
    image: str
    command: list[str] | None          # None: the image's own CMD
    env: dict[str, str]
    labels: dict[str, str]             # LABEL_* keys
    memory_mb: int                     # hard limit, no swap
    cpus: float                        # CPU quota, in CPUs
    tmp_mb: int                        # the writable /tmp
    code_dir: Path | None              # shown read-only at /var/task; None: nothing there (image functions)
    opt_dir: Path | None = None        # shown read-only at /opt: the function's layers, put together
    name: str | None = None            # for people reading the engine's own listing
    code_later: bool = False           # /var/task empty until place_code (stem cells)
    output_channel: bool = False       # offer a FIFO the runtime may write its output into (Container.output_path)


def _drop(data: bytes) -> None:
    return None


@dataclass(eq=False)
class Container:
    """One container, as a backend hands it to the scheduler. The backend
    fills the fields; `backend_state` is the backend's own."""
    id: str
    address: str                          # where its calls come from, on the host's network
    name: str = ""
    pid: int | None = None                # its first process, as the host's kernel numbers it (after start)
    process_started_at: float | None = None   # time.monotonic() of that process's exec (after start)
    output_path: str | None = None        # inside: a FIFO for stdout/stderr, when output_channel was asked
    on_output: Callable[[bytes], None] = _drop   # where its output goes; the owner may re-point it
    backend_state: object = field(default=None, repr=False)

    def output(self, data: bytes) -> None:
        """Backends call this with every piece of output, in order."""
        self.on_output(data)


@dataclass(frozen=True)
class ExitInfo:
    exit_code: int
    oom_killed: bool


class ContainerBackend(Protocol):
    name: str                              # "docker", "fake": for the log and `runtime-host ps`

    @property
    def runtime_api_address(self) -> str:
        """The host address containers reach the host's Runtime API on (after open)."""
        ...

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def confine(self, runtime_api_port: int) -> None: ...   # sandboxes reach the machine at this port only
    async def ensure_image(self, image_name: str, progress: Callable[[str], None] | None = None) -> str: ...
    async def create(self, spec: ContainerSpec) -> Container: ...
    async def start(self, container: Container) -> None: ...
    async def listen_inside(self, container: Container, port: int): ...   # socket.socket | None
    async def place_code(self, container: Container, code_dir: Path) -> None: ...
    def freeze(self, container: Container) -> bool: ...
    async def thaw(self, container: Container) -> None: ...
    def memory_peak_bytes(self, container: Container) -> int | None: ...
    def memory_now_bytes(self, container: Container) -> int | None: ...
    def cpu_seconds(self, container: Container) -> float | None: ...
    def set_cpus(self, container: Container, cpus: float) -> None: ...   # the CPU quota from now on
    def watch_exits(self, on_exit: Callable[[str, ExitInfo], None]) -> None: ...
    async def exec(self, container: Container, argv: list[str], env: dict[str, str],
                   on_output: Callable[[bytes], None], on_exit: Callable[[int], None]) -> None: ...
    async def list_files(self, container: Container, path: str) -> list[str]: ...   # non-directories directly in path, sorted
    async def signal(self, container: Container, signal_name: str) -> None: ...
    async def rename(self, container: Container, name: str) -> None: ...
    async def end(self, container: Container) -> ExitInfo | None: ...
