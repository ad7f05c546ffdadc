"""The commands a user types: `make run`, `runtime-host --help`, and a host
that dies with kill -9 leaving containers for the next one to clean up."""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from tests.conftest import REPO, client_for, RUNTIME_HOST, VENV_BIN, containers_of_host, docker, invoke, start_host, stop_host


def containers_of_other_hosts(*known_pids: int) -> list[str]:
    """Containers left by hosts that have ended: a `run` host exits when it
    is done, so any of its containers still there is a leftover. Hosts still
    running (other tests', or anyone's on a shared machine) are not counted."""
    import psutil
    rows = docker("ps", "-a", "--filter", "label=runtime-host.host",
                  "--format", '{{.ID}} {{.Label "runtime-host.host-pid"}}').splitlines()
    return [row for row in rows if row.split()[1] not in {str(p) for p in known_pids}
            and not (row.split()[1].isdigit() and psutil.pid_exists(int(row.split()[1])))]


def make_run(*args: str, **env: str) -> subprocess.CompletedProcess:
    """`make run` with a host for that run only (KEEP_WARM=0): these tests check a whole cold run and
    that nothing is left (tests/e2e/test_warm_run.py tests the warm host `make run` keeps by default)."""
    venv = os.path.dirname(str(VENV_BIN))
    return subprocess.run(["make", "--no-print-directory", "run", f"VENV={venv}", "KEEP_WARM=0", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, **env})


@pytest.mark.parametrize("example,expected", [
    ("examples/hello-python", '"message": "hello from python"'),
    ("examples/hello-node", '"message":"hello from node"'),
    ("examples/hello-shell", "hello from shell"),
])
def test_make_run_prints_response_log_and_report_and_leaves_nothing(host, example, expected):
    result = make_run(f"FUNC={example}", EVENT='{"k": "v"}')
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert expected in out and '"k"' in out
    assert "START RequestId:" in out and "END RequestId:" in out
    report = next(line for line in out.splitlines() if line.startswith("REPORT RequestId:"))
    assert "\tInit Duration: " in report, "a first run is a cold start"
    assert containers_of_other_hosts(host.pid) == []


def test_make_run_reads_event_file_and_reuses_images(host, tmp_path):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"from": "file"}))
    result = make_run("FUNC=examples/hello-python", EVENT_FILE=str(event))
    assert result.returncode == 0, result.stderr
    assert '"from": "file"' in result.stdout
    assert "up to date" in result.stderr and "step " not in result.stderr, "images are reused, not rebuilt"


def test_make_run_with_bad_event_says_what_is_wrong():
    result = make_run("FUNC=examples/hello-python", EVENT="{oops")
    assert result.returncode != 0
    assert "the event is not JSON" in result.stderr


def test_make_run_with_bad_folder_names_file_and_field(tmp_path):
    (tmp_path / "function.toml").write_text('runtime = "python3.11"\nhandler = "app.handler"\ntimeout_s = 901\n')
    result = make_run(f"FUNC={tmp_path}")
    assert result.returncode != 0
    assert f"{tmp_path}/function.toml" in result.stderr and "'timeout_s' = 901" in result.stderr
    assert "1 to 900" in result.stderr


@pytest.mark.parametrize("command", [[], ["serve"], ["run"], ["invoke"], ["images"], ["images", "build"]])
def test_every_command_explains_itself(command):
    result = subprocess.run([RUNTIME_HOST, *command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "usage: runtime-host" in result.stdout
    assert len(result.stdout.splitlines()) > 3


def test_invoke_command_talks_to_a_running_host(host):
    result = subprocess.run([RUNTIME_HOST, "invoke", "hello-python", "--endpoint-url", host.endpoint,
                             "--event", '{"via": "cli"}'], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["event"] == {"via": "cli"}
    assert "REPORT RequestId:" in result.stderr


def test_containers_of_a_killed_host_are_removed_by_the_next(functions_dir, tmp_path, lambda_client, host):
    invoke(lambda_client, "hello-python", {})
    session_sandboxes = set(containers_of_host(host.pid))
    first = start_host(functions_dir, tmp_path / "first")
    try:
        client = client_for(first.endpoint)
        invoke(client, "hello-python", {})
        invoke(client, "hello-node", {})
        left = containers_of_host(first.pid)
        assert len(left) >= 4, "hello-python, hello-node, two provisioned py-provisioned sandboxes, stem cells"
    finally:
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
    assert sorted(containers_of_host(first.pid)) == sorted(left), "kill -9 leaves them behind"
    second = start_host(functions_dir, tmp_path / "second")
    try:
        assert containers_of_host(first.pid) == []
        assert "left by a host that is no longer running" in second.stderr()
        assert session_sandboxes <= set(containers_of_host(host.pid)), "a live host's sandboxes are left alone"
        _, body = invoke(lambda_client, "hello-python", {})
        assert body["message"] == "hello from python"
    finally:
        stop_host(second)
    assert containers_of_host(second.pid) == []
