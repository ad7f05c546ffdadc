"""Warm starts that behave like Lambda: freeze and thaw, reuse, bursts,
provisioned concurrency, idle reaping, host shutdown, init limits and
containers killed from outside."""
from __future__ import annotations

import base64
import json
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import (client_for, RUNTIME_HOST, containers_of_host, docker, invoke, start_host, stop_host)


@pytest.fixture(autouse=True)
def no_dead_container_lingers(host):
    """After each test: every container the session host has is a live sandbox."""
    yield
    deadline = time.monotonic() + 10
    while True:
        dead = docker("ps", "-aq", "--filter", f"label=runtime-host.host-pid={host.pid}",
                      "--filter", "status=exited", "--filter", "status=created", "--filter", "status=dead").split()
        if not dead or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert dead == []


def sandboxes(host, function: str | None = None) -> list[dict]:
    out = subprocess.run([RUNTIME_HOST, "ps", "--json", "--endpoint-url", host.endpoint],
                         capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)["sandboxes"]
    return [r for r in rows if function is None or r["function"] == function]


def report_of(resp) -> str:
    tail = base64.b64decode(resp["LogResult"]).decode()
    return next(line for line in tail.splitlines() if line.startswith("REPORT"))


# --- freezing -------------------------------------------------------------------
def counter_growth_while_idle(lambda_client, function: str) -> tuple[float, float]:
    """(growth of the counter over 2 s idle, what 2 s of running gives)."""
    _, first = invoke(lambda_client, function, {"measure_s": 0.5})
    time.sleep(2)
    _, second = invoke(lambda_client, function, {})
    return second["count_at_start"] - first["count_at_end"], 2 * first["rate_per_s"]


def test_frozen_sandbox_gets_no_cpu_between_invocations(lambda_client):
    growth, running_2s = counter_growth_while_idle(lambda_client, "py-counter")
    assert running_2s > 0
    assert growth < 0.05 * running_2s, f"counter advanced {growth:.0f} while idle ({running_2s:.0f} in 2 s running)"


def test_without_freezing_the_counter_runs_on(lambda_client):
    growth, running_2s = counter_growth_while_idle(lambda_client, "py-counter-nofreeze")
    assert growth > 0.5 * running_2s, f"counter advanced only {growth:.0f} while idle ({running_2s:.0f} in 2 s running)"


def test_ps_shows_an_idle_sandbox_as_frozen(lambda_client, host):
    invoke(lambda_client, "py-counter", {})
    time.sleep(0.2)
    rows = sandboxes(host, "py-counter")
    assert len(rows) == 1
    row = rows[0]
    assert row["state"] == "FROZEN"
    assert row["invocations"] >= 1 and row["age_s"] >= row["idle_s"] >= 0
    assert len(row["container"]) == 12 and row["container"] in docker("ps", "-q", "--no-trunc").replace("\n", " ")
    table = subprocess.run([RUNTIME_HOST, "ps", "--endpoint-url", host.endpoint], capture_output=True, text=True).stdout
    assert table.splitlines()[0].startswith("host pid ") and " RSS " in table.splitlines()[0]
    assert table.splitlines()[1].split()[:4] == ["FUNCTION", "CONTAINER", "STATE", "AGE"]
    assert any(line.startswith("py-counter ") and "FROZEN" in line for line in table.splitlines())


def test_freeze_grace_counts_from_the_latest_release(functions_dir, tmp_path):
    # A 3 s grace and calls 0.1 s apart for three times as long: the sandbox is
    # never frozen while in use (a timer left from an earlier release would
    # fire mid-loop), then once idle. The grace is 3 s, not 1 s, so that a call
    # stalled by the new host starting its stem cells (seen: over 0.9 s) does
    # not pass for a stale timer.
    extra = start_host(functions_dir, tmp_path / "grace", extra_args=["--freeze-grace-ms", "3000"])
    try:
        client = client_for(extra.endpoint)
        loop_until = time.monotonic() + 9
        while time.monotonic() < loop_until:
            invoke(client, "py-probe", {})
            time.sleep(0.1)
        [row] = sandboxes(extra, "py-probe")
        assert row["freezes"] == 0, "frozen while calls kept coming within the grace"
        deadline = time.monotonic() + 15
        while sandboxes(extra, "py-probe")[0]["state"] != "FROZEN" and time.monotonic() < deadline:
            time.sleep(0.1)
        [row] = sandboxes(extra, "py-probe")
        assert (row["state"], row["freezes"]) == ("FROZEN", 1)
    finally:
        stop_host(extra)


