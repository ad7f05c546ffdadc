"""Code reload: a function whose folder changes gets fresh sandboxes.

Owns: watching the code folders of the served functions (inotify, through
`watchfiles`: no polling, no work per invocation) and telling the scheduler
which function changed, once a burst of saves has settled.
What a change does is the pool's (`FunctionPool.code_changed`): sandboxes
started from the old code finish what they hold and are retired; the next
invocation starts from the new code. A sandbox's /var/task shows the folder
itself, so new files are there at once; the retirement is for what a warm
runtime already loaded.
Must not: read function.toml again (a changed configuration needs a restart
of the host: said in the log) or touch image functions (their code is the image).
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Callable

import watchfiles

from runtime_host.core.config import CONFIG_FILE, FunctionConfig

log = logging.getLogger("runtime_host.scheduler.code_reload")

DEBOUNCE_MS = 200          # saves closer together than this are one change (an editor writes several files)


class CodeWatcher:
    def __init__(self, functions: dict[str, FunctionConfig], on_change: Callable[[str], None]):
        self.folders = {fn.name: fn.code_dir.resolve() for fn in functions.values() if not fn.is_image}
        self.on_change = on_change
        self._task: asyncio.Task | None = None
        self._stop = asyncio.Event()

    def start(self) -> None:
        if self.folders:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        try:
            async for changes in watchfiles.awatch(*self.folders.values(), stop_event=self._stop,
                                                   debounce=DEBOUNCE_MS, step=50, recursive=True):
                for name in sorted(self._functions_of({Path(path) for _, path in changes})):
                    self.on_change(name)
        except (OSError, RuntimeError) as exc:            # a folder gone, inotify limits: serve on without reload
            log.warning("code reload stopped: %s", exc)

    def _functions_of(self, paths: set[Path]) -> set[str]:
        changed = set()
        for name, folder in self.folders.items():
            for path in paths:
                if path == folder or folder in path.parents:
                    if path.name == CONFIG_FILE:
                        log.warning("%s changed: restart the host for a new configuration of %s", path, name)
                    changed.add(name)
        return changed

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
