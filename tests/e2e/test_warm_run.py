"""`runtime-host run --keep-warm` (what `make run` calls): the first run starts
a warm host and is a cold start; the next finds the sandbox warm; a changed
code file makes the next run a cold start of the new code; a changed
function.toml gets a new host; `--keep-warm 0` ends the warm host, which
removes its sandboxes. Real containers, real processes."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from runtime_host import warm_run
from tests.conftest import REPO, RUNTIME_HOST, containers_of_host


def run(folder, state, *extra: str, event: str = '{"k": "v"}') -> subprocess.CompletedProcess:
    return subprocess.run([RUNTIME_HOST, "run", str(folder), "--state-dir", str(state), "--event", event, *extra],
                          capture_output=True, text=True, timeout=600)


def report_of(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("REPORT RequestId:"))


def response_of(out: str) -> dict:
    return json.loads(out.split("--- response ---\n", 1)[1])


def warm_pids(state) -> list[int]:
    return [json.loads(p.read_text())["pid"] for p in (state / warm_run.WARM_DIR).glob("*.json")]


@pytest.fixture
def function(tmp_path):
    folder = tmp_path / "hello-warm"
    shutil.copytree(REPO / "examples" / "hello-python", folder)
    (folder / "function.toml").write_text((folder / "function.toml").read_text().replace(
        'name = "hello-python"', 'name = "hello-warm"'))
    return folder


def test_warm_runs_reuse_the_sandbox_and_a_code_change_is_a_cold_start(docker_engine, function, tmp_path):
    state = tmp_path / "state"
    pids: list[int] = []
    try:
        first = run(function, state, "--keep-warm", "60")
        assert first.returncode == 0, first.stdout + first.stderr
        assert "no warm host serves hello-warm yet: starting one" in first.stderr
        assert "\tInit Duration: " in report_of(first.stdout), "the first run is a cold start"
        assert response_of(first.stdout)["invocation"] == 1
        pids = warm_pids(state)
        assert len(pids) == 1

        second = run(function, state, "--keep-warm", "60", event='{"n": 2}')
        assert second.returncode == 0, second.stdout + second.stderr
        assert "starting one" not in second.stderr
        assert "Init Duration" not in report_of(second.stdout), "the second run finds the sandbox warm"
        assert response_of(second.stdout) | {"request_id": ""} == {
            "message": "hello from python", "event": {"n": 2}, "invocation": 2, "request_id": ""}
        assert second.stdout.count("START RequestId:") == 1, "only this run's log lines"

        # Saved and run at once, before any file watch could have told the host.
        app = function / "app.py"
        app.write_text(app.read_text().replace('f"{GREETING} from python"', 'f"{GREETING} from the new code"'))
        third = run(function, state, "--keep-warm", "60")
        assert third.returncode == 0, third.stdout + third.stderr
        assert "\tInit Duration: " in report_of(third.stdout), "changed code: a cold start"
        assert response_of(third.stdout)["message"] == "hello from the new code"
        assert response_of(third.stdout)["invocation"] == 1
        assert warm_pids(state) == pids, "the same warm host"

        # A changed configuration: another host; the old one is ended.
        config = function / "function.toml"
        config.write_text(config.read_text().replace('GREETING = "hello"', 'GREETING = "hi"'))
        fourth = run(function, state, "--keep-warm", "60")
        assert fourth.returncode == 0, fourth.stdout + fourth.stderr
        assert response_of(fourth.stdout)["message"] == "hi from the new code"
        assert warm_run.wait_for_exit(pids), "the host of the old configuration ended"
        assert containers_of_host(pids[0]) == []
        pids = warm_pids(state)

        # --keep-warm 0: a host for this run only, and the warm one is ended with its sandboxes.
        once = run(function, state, "--keep-warm", "0")
        assert once.returncode == 0, once.stdout + once.stderr
        assert "\tInit Duration: " in report_of(once.stdout)
        assert warm_run.wait_for_exit(pids)
        assert all(containers_of_host(pid) == [] for pid in pids)
        assert warm_pids(state) == []
    finally:
        warm_run.wait_for_exit(warm_run.stop_warm_hosts(state.resolve(), function.resolve()))


def test_a_warm_host_ends_by_itself_after_its_keep_warm_time(docker_engine, function, tmp_path):
    state = tmp_path / "state"
    try:
        first = run(function, state, "--keep-warm", "1")
        assert first.returncode == 0, first.stdout + first.stderr
        pids = warm_pids(state)
        assert warm_run.wait_for_exit(pids, timeout_s=120), "idle for its keep-warm time: it ends"
        assert containers_of_host(pids[0]) == []
        assert "every sandbox removed" in (state / warm_run.WARM_DIR / f"{warm_run.key_of(function.resolve())}.log").read_text()
    finally:
        warm_run.wait_for_exit(warm_run.stop_warm_hosts(state.resolve(), function.resolve()))


def test_a_bad_folder_is_reported_through_the_warm_host(docker_engine, tmp_path):
    (tmp_path / "function.toml").write_text('runtime = "python3.11"\nhandler = "app.handler"\ntimeout_s = 901\n')
    result = run(tmp_path, tmp_path / "state", "--keep-warm", "60")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{tmp_path}/function.toml" in result.stderr and "'timeout_s' = 901" in result.stderr
    assert warm_pids(tmp_path / "state") == []


def test_a_bad_event_is_refused_before_any_host_starts(tmp_path):
    result = run(REPO / "examples" / "hello-python", tmp_path / "state", "--keep-warm", "60", event="{oops")
    assert result.returncode == 2
    assert "the event is not JSON" in result.stderr
    assert not (tmp_path / "state" / warm_run.WARM_DIR).exists()
