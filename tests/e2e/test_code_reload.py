"""Code reload end to end: edit a function's file while `serve` runs; the
next invocations answer with the new code (docs: README, Code reload)."""
from __future__ import annotations

import time

from tests.conftest import client_for, invoke, start_host, stop_host

HANDLER = "def handler(event, context):\n    return {{'version': {version}}}\n"


def test_a_saved_change_answers_within_seconds_without_a_restart(tmp_path):
    functions = tmp_path / "functions"
    folder = functions / "reloading"
    folder.mkdir(parents=True)
    (folder / "function.toml").write_text('runtime = "python3.11"\nhandler = "app.handler"\nmemory_mb = 512\n')
    (folder / "app.py").write_text(HANDLER.format(version=1))
    host = start_host(functions, tmp_path / "state")
    try:
        client = client_for(host.endpoint)
        assert invoke(client, "reloading", {})[1] == {"version": 1}
        assert invoke(client, "reloading", {})[1] == {"version": 1}, "warm, the module loaded once"
        saved = time.monotonic()
        (folder / "app.py").write_text(HANDLER.format(version=2))
        answers = []
        while time.monotonic() - saved < 20:
            answers.append(invoke(client, "reloading", {})[1]["version"])
            if answers[-1] == 2:
                break
        took_s = time.monotonic() - saved
        print(f"save to the new code answering: {took_s:.2f} s")
        assert answers[-1] == 2, answers
        assert invoke(client, "reloading", {})[1] == {"version": 2}
    finally:
        stop_host(host)
    assert "code of reloading changed" in host.stderr()
