"""Code reload below the engine: a changed folder retires the sandboxes
started from the old code (idle ones at once, busy ones once answered)."""
from __future__ import annotations

import asyncio
import json

from runtime_host.core.states import SandboxState
from runtime_host.scheduler.code_reload import CodeWatcher
from tests.unit.fakehost import fake_host, function, settle

WAIT_S = 5.0


async def test_a_change_retires_idle_sandboxes_now_and_busy_ones_after_their_answer():
    async with fake_host(function()) as host:
        fn = host.functions["fn"]
        await asyncio.gather(host.invoke(fn, b'{"sleep_s": 0.1}'), host.invoke(fn, b'{"sleep_s": 0.1}'))  # two sandboxes
        await settle(host, until=lambda: all(s.state in (SandboxState.READY, SandboxState.FROZEN)
                                             for s in host.sandboxes()))
        slow = asyncio.create_task(host.invoke(fn, b'{"sleep_s": 1.0, "echo": 2}'))
        await settle(host, until=lambda: any(s.state is SandboxState.BUSY for s in host.sandboxes()))
        busy = next(s for s in host.sandboxes() if s.state is SandboxState.BUSY)
        idle = next(s for s in host.sandboxes() if s is not busy)
        host.scheduler.code_changed("fn")
        await settle(host, until=lambda: idle.state is SandboxState.DEAD)
        assert busy.state is SandboxState.BUSY, "a busy sandbox finishes its invocation"
        inv, outcome = await asyncio.wait_for(slow, WAIT_S)
        assert json.loads(outcome.body) == 2
        await settle(host, until=lambda: busy.state is SandboxState.DEAD)
        after, _ = await host.invoke(fn, b'{"echo": 3}')
    assert after.sandbox_id not in (busy.id, idle.id) and after.cold


async def test_the_watcher_names_the_function_whose_folder_changed(tmp_path):
    one, two = function("one"), function("two")
    changed: list[str] = []
    watcher = CodeWatcher({"one": one, "two": two}, changed.append)
    watcher.start()
    try:
        await asyncio.sleep(0.3)                  # the watches are in place
        (two.code_dir / "app.py").write_text("def handler(event, context):\n    return 'new'\n")
        for _ in range(100):
            if changed:
                break
            await asyncio.sleep(0.05)
    finally:
        await watcher.stop()
    assert changed == ["two"]
