"""Stem cells: containers started ahead of need, not yet given a function.

Starting a container is the slow part of a cold start (a few hundred ms).
So the host keeps `per_key` containers running for every (runtime image,
memory size, /tmp size) its functions use, each with a small stem program
waiting in GET /runtime-host/stem (a long poll, on the Runtime API's
address). At a cold start the pool takes one, links the function's code
into the folder mounted at its /var/task, and answers the stem with the
function's environment and its runtime's command. The shell stem execs the
command; the Python and Node stems have their interpreter and our runtime
client loaded already and run it in place with the new environment. What
is left on the invocation's path is the runtime's (and the function's) own
init, as with OpenWhisk's stem cells and Fission's pools.

Owns: starting, handing out and replacing stems, and the stem endpoint.
Must not: know about invocations; once specialized a container belongs to
its Sandbox and pool like any other.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from urllib.parse import parse_qs

from runtime_host.store import logs
from runtime_host.backend.docker.engine import LABEL_PREFIX, SANDBOX_IO_DIR, BackendError, ContainerSpec
from runtime_host.core.config import IMAGE_OF_RUNTIME, vcpus_for_memory
from runtime_host.api.http_server import Reply, Request

if TYPE_CHECKING:
    from runtime_host.core.config import FunctionConfig
    from runtime_host.host import Host
    from runtime_host.scheduler.sandbox import Sandbox

log = logging.getLogger("runtime_host.scheduler.stems")

STEM_PATH = "/runtime-host/stem"
LABEL_STEM = LABEL_PREFIX + "stem"
# The stem program each of our images carries.
STEM_COMMAND = {
    "python3.11": ["/usr/bin/python3", "-u", "/var/runtime/stem.py"],
    "nodejs18.x": ["/usr/bin/node", "/var/runtime/stem.js"],
    "provided": ["/var/runtime/stem"],
}

StemKey = tuple[str, int, int]       # (image name, memory_mb, ephemeral_storage_mb)


@dataclass(eq=False)
class Stem:
    key: StemKey
    id: str
    ip: str
    task_dir: Path
    container_id: str | None = None
    pid: int | None = None
    output_task: asyncio.Task | None = None
    on_output: Callable[[bytes], None] = lambda data: None
    waiting: asyncio.Future | None = None              # resolved with the stem's answer
    asked: asyncio.Event = field(default_factory=asyncio.Event)   # its GET arrived: ready to be taken
    # The Runtime API on its own loopback (host.runtime_api_inside), for the
    # sandbox it becomes; None where only the gateway is available.
    runtime_server: asyncio.AbstractServer | None = None
    sandbox: object = None
    listening: asyncio.Event = field(default_factory=asyncio.Event)    # the listener is set up (or given up)
    output: logs.OutputFifo | None = None             # where its runtime's stdout/stderr go once specialized
    exited: asyncio.Event = field(default_factory=asyncio.Event)


def close_channels(owner: "Stem | Sandbox") -> None:
    """Closes what a stem hands on to the sandbox it becomes (its attach
    stream reader, its loopback Runtime API listener, its output FIFO), for
    whichever of the two holds them at the end."""
    if owner.output_task is not None:
        owner.output_task.cancel()
    if owner.runtime_server is not None:
        owner.runtime_server.close()
    if owner.output is not None:
        owner.output.close()
        shutil.rmtree(owner.output.directory, ignore_errors=True)


def _json(status: int, doc: dict) -> Reply:
    return Reply(status, json.dumps(doc).encode())


def link_tree(source: Path, target: Path) -> None:
    """The function's code into a stem's /var/task: hard links where the
    file system allows (instant, whatever the size), copies elsewhere."""
    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    shutil.copytree(source, target, symlinks=True, copy_function=link_or_copy, dirs_exist_ok=True)


class StemCells:
    def __init__(self, host: "Host", per_key: int):
        self.host = host
        self.per_key = per_key
        self.root = host.state_dir / "stems" / host.id[:12]
        self._stems: dict[StemKey, list[Stem]] = {}
        self._by_ip: dict[str, Stem] = {}
        self._by_container: dict[str, Stem] = {}
        self._filling: set[StemKey] = set()

    def key_of(self, fn: "FunctionConfig") -> StemKey | None:
        if self.per_key <= 0 or fn.is_image:
            return None
        return (IMAGE_OF_RUNTIME[fn.runtime], fn.memory_mb, fn.ephemeral_storage_mb)

    # --- keeping them stocked -----------------------------------------------------
    def fill_all(self) -> None:
        keys = {self.key_of(fn) for fn in self.host.functions.values()} - {None}
        for key in sorted(keys):
            self.fill_soon(key)

    def fill_soon(self, key: StemKey) -> None:
        if key in self._filling or self.host.stopping:
            return
        self._filling.add(key)
        self.host.track(asyncio.create_task(self._fill(key)))

    async def _fill(self, key: StemKey) -> None:
        try:
            missing = self.per_key - len(self._stems.get(key, []))
            await asyncio.gather(*(self._start(key) for _ in range(max(0, missing))))
        finally:
            self._filling.discard(key)

    async def _start(self, key: StemKey, stock: bool = True) -> Stem | None:
        """Starts a stem; `stock` ones wait to be taken, others are the caller's."""
        image_name, memory_mb, tmp_mb = key
        stem = Stem(key=key, id=uuid.uuid4().hex[:12], ip=self.host.allocate_ip(),
                    task_dir=self.root / uuid.uuid4().hex[:12])
        stem.task_dir.mkdir(parents=True)
        try:
            stem.output = logs.OutputFifo(stem.task_dir.with_name(stem.task_dir.name + "-io"),
                                          lambda data: stem.on_output(data))
        except OSError as exc:                # no FIFOs here: output goes through Docker
            log.debug("no output FIFO for a stem: %s", exc)
        if stock:
            self._stems.setdefault(key, []).append(stem)
        self._by_ip[stem.ip] = stem
        backend = self.host.backend
        spec = ContainerSpec(
            image=self.host.image_of(image_name), command=STEM_COMMAND[image_name],
            env={"AWS_LAMBDA_RUNTIME_API": self.host.runtime_api_address, "PATH": "/usr/local/bin:/usr/bin:/bin",
                 "LANG": "C.UTF-8"},
            labels={**self.host.labels, LABEL_STEM: image_name}, ip=stem.ip, memory_mb=memory_mb,
            cpus=min(self.host.cores, vcpus_for_memory(memory_mb)),
            tmp_mb=tmp_mb, code_dir=stem.task_dir, name=f"rh-stem-{image_name}-{stem.id}",
            io_dir=stem.output.directory if stem.output else None)
        try:
            stem.container_id = await backend.run(backend.create_container, spec, self.host.network)
            self._by_container[stem.container_id] = stem
            sock = await backend.run(backend.attach_output, stem.container_id)
            stem.output_task = asyncio.create_task(logs.read_container_output(sock, lambda d: stem.on_output(d)))
            stem.pid = await backend.run(backend.start, stem.container_id)
            stem.runtime_server = await self.host.runtime_api_inside(stem.pid, lambda: stem.sandbox)
            stem.listening.set()
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
        if key is None or self.host.stopping:
            return None
        stem = await self._start(key, stock=False)
        if stem is None:
            return None
        asked = asyncio.ensure_future(stem.asked.wait())
        exited = asyncio.ensure_future(stem.exited.wait())
        try:
            await asyncio.wait((asked, exited), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            asked.cancel()
            exited.cancel()
        if stem.asked.is_set() and not stem.exited.is_set() and stem.waiting is not None and not stem.waiting.done():
            self._discard(stem)
            return stem
        self._discard(stem)
        self.host.track(asyncio.create_task(self._remove(stem)))
        return None

    # --- handing one out ------------------------------------------------------------
    def take(self, key: StemKey | None) -> Stem | None:
        """A stem of that kind whose program is waiting, or None."""
        if key is None:
            return None
        for stem in self._stems.get(key, []):
            if (stem.asked.is_set() and stem.listening.is_set()
                    and stem.waiting is not None and not stem.waiting.done()):
                self._discard(stem)
                self.fill_soon(key)                 # keep one in stock
                return stem
        return None

    async def specialize(self, stem: Stem, fn: "FunctionConfig", env: dict[str, str], command: list[str]) -> None:
        """Gives the stem the function's code, environment and command."""
        await asyncio.get_running_loop().run_in_executor(None, link_tree, fn.code_dir, stem.task_dir)
        answer = {"env": env, "command": command}
        if stem.output is not None:
            answer["output"] = f"{SANDBOX_IO_DIR}/{logs.OutputFifo.NAME}"
        stem.waiting.set_result(answer)

    # --- the stem endpoint (on the Runtime API's listener) ------------------------------
    async def handle(self, request: Request, *_) -> Reply:
        stem = self._by_ip.get(request.remote)
        if stem is None:
            return _json(403, {"errorType": "UnknownStem",
                               "errorMessage": f"{request.remote} is not a stem cell of this host"})
        stem.waiting = asyncio.get_running_loop().create_future()
        stem.asked.set()
        try:
            spec = await stem.waiting
        except asyncio.CancelledError:
            return _json(410, {"errorType": "StemRemoved", "errorMessage": "stem removed"})
        if parse_qs(request.query).get("format") == ["sh"]:
            assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in spec["env"].items())
            redirect = f"exec >{shlex.quote(spec['output'])} 2>&1 && " if "output" in spec else ""
            text = (f"{redirect}cd /var/task && exec env -i {assignments} "
                    f"{' '.join(map(shlex.quote, spec['command']))}\n")
            return Reply(200, text.encode(), "text/plain; charset=utf-8")
        return _json(200, spec)

    def ready_count(self) -> int:
        return sum(1 for group in self._stems.values() for s in group
                   if s.asked.is_set() and s.waiting is not None and not s.waiting.done())

    # --- removal ----------------------------------------------------------------------
    def _discard(self, stem: Stem) -> None:
        stems = self._stems.get(stem.key, [])
        if stem in stems:
            stems.remove(stem)
        self._by_ip.pop(stem.ip, None)
        if stem.container_id:
            self._by_container.pop(stem.container_id, None)

    def on_exit(self, container_id: str) -> bool:
        """A stem that died before it was taken: forget it and start another."""
        stem = self._by_container.get(container_id)
        if stem is None:
            return False
        stem.exited.set()
        in_stock = stem in self._stems.get(stem.key, [])
        self._discard(stem)
        self.host.track(asyncio.create_task(self._remove(stem)))
        if in_stock:
            self.fill_soon(stem.key)
        return True

    async def _remove(self, stem: Stem) -> None:
        backend = self.host.backend
        if stem.waiting is not None and not stem.waiting.done():
            stem.waiting.cancel()
        close_channels(stem)
        if stem.container_id is not None:
            await backend.end(stem.container_id)
        self.host.release_ip(stem.ip)
        shutil.rmtree(stem.task_dir, ignore_errors=True)

    async def shutdown(self) -> None:
        stems = [s for group in self._stems.values() for s in group]
        for stem in stems:
            self._discard(stem)
        await asyncio.gather(*(self._remove(s) for s in stems), return_exceptions=True)
