"""Stem cells: containers started ahead of need, not yet given a function.

Starting a container is the slow part of a cold start (a few hundred ms).
So the host keeps `per_key` containers running for every (runtime image,
memory size, /tmp size) its functions use, each with a small stem program
waiting in GET /runtime-host/stem (a long poll, on the Runtime API's
address; api/stem_api.py serves it and calls `ask`). At a cold start the
pool takes one, the backend places the function's code at its /var/task,
and the stem is answered with the function's environment and its runtime's
command. The shell stem execs the command; the Python and Node stems have
their interpreter and our runtime client loaded already and run it in place
with the new environment. What is left on the invocation's path is the
runtime's (and the function's) own init, as with OpenWhisk's stem cells and
Fission's pools.

A stem's life is the StemLife table in core/states.py: STARTING, then
STARTED (container and listener up) and ASKED (its program waits) in either
order, READY with both, TAKEN by a cold start; DEAD or DISCARDED on the way.

Owns: starting, handing out and replacing stems; what their program is answered.
Must not: know about invocations; once taken a container belongs to its
Sandbox and pool like any other.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from runtime_host.backend.interface import LABEL_STEM, BackendError, Container, ContainerSpec, ExitInfo
from runtime_host.core.config import IMAGE_OF_RUNTIME, FunctionConfig, init_vcpus
from runtime_host.core.environment import starts_its_own_interpreter
from runtime_host.core.protocol import RUNTIME_API_PORT
from runtime_host.core.runtimes import RUNTIMES
from runtime_host.core.states import StemEvent, StemLife, StemState
from runtime_host.scheduler.context import SchedulerContext

if TYPE_CHECKING:
    from runtime_host.scheduler.sandbox import Sandbox

log = logging.getLogger("runtime_host.stems")

# The stem program each of our images carries.
STEM_COMMAND = {runtime.image: list(runtime.stem) for runtime in RUNTIMES.values() if runtime.stem}

# (image name, memory_mb, ephemeral_storage_mb, the layers' tree shown at /opt or None)
StemKey = tuple[str, int, int, "Path | None"]


class StemRemoved(Exception):
    """The stem was removed while its program waited."""


@dataclass(eq=False)
class Stem:
    key: StemKey
    id: str
    life: StemLife = field(default_factory=StemLife)
    container: Container | None = None
    answer: asyncio.Future | None = None        # its program's pending GET, answered with the function
    settled: asyncio.Event = field(default_factory=asyncio.Event)   # READY, or it will never be
    # The Runtime API on its own loopback, for the sandbox it becomes; None
    # where only the backend's network address is available.
    runtime_server: object = None
    sandbox: "Sandbox | None" = None
    on_gone: Callable[["Stem"], None] | None = None   # the stem cells hear of an exit before it was taken

    @property
    def state(self) -> StemState:
        return self.life.state

    def _apply(self, event: StemEvent) -> None:
        state = self.life.apply(event)
        if state is not StemState.STARTING and state is not StemState.ASKED_EARLY and state is not StemState.STARTED:
            self.settled.set()

    def on_exit(self, info: ExitInfo) -> None:
        """Registry: its container ended before it was taken."""
        if not self.life.can(StemEvent.EXITED):
            return                      # taken (its sandbox hears the exit) or already given up
        self._apply(StemEvent.EXITED)
        if self.on_gone is not None:
            self.on_gone(self)


class StemCells:
    def __init__(self, ctx: SchedulerContext, functions: dict[str, FunctionConfig], per_key: int):
        self.ctx = ctx
        self.functions = functions
        self.per_key = per_key
        self._stock: dict[StemKey, list[Stem]] = {}
        self._filling: set[StemKey] = set()

    def key_of(self, fn: FunctionConfig) -> StemKey | None:
        # A wrapper script must start the runtime's interpreter itself, and node
        # reads NODE_OPTIONS only as it starts: a stem has its interpreter running
        # already, so such functions start their own container.
        if self.per_key <= 0 or fn.is_image or starts_its_own_interpreter(fn):
            return None
        # Layers are mounted when a stem is made, not linked at the cold start: a
        # layered function's stems are made for its layers (2 layers of 200 files
        # cost a cold start 9 ms when linked late).
        return (IMAGE_OF_RUNTIME[fn.runtime], fn.memory_mb, fn.ephemeral_storage_mb, self.ctx.opt_dirs.get(fn.name))

    # --- keeping them stocked -----------------------------------------------------
    def fill_all(self) -> None:
        keys = {self.key_of(fn) for fn in self.functions.values()} - {None}
        for key in sorted(keys, key=str):          # None and paths do not compare
            self.fill_soon(key)

    def fill_soon(self, key: StemKey) -> None:
        if key in self._filling or self.ctx.stopping:
            return
        self._filling.add(key)
        self.ctx.track(self._fill(key))

    async def _fill(self, key: StemKey) -> None:
        try:
            missing = self.per_key - len(self._stock.get(key, []))
            await asyncio.gather(*(self._start(key) for _ in range(max(0, missing))))
        finally:
            self._filling.discard(key)

    async def _start(self, key: StemKey, stock: bool = True) -> Stem | None:
        """Starts a stem; `stock` ones wait to be taken, others are the caller's."""
        image_name, memory_mb, tmp_mb, opt_dir = key
        stem = Stem(key=key, id=uuid.uuid4().hex[:12], on_gone=self._exited)
        if stock:
            self._stock.setdefault(key, []).append(stem)
        backend = self.ctx.backend
        spec = ContainerSpec(
            image=self.ctx.images[image_name], command=STEM_COMMAND[image_name],
            env={"AWS_LAMBDA_RUNTIME_API": self.ctx.runtime_api_address, "PATH": "/usr/local/bin:/usr/bin:/bin",
                 "LANG": "C.UTF-8"},
            labels={LABEL_STEM: image_name}, memory_mb=memory_mb,
            cpus=min(self.ctx.settings.cores, init_vcpus(memory_mb)),     # its function's init runs in it
            tmp_mb=tmp_mb, code_dir=None, opt_dir=opt_dir, name=f"rh-stem-{image_name}-{stem.id}",
            code_later=True, output_channel=True)
        try:
            stem.container = await backend.create(spec)
            self.ctx.registry.add(stem, stem.container)
            await backend.start(stem.container)
            sock = await backend.listen_inside(stem.container, RUNTIME_API_PORT)
            if sock is not None and self.ctx.listeners is not None:
                stem.runtime_server = await self.ctx.listeners.serve_inside(sock, lambda: stem.sandbox)
            if stem.life.can(StemEvent.STARTED):
                stem._apply(StemEvent.STARTED)
            return stem
        except BackendError as exc:
            log.warning("could not start a stem cell for %s: %s", image_name, exc)
            self._discard(stem)
            await self._remove(stem)
            return None

    async def start_now(self, key: StemKey | None, timeout_s: float) -> Stem | None:
        """A stem of our own for a cold start that found none in stock, so
        that every sandbox of our runtimes begins the same way (and gets its
        own loopback listener); None if it cannot be had in `timeout_s`, and
        the caller starts the runtime directly."""
        if key is None or self.ctx.stopping:
            return None
        stem = await self._start(key, stock=False)
        if stem is None:
            return None
        try:
            await asyncio.wait_for(stem.settled.wait(), timeout_s)
        except asyncio.TimeoutError:
            pass
        if stem.state is StemState.READY:
            stem._apply(StemEvent.TAKE)
            return stem
        self._discard(stem)
        self.ctx.track(self._remove(stem))
        return None

    # --- handing one out ------------------------------------------------------------
    def take(self, key: StemKey | None) -> Stem | None:
        """A stem of that kind whose program is waiting, or None."""
        if key is None:
            return None
        for stem in self._stock.get(key, []):
            if stem.state is StemState.READY and stem.answer is not None and not stem.answer.done():
                stem._apply(StemEvent.TAKE)
                self._stock[key].remove(stem)
                self.fill_soon(key)                 # keep one in stock
                return stem
        return None

    def hand_over(self, stem: Stem, sandbox: "Sandbox") -> None:
        """The taken stem's container, output and listener are the sandbox's from now on."""
        self.ctx.registry.remove(stem, stem.container)
        sandbox.attach(stem.container)
        self.ctx.registry.add(sandbox, stem.container)
        stem.sandbox, sandbox.runtime_server = sandbox, stem.runtime_server

    async def specialize(self, stem: Stem, fn: FunctionConfig, env: dict[str, str], command: list[str]) -> None:
        """Gives the stem the function's code, environment and command."""
        await self.ctx.backend.place_code(stem.container, fn.code_dir)
        answer = {"env": env, "command": command}
        if stem.container.output_path is not None:
            answer["output"] = stem.container.output_path
        stem.answer.set_result(answer)

    # --- what the stem endpoint calls ------------------------------------------------
    def stem_at(self, address: str) -> Stem | None:
        member = self.ctx.registry.at(address)
        return member if isinstance(member, Stem) else None

    async def ask(self, stem: Stem) -> dict:
        """Its program's GET: waits until a cold start takes it; raises StemRemoved."""
        if not stem.life.can(StemEvent.ASKED):
            raise StemRemoved(stem.id)      # dead, discarded, or asking twice
        stem.answer = asyncio.get_running_loop().create_future()
        stem._apply(StemEvent.ASKED)
        try:
            return await stem.answer
        except asyncio.CancelledError:
            raise StemRemoved(stem.id) from None

    def ready_count(self) -> int:
        return sum(1 for group in self._stock.values() for s in group if s.state is StemState.READY)

    def stock(self) -> dict[tuple[str, int], int]:
        """READY stems by (image, memory size), for GET /metrics."""
        counts: dict[tuple[str, int], int] = {}
        for (image, memory_mb, _tmp_mb, _opt), group in self._stock.items():
            n = sum(1 for s in group if s.state is StemState.READY)
            counts[(image, memory_mb)] = counts.get((image, memory_mb), 0) + n
        return counts

    # --- removal ----------------------------------------------------------------------
    def _discard(self, stem: Stem) -> None:
        stems = self._stock.get(stem.key, [])
        if stem in stems:
            stems.remove(stem)
        if stem.life.can(StemEvent.DISCARD):
            stem._apply(StemEvent.DISCARD)

    def _exited(self, stem: Stem) -> None:
        """A stem that died before it was taken: forget it and start another."""
        in_stock = stem in self._stock.get(stem.key, [])
        self._discard(stem)
        self.ctx.track(self._remove(stem))
        if in_stock:
            self.fill_soon(stem.key)

    async def _remove(self, stem: Stem) -> None:
        if stem.answer is not None and not stem.answer.done():
            stem.answer.cancel()
        if stem.runtime_server is not None:
            stem.runtime_server.close()
        self.ctx.registry.remove(stem, stem.container)
        if stem.container is not None:
            await self.ctx.backend.end(stem.container)

    async def shutdown(self) -> None:
        stems = [s for group in self._stock.values() for s in group]
        for stem in stems:
            self._discard(stem)
        await asyncio.gather(*(self._remove(s) for s in stems), return_exceptions=True)
