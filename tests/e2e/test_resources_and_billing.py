"""Lambda's resource model enforced by cgroups, and a billing ledger that
loses nothing: OOM, CPU share, /tmp size, pids, the ledger across kill -9,
`runtime-host billing`, and a price table that does not parse."""
from __future__ import annotations

import base64
import json
import signal
import sqlite3
import subprocess
import time


from tests.conftest import RUNTIME_HOST, client_for, containers_of_host, invoke, start_host, stop_host


def ps(host) -> dict:
    return json.loads(subprocess.run([RUNTIME_HOST, "ps", "--json", "--endpoint-url", host.endpoint],
                                     capture_output=True, text=True, check=True).stdout)


def report_of(resp) -> str:
    tail = base64.b64decode(resp["LogResult"]).decode()
    return next(line for line in tail.splitlines() if line.startswith("REPORT"))


# --- memory ------------------------------------------------------------------------
def test_allocating_past_memory_size_is_out_of_memory_with_full_max_memory_used(lambda_client, host):
    resp, body = invoke(lambda_client, "py-hog", {}, LogType="Tail")
    rid = resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert resp["FunctionError"] == "Unhandled"
    assert body == {"errorType": "Runtime.OutOfMemory",
                    "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: signal: killed"}
    # the kill ended it, not the 10 s timeout (that would be Sandbox.Timedout)
    report = report_of(resp)
    assert "\tMax Memory Used: 128 MB\t" in report
    assert "\tStatus: error\tError Type: Runtime.OutOfMemory\t" in report
    # the next invocation gets a fresh sandbox, and it too is killed cleanly
    resp, body = invoke(lambda_client, "py-hog", {})
    assert body["errorType"] == "Runtime.OutOfMemory"


# --- CPU ----------------------------------------------------------------------------
CONTROL = "py-burn-control"      # the same burner in a container with no quota that binds here


def _sandbox_cpu(host, function: str, sandbox: str | None = None) -> dict:
    return next(r for r in ps(host)["sandboxes"] if r["function"] == function
                and (sandbox is None or r["sandbox"] == sandbox))


def cpu_share(host, client, function: str, seconds: float = 3.0) -> tuple[float, float]:
    """(the sandbox's share of a core, a control's share) over the same
    seconds. The control is the same burner in a sibling container whose
    quota (6 vCPUs) is more than the machine has: it shares the measured
    one's conditions (the same Docker cgroup parent, the same neighbours),
    so it shows what the machine had to give just then."""
    from concurrent.futures import ThreadPoolExecutor
    invoke(client, function, {"seconds": 0.1})              # warm sandboxes to measure
    invoke(client, CONTROL, {"seconds": 0.1})
    before, control_before = _sandbox_cpu(host, function), _sandbox_cpu(host, CONTROL)
    with ThreadPoolExecutor(1) as pool:
        control = pool.submit(invoke, client_for(host.endpoint), CONTROL, {"seconds": seconds})
        started = time.monotonic()
        invoke(client, function, {"seconds": seconds})
        wall = time.monotonic() - started
        control.result()
    after = _sandbox_cpu(host, function, before["sandbox"])
    control_after = _sandbox_cpu(host, CONTROL, control_before["sandbox"])
    control_share = (control_after["cpu_s"] - control_before["cpu_s"]) / seconds
    return (after["cpu_s"] - before["cpu_s"]) / wall, min(1.0, control_share)


def best_cpu_share(host, client, function: str, expected: float, attempts: int = 3) -> tuple[float, float]:
    """(share, control) of the measurement closest to the cap, of up to
    `attempts`, stopping once the share is at least 70 % of what the
    machine could give it (the cap, or less when the control shows the
    machine busy). Other load can only take CPU away from the burner, never
    give it more than its quota, so a cap that lets too much through fails
    in every measurement, whatever the neighbours do."""
    runs = []
    for _ in range(attempts):
        runs.append(cpu_share(host, client, function))
        share, control = runs[-1]
        if share >= 0.7 * expected * control:
            break
    return max(runs, key=lambda r: r[0] / r[1])


def test_cpu_share_at_128_mb_is_128_of_1769_of_a_core(lambda_client, host):
    expected = 128 / 1769
    share, control = best_cpu_share(host, lambda_client, "py-burn-128", expected)
    assert 0.7 * expected * control <= share <= 1.3 * expected, \
        f"{share:.3f} of a core, expected {expected:.3f} +-30% (the control had {control:.2f} of a core)"


def test_cpu_share_at_1769_mb_is_about_one_core(lambda_client, host):
    share, control = best_cpu_share(host, lambda_client, "py-burn-1769", 1.0)
    assert 0.7 * control <= share <= 1.05, f"{share:.3f} of a core (the control had {control:.2f} of a core)"


# --- /tmp and pids --------------------------------------------------------------------
def test_tmp_is_limited_to_ephemeral_storage(lambda_client):
    _, body = invoke(lambda_client, "py-limits", {"limit_mb": 700})
    assert body["error"] == "ENOSPC"
    assert 480 <= body["written_mb"] <= 512


def test_threads_and_processes_are_limited(lambda_client):
    _, body = invoke(lambda_client, "py-threads", {"max": 1500})
    assert body["error"] is not None and "thread" in body["error"]
    assert 900 <= body["threads_started"] < 1024