def test_unfrozen_function_idles_ready(lambda_client, host):
    invoke(lambda_client, "py-counter-nofreeze", {})
    time.sleep(0.2)
    assert [r["state"] for r in sandboxes(host, "py-counter-nofreeze")] == ["READY"]


# --- reuse and bursts --------------------------------------------------------------
def test_second_invocation_is_warm_same_process_and_no_init_duration(host):
    client = client_for(host.endpoint)
    first, a = invoke(client, "hello-node", {}, LogType="Tail")   # first use of hello-node in this test run?
    second, b = invoke(client, "hello-node", {}, LogType="Tail")
    assert b["invocation"] == a["invocation"] + 1, "same runtime process, module state kept"
    assert "Init Duration" not in report_of(second)


def test_cold_start_report_has_init_duration(lambda_client, host):
    resp, _ = invoke(lambda_client, "py-short-ttl", {}, LogType="Tail")
    assert "\tInit Duration: " in report_of(resp)


def test_burst_starts_n_sandboxes_then_all_freeze_and_the_next_burst_reuses_them(host):
    # py-provisioned: reserved_concurrency 3, two of them provisioned at start.
    client = client_for(host.endpoint)
    n = 3

    def burst():
        with ThreadPoolExecutor(n) as pool:
            return list(pool.map(lambda _: invoke(client, "py-provisioned", {"action": "sleep", "seconds": 1}),
                                 range(n)))

    first = {body["hostname"] for _, body in burst()}
    assert len(first) == n, "three concurrent invocations ran in three sandboxes"
    time.sleep(0.2)
    rows = sandboxes(host, "py-provisioned")
    assert len(rows) == n and all(r["state"] == "FROZEN" for r in rows)
    second = {body["hostname"] for _, body in burst()}
    assert second == first, "the second burst reused the same sandboxes"


def test_most_recently_used_sandbox_is_picked_first(host):
    client = client_for(host.endpoint)
    # Three side by side, ending at different times (which one ends last also depends on
    # which got the cold start): the one released last is the one idle the shortest.
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda s: invoke(client, "py-provisioned", {"action": "sleep", "seconds": s}),
                                (0.3, 0.6, 0.9)))
    hostnames = [body["hostname"] for _, body in results]
    assert len(set(hostnames)) == 3
    rows = [r for r in sandboxes(host, "py-provisioned") if r["container"] in hostnames]
    assert len(rows) == 3
    released_last = min(rows, key=lambda r: r["idle_s"])
    assert sorted(r["idle_s"] for r in rows)[1] > released_last["idle_s"], rows   # told apart (0.1 s steps)
    _, body = invoke(client, "py-provisioned", {})
    assert body["hostname"] == released_last["container"]


# --- provisioned concurrency ----------------------------------------------------------
def test_provisioned_sandboxes_are_ready_and_frozen_at_start_and_first_invocation_is_warm(functions_dir, tmp_path):
    extra = start_host(functions_dir, tmp_path / "prov")
    try:
        rows = [r for r in sandboxes(extra) if r["function"] == "py-provisioned"]
        assert len(rows) == 2
        assert all(r["state"] == "FROZEN" and r["initialization_type"] == "provisioned-concurrency" for r in rows)
        assert all(r["function"] == "py-provisioned" for r in sandboxes(extra)), "nothing else is started ahead"
        resp, body = invoke(client_for(extra.endpoint), "py-provisioned", {}, LogType="Tail")
        assert body["env"]["AWS_LAMBDA_INITIALIZATION_TYPE"] == "provisioned-concurrency"
        assert "Init Duration" not in report_of(resp)
        assert body["invocations"] == 1
    finally:
        stop_host(extra)
    assert containers_of_host(extra.pid) == []


