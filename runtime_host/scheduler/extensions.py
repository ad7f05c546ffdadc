"""The extensions of one sandbox (spec §8.1, §3.1, §3.3, §3.5).

Owns: who registered (external: a file in /opt/extensions the host
started; internal: registered from inside the runtime's process), their
queues of INVOKE and SHUTDOWN events, whether each is back in `event/next`
(`idle`: the init and each invocation end only when every extension is),
and the first failure an extension caused (a crash, an init or exit error).
Must not: start processes (the pool asks the backend), answer HTTP (the
Extensions API does), or change the sandbox's state (the sandbox does, when
told through `on_idle` and `on_failure`).
"""
from __future__ import annotations

import asyncio
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from runtime_host.core.extensions import (ERR_INVALID_NAME, ERR_INVALID_STATE, ERR_REGISTRATION_CLOSED, ERR_TOO_MANY,
                                          ERR_UNKNOWN_ID, EXTENSION_CRASH, MAX_EXTENSIONS, SHUTDOWN,
                                          ERR_INVALID_EVENT_TYPE, ExtensionRefusal)


@dataclass(eq=False)
class Extension:
    id: str
    name: str
    events: frozenset[str]
    external: bool
    busy: bool = True              # registered or handed an event, and not yet back in event/next
    exited: bool = False
    queue: deque = field(default_factory=deque)
    waiter: asyncio.Future | None = None


class SandboxExtensions:
    def __init__(self, function_name: str, version: str, handler: str, account_id: str):
        self.info = {"functionName": function_name, "functionVersion": version, "handler": handler}
        self.account_id = account_id
        self.launched: list[str] = []            # names of the external extensions the host started
        self.by_id: dict[str, Extension] = {}
        self.registration_open = True
        self.shutting_down = False
        self.failure: tuple[str, str] | None = None
        self.on_failure: Callable[[str, str], None] = lambda error_type, detail: None
        self.on_registered: Callable[[Extension], None] = lambda ext: None
        self._idle_callbacks: list[Callable[[], None]] = []
        self._all_registered: asyncio.Future[None] | None = None

    # --- who is there ---------------------------------------------------------------
    @property
    def any(self) -> bool:
        return bool(self.by_id)

    def count(self, external: bool) -> int:
        return sum(1 for e in self.by_id.values() if e.external == external)

    def subscribers(self, event_type: str) -> list[Extension]:
        return [e for e in self.by_id.values() if event_type in e.events and not e.exited]

    def find(self, ext_id: str) -> Extension:
        ext = self.by_id.get(ext_id)
        if ext is None:
            raise ExtensionRefusal(403, ERR_UNKNOWN_ID, f"Unknown extension {ext_id}")
        return ext

    # --- registering ------------------------------------------------------------------
    def expect(self, names: list[str]) -> None:
        """The external extensions the host is starting (file names in /opt/extensions)."""
        self.launched = list(names)

    async def all_registered(self) -> None:
        """Returns once every launched external extension has registered (RAPID
        starts the runtime only then)."""
        if self._registered_all():
            return
        self._all_registered = asyncio.get_running_loop().create_future()
        await self._all_registered

    def _registered_all(self) -> bool:
        if not self.launched:
            return True
        names = {e.name for e in self.by_id.values() if e.external}
        return all(name in names for name in self.launched)

    def register(self, name: str, events: list[str], wants_account_id: bool) -> tuple[Extension, dict]:
        if not name:
            raise ExtensionRefusal(403, ERR_INVALID_NAME, "Empty extension name")
        launched_and_new = name in self.launched and not any(e.name == name for e in self.by_id.values())
        if not self.registration_open and not launched_and_new:
            # An extension the host started may still register (without a stem
            # cell its runtime starts beside it, not after it).
            raise ExtensionRefusal(403, ERR_REGISTRATION_CLOSED,
                                   "Extension registration closed already: the runtime has finished its init")
        if any(e.name == name for e in self.by_id.values()):
            raise ExtensionRefusal(403, ERR_INVALID_STATE, f"An extension named {name} is registered already")
        if len(self.by_id) >= MAX_EXTENSIONS:
            raise ExtensionRefusal(403, ERR_TOO_MANY, f"At most {MAX_EXTENSIONS} extensions may register")
        external = name in self.launched
        if not external and SHUTDOWN in events:
            raise ExtensionRefusal(403, ERR_INVALID_EVENT_TYPE,
                                   f"{name} is an internal extension (no file of that name in /opt/extensions): "
                                   "it may not register for SHUTDOWN")
        ext = Extension(str(uuid.uuid4()), name, frozenset(events), external)
        self.by_id[ext.id] = ext
        self.on_registered(ext)
        if self._all_registered is not None and not self._all_registered.done() and self._registered_all():
            self._all_registered.set_result(None)
        body = dict(self.info)
        if wants_account_id:
            body["accountId"] = self.account_id
        return ext, body

    def close_registration(self) -> None:
        """The runtime's first GET next (RAPID turns registration off then)."""
        self.registration_open = False

    # --- events -----------------------------------------------------------------------
    async def next_event(self, ext: Extension) -> dict:
        """An extension's GET event/next: it is done with what it had."""
        ext.busy = False
        if ext.queue:
            ext.busy = True
            return ext.queue.popleft()
        self._check_idle()
        if ext.waiter is None or ext.waiter.done():
            ext.waiter = asyncio.get_running_loop().create_future()
        return await ext.waiter

    def _put(self, ext: Extension, event: dict) -> None:
        ext.busy = True
        if ext.waiter is not None and not ext.waiter.done():
            ext.waiter.set_result(event)
        else:
            ext.queue.append(event)

    def deliver(self, event_type: str, event: dict) -> int:
        """To every extension registered for it; how many got it."""
        subscribers = self.subscribers(event_type)
        for ext in subscribers:
            self._put(ext, event)
        return len(subscribers)

    # --- being done ---------------------------------------------------------------------
    def idle(self) -> bool:
        """Every extension the host started has registered, and every one
        is back in event/next with nothing queued."""
        return all(not e.busy or e.exited for e in self.by_id.values()) and self._registered_all()

    def when_idle(self, callback: Callable[[], None]) -> None:
        if self.idle():
            callback()
        else:
            self._idle_callbacks.append(callback)

    def _check_idle(self) -> None:
        if self._idle_callbacks and self.idle():
            callbacks, self._idle_callbacks = self._idle_callbacks, []
            for callback in callbacks:
                callback()

    # --- failing ------------------------------------------------------------------------
    def fail(self, error_type: str, detail: str) -> None:
        if self.failure is None and not self.shutting_down:
            self.failure = (error_type, detail)
            self.on_failure(error_type, detail)

    def process_exited(self, name: str) -> None:
        """An external extension's process ended: it is no longer waited for."""
        for ext in self.by_id.values():
            if ext.name == name:
                ext.exited = True
        self._check_idle()

    def crashed(self, name: str, exit_code: int) -> None:
        """Its process ended outside shutdown: even with status 0, that is a
        crash (spec §8.1)."""
        self.fail(EXTENSION_CRASH, f"extension {name} exited with status {exit_code}")

    def wake_all(self) -> None:
        """The sandbox is gone: nobody waits in event/next any more."""
        for ext in self.by_id.values():
            if ext.waiter is not None and not ext.waiter.done():
                ext.waiter.cancel()