# --- the host's view --------------------------------------------------------------------
def test_ps_shows_memory_cpu_and_the_hosts_own_use(lambda_client, host):
    invoke(lambda_client, "hello-python", {})
    view = ps(host)
    assert view["host"]["rss_mb"] > 10 and view["host"]["cpu_s"] > 0 and view["host"]["pid"] == host.pid
    row = next(r for r in view["sandboxes"] if r["function"] == "hello-python")
    assert 1 < row["memory_now_mb"] <= row["memory_peak_mb"] <= 128 == row["memory_mb"]
    assert row["cpu_s"] > 0
    table = subprocess.run([RUNTIME_HOST, "ps", "--endpoint-url", host.endpoint], capture_output=True, text=True).stdout
    assert "MEM MB" in table and "PEAK MB" in table and "CPU S" in table


# --- billing --------------------------------------------------------------------------------
def test_report_line_bills_init_and_rounds_up(lambda_client):
    resp, _ = invoke(lambda_client, "py-short-ttl", {"action": "print", "lines": ["x"]}, LogType="Tail")
    report = report_of(resp)
    fields = dict(f.split(": ", 1) for f in report.rstrip("\t").split("\t")[1:])
    duration = float(fields["Duration"].removesuffix(" ms"))
    billed = int(fields["Billed Duration"].removesuffix(" ms"))
    init = float(fields.get("Init Duration", "0 ms").removesuffix(" ms"))
    import math
    assert billed == math.ceil(duration + init)


def ledger_rows(state_dir) -> list[tuple]:
    conn = sqlite3.connect(state_dir / "ledger.sqlite3")
    try:
        return conn.execute("SELECT request_id, function, outcome, cold, billed_ms, gb_s, cost_usd "
                            "FROM invocations").fetchall()
    finally:
        conn.close()


def test_ledger_holds_every_answered_invocation_after_kill_9(functions_dir, tmp_path):
    state = tmp_path / "state"
    first = start_host(functions_dir, state)
    answered = {}
    try:
        client = client_for(first.endpoint)
        for i in range(12):
            resp, _ = invoke(client, "hello-python", {"i": i})
            answered[resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]] = "success"
        for _ in range(3):
            resp, _ = invoke(client, "py-probe", {"action": "raise"})
            answered[resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]] = "function_error"
        resp, _ = invoke(client, "py-probe", {"action": "exit", "code": 2})
        answered[resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]] = "crash"
    finally:
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
    second = start_host(functions_dir, state)
    try:
        rows = ledger_rows(state)
        assert len(rows) == len(answered) == 16, "exactly one record per answered invocation"
        assert {r[0]: r[2] for r in rows} == answered
        assert sum(r[3] for r in rows if r[1] == "hello-python") == 1, "one cold start"
        assert all(r[4] >= 1 and r[5] > 0 and r[6] > 0 for r in rows)
        # the restarted host appends to the same ledger
        invoke(client_for(second.endpoint), "hello-python", {})
    finally:
        stop_host(second)
    assert len(ledger_rows(state)) == 17
    assert containers_of_host(first.pid) == [] and containers_of_host(second.pid) == []

    report = subprocess.run([RUNTIME_HOST, "billing", "--state-dir", str(state), "--format", "json"],
                            capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    rows = {r["function"]: r for r in json.loads(report.stdout)}
    assert rows["hello-python"]["invocations"] == 13 and rows["hello-python"]["errors"] == 0
    assert rows["py-probe"]["invocations"] == 4 and rows["py-probe"]["errors"] == 4
    assert rows["py-probe"]["crash"] == 1 and rows["py-probe"]["function_error"] == 3
    assert rows["TOTAL"]["invocations"] == 17 and rows["TOTAL"]["cost_usd"] > 0
    table = subprocess.run([RUNTIME_HOST, "billing", "--state-dir", str(state), "--function", "hello-python"],
                           capture_output=True, text=True).stdout
    assert "hello-python" in table and "py-probe" not in table.replace("TOTAL", "")


def serve_with_prices(functions_dir, tmp_path, text: str) -> tuple[subprocess.CompletedProcess, object]:
    prices = tmp_path / "prices.toml"
    prices.write_text(text)
    result = subprocess.run([RUNTIME_HOST, "serve", "--functions", str(functions_dir), "--port", "1",
                             "--prices", str(prices), "--state-dir", str(tmp_path / "s")],
                            capture_output=True, text=True, timeout=60)
    return result, prices


def test_price_table_that_does_not_parse_stops_the_host_naming_the_line(functions_dir, tmp_path):
    result, prices = serve_with_prices(functions_dir, tmp_path,
                                       "[x86_64]\ngb_second_usd = 0.0000166667\nrequest_usd = = 0.0000002\n")
    assert result.returncode != 0
    assert str(prices) in result.stderr and "line 3" in result.stderr


def test_price_table_missing_a_price_names_it(functions_dir, tmp_path):
    result, _ = serve_with_prices(functions_dir, tmp_path, "[x86_64]\ngb_second_usd = 0.0000166667\n"
                                  "request_usd = 0.0000002\n[arm64]\ngb_second_usd = -1\n")
    assert result.returncode != 0
    assert "[arm64] gb_second_usd = -1" in result.stderr