# --- reaping -------------------------------------------------------------------------
def test_sandbox_idle_past_its_ttl_is_shut_down_and_removed(lambda_client, host):
    _, body = invoke(lambda_client, "py-short-ttl", {})
    assert len(sandboxes(host, "py-short-ttl")) == 1
    deadline = time.monotonic() + 15
    while sandboxes(host, "py-short-ttl") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sandboxes(host, "py-short-ttl") == []
    names = docker("ps", "-a", "--format", "{{.Names}}", "--filter", f"label=runtime-host.host-pid={host.pid}")
    assert "py-short-ttl" not in names
    _, again = invoke(lambda_client, "py-short-ttl", {})
    assert again["invocations"] == 1, "a fresh sandbox after reaping"


# --- timeouts and crashes ---------------------------------------------------------------
def test_container_killed_from_outside_ends_the_invocation_with_exit_error(lambda_client, host):
    result = {}
    t = threading.Thread(target=lambda: result.update(
        zip(("resp", "body"), invoke(lambda_client, "py-counter", {"measure_s": 5}))))
    t.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        busy = [r for r in sandboxes(host, "py-counter") if r["state"] == "BUSY"]
        if busy:
            break
        time.sleep(0.05)
    assert busy
    docker("kill", busy[0]["container"])
    t.join(timeout=30)
    assert result["resp"]["FunctionError"] == "Unhandled"
    assert result["body"]["errorType"] == "Runtime.ExitError", "the kill ended it (a timeout is Sandbox.Timedout)"
    assert result["body"]["errorMessage"].endswith("Error: Runtime exited with error: signal: killed")
    _, fresh = invoke(lambda_client, "py-counter", {})
    assert [r["state"] for r in sandboxes(host, "py-counter")] in (["FROZEN"], ["READY"], ["BUSY"])


def test_init_over_its_limit_fails_cleanly(functions_dir, tmp_path):
    extra = start_host(functions_dir, tmp_path / "init-limit", extra_args=["--init-timeout-s", "2"])
    try:
        client = client_for(extra.endpoint)
        resp, body = invoke(client, "sh-slow-init", {})
        assert resp["FunctionError"] == "Unhandled"
        assert body["errorType"] == "Sandbox.Timedout"
        assert "Init timed out after 2.00 seconds" in body["errorMessage"]
        def slow_init_containers():
            return docker("ps", "-aq", "--filter", f"label=runtime-host.host-pid={extra.pid}",
                          "--filter", "label=runtime-host.function=sh-slow-init").split()
        deadline = time.monotonic() + 10
        while slow_init_containers() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert slow_init_containers() == []
    finally:
        stop_host(extra)
    assert containers_of_host(extra.pid) == []


# --- host shutdown ----------------------------------------------------------------------
def test_sigterm_lets_in_flight_invocations_finish_refuses_new_ones_and_removes_everything(functions_dir, tmp_path):
    extra = start_host(functions_dir, tmp_path / "drain")
    client = client_for(extra.endpoint)
    invoke(client, "hello-python", {})                       # a warm, frozen sandbox too
    result = {}
    t = threading.Thread(target=lambda: result.update(
        zip(("resp", "body"), invoke(client, "py-probe", {"action": "sleep", "seconds": 2}))))
    t.start()
    # SIGTERM once the probe's invocation is in flight (its sandbox BUSY), however long its cold start takes.
    deadline = time.monotonic() + 300          # "never", not a speed: the host fills its stem cells meanwhile
    while not any(row["state"] == "BUSY" for row in sandboxes(extra, "py-probe")):
        assert t.is_alive(), f"the probe's invocation ended before it was seen running: {result}"
        assert time.monotonic() < deadline, "the probe's invocation never started"
        time.sleep(0.02)
    extra.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    from botocore.exceptions import ClientError, EndpointConnectionError
    try:
        client.invoke(FunctionName="hello-python", Payload=b"{}")
        refused = "accepted"
    except ClientError as err:
        refused = err.response["Error"]["Code"]
    except EndpointConnectionError:
        refused = "connection refused"
    t.join(timeout=30)
    assert extra.proc.wait(timeout=60) == 0, extra.stderr()
    assert refused in ("ServiceException", "connection refused")
    assert result["body"].get("event") == {"action": "sleep", "seconds": 2}, result
    assert "FunctionError" not in result["resp"]
    assert containers_of_host(extra.pid) == []
    assert docker("network", "ls", "-q", "--filter", f"label=runtime-host.host-pid={extra.pid}").strip() == ""
