"""What the scheduler's parts are given at construction: settings and the
services below and beside them, behind small interfaces.

Owns: the names of those interfaces (a ledger to record in, a log writer, a
way to serve the Runtime API on a sandbox's own listener) and the settings
every pool shares, each with its unit.
Must not: hold state of its own beyond the task set (pools and sandboxes do).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Protocol

from runtime_host.backend.interface import ContainerBackend
from runtime_host.scheduler.registry import Registry
from runtime_host.store.ledger import Record

DEFAULT_IDLE_TTL_S = 600           # a warm sandbox idle this long is shut down
DEFAULT_FREEZE_GRACE_S = 0.005     # an idle sandbox is frozen after this long
DEFAULT_DRAIN_TIMEOUT_S = 30.0     # on shutdown, how long in-flight invocations may take to finish
DEFAULT_REGION = "us-east-1"


class Stopping(RuntimeError):
    """The host is shutting down and takes no new invocations."""


class Throttled(Exception):
    """Every sandbox the function may have is busy (TooManyRequestsException)."""


class SandboxStartFailed(Exception):
    """The container could not be created or started (a host-side problem)."""


class StateDiskFull(SandboxStartFailed):
    """The host cannot keep a new invocation's record (its state directory's
    disk is full): refused before it runs. A SandboxStartFailed, so every
    caller (Invoke API, function URLs, async delivery) treats it as a
    host-side refusal: 500 ServiceException, or an event tried again later."""


class LedgerWriter(Protocol):
    def record(self, record: Record) -> Awaitable[None]: ...

    def refusal(self) -> str | None: ...


class LogWriter(Protocol):
    def write(self, function: str, data: bytes, source: object | None = None, *,
              stream: str | None = None, request_id: str | None = None) -> None: ...


class Closable(Protocol):
    def close(self) -> None: ...


class RuntimeApiListeners(Protocol):
    """The API layer serves the Runtime API on a listening socket inside a
    sandbox, for whichever sandbox `member_of()` names when a call comes."""

    def serve_inside(self, sock, member_of: Callable[[], object]) -> Awaitable[Closable]: ...


@dataclass(frozen=True)
class SchedulerSettings:
    region: str = DEFAULT_REGION
    freeze: bool = True
    freeze_grace_s: float = DEFAULT_FREEZE_GRACE_S
    idle_ttl_s: int = DEFAULT_IDLE_TTL_S
    init_timeout_s: float = 10.0
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S
    stem_cells: int = 1
    cores: int = 1


@dataclass(eq=False)
class SchedulerContext:
    backend: ContainerBackend
    registry: Registry
    settings: SchedulerSettings
    ledger: LedgerWriter | None              # the ledger, once the host has opened it
    log_writer: LogWriter
    prices: dict
    listeners: RuntimeApiListeners | None
    runtime_api_address: str = ""           # host:port on the backend's network, once the API listens
    images: dict[str, str] = field(default_factory=dict)   # our image name -> reference
    opt_dirs: dict = field(default_factory=dict)           # function name -> its layers put together (/opt)
    stopping: bool = False
    tasks: set[asyncio.Task] = field(default_factory=set)
    stems: object = None                     # StemCells, set by the scheduler

    def track(self, coro) -> asyncio.Task:
        """A background task the host waits for (or cancels) when it stops."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task
