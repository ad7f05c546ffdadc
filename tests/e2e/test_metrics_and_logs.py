"""What the host does, seen from outside against real sandboxes: GET /metrics
scraped after real invocations (parsed by prometheus_client's own parser),
and `runtime-host logs` showing every sandbox's lines as `aws logs tail` does.

The host here is the pytest plugin's `lambda_host` (runtime_host/pytest_plugin.py),
serving the folder chosen by overriding `lambda_functions_dir`, as a user's
conftest may."""
from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO, RUNTIME_HOST

STREAM = r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}"
# aws logs tail's detailed format: ISO timestamp (ms, UTC), stream name, message.
TAIL_LINE = re.compile(rf"^(\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}000\+00:00) ({STREAM}) (.*)$")


@pytest.fixture(scope="session")
def lambda_functions_dir(tmp_path_factory, docker_engine) -> Path:
    root = tmp_path_factory.mktemp("plugin-functions")
    (root / "hello-python").symlink_to(REPO / "examples" / "hello-python")
    (root / "py-slow-events").symlink_to(REPO / "tests" / "functions" / "py-slow-events")
    (root / "py-throttled").symlink_to(REPO / "tests" / "functions" / "py-throttled")
    (root / "py-probe").symlink_to(REPO / "tests" / "functions" / "py-probe")
    return root


def scrape(endpoint: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"{endpoint}/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=")
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def fv(name: str, **more) -> tuple:
    return tuple(sorted({"function": name, "version": "$LATEST", **more}.items()))


def logs(lambda_host, *args: str) -> list[tuple[str, str, str]]:
    out = subprocess.run([RUNTIME_HOST, "logs", *args, "--state-dir", str(lambda_host.state_dir)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    lines = out.splitlines()
    parsed = [TAIL_LINE.match(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed) if not m]
    return [m.groups() for m in parsed]


def test_the_fixture_serves_the_folder_and_gives_a_boto3_client(lambda_host):
    resp = lambda_host.client.invoke(FunctionName="hello-python", Payload=b'{"k": 1}')
    assert json.load(resp["Payload"])["message"] == "hello from python"


def test_metrics_after_real_invocations_count_each_with_lambdas_names(lambda_host):
    before = scrape(lambda_host.endpoint)
    for i in range(3):
        assert lambda_host.invoke("hello-python", {"i": i})["event"] == {"i": i}
    resp = lambda_host.client.invoke(FunctionName="py-slow-events", Payload=b'{"fail": true}')
    assert resp["FunctionError"] == "Unhandled"
    m = scrape(lambda_host.endpoint)

    def grew(name: str, fn: str) -> float:
        return m[(name, fv(fn))] - before.get((name, fv(fn)), 0)

    assert grew("lambda_Invocations_total", "hello-python") == 3
    assert grew("lambda_Duration_milliseconds_count", "hello-python") == 3
    assert grew("lambda_Errors_total", "hello-python") == 0
    assert grew("lambda_Errors_total", "py-slow-events") == 1
    assert m[("runtime_host_cold_starts_total", fv("hello-python"))] >= 1
    assert m[("runtime_host_init_duration_milliseconds_count", fv("hello-python"))] >= 1
    assert grew("runtime_host_billed_gb_seconds_total", "hello-python") > 0
    assert grew("runtime_host_cost_usd_total", "hello-python") > 0
    states = {dict(k)["state"]: v for (name, k), v in m.items()
              if name == "runtime_host_sandboxes" and dict(k)["function"] == "hello-python"}
    assert states["frozen"] + states["ready"] + states["busy"] >= 1
    assert any(name == "runtime_host_stem_cells_ready" for name, _ in m)
    assert ("lambda_AsyncEventsDropped_total", (("function", "hello-python"),)) in m


def test_freezes_thaws_and_throttles_show_in_metrics(lambda_host):
    lambda_host.invoke("hello-python", {})
    time.sleep(0.5)                     # past the freeze grace: the sandbox is frozen
    lambda_host.invoke("hello-python", {})
    m = scrape(lambda_host.endpoint)
    assert m[("runtime_host_freezes_total", fv("hello-python"))] >= 1
    assert m[("runtime_host_thaws_total", fv("hello-python"))] >= 1
    # py-throttled has reserved_concurrency = 0: Lambda refuses every invocation of it.
    with pytest.raises(lambda_host.client.exceptions.TooManyRequestsException):
        lambda_host.client.invoke(FunctionName="py-throttled", Payload=b"{}")
    m = scrape(lambda_host.endpoint)
    assert m[("lambda_Throttles_total", fv("py-throttled"))] == 1
    assert m[("lambda_Invocations_total", fv("py-throttled"))] == 0


def test_concurrent_executions_counts_invocations_in_progress(lambda_host):
    worker = threading.Thread(target=lambda_host.invoke, args=("py-slow-events", {"n": 0, "sleep_s": 3}))
    worker.start()
    deadline = time.monotonic() + 60
    while scrape(lambda_host.endpoint)[("lambda_ConcurrentExecutions", fv("py-slow-events"))] < 1:
        assert time.monotonic() < deadline, "the invocation never showed in ConcurrentExecutions"
        time.sleep(0.05)
    worker.join()
    deadline = time.monotonic() + 10
    while scrape(lambda_host.endpoint)[("lambda_ConcurrentExecutions", fv("py-slow-events"))] != 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_logs_show_every_sandboxs_lines_in_order_with_its_stream(lambda_host):
    # Two at once: two sandboxes, each its own stream.
    reports_before = sum(1 for e in lambda_host.logs("py-slow-events") if e.message.startswith("REPORT"))
    threads = [threading.Thread(target=lambda_host.invoke, args=("py-slow-events", {"n": n, "sleep_s": 1.0}))
               for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 10
    while sum(1 for e in lambda_host.logs("py-slow-events") if e.message.startswith("REPORT")) < reports_before + 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    lines = logs(lambda_host, "py-slow-events")
    handled = [(stream, msg) for _, stream, msg in lines if msg in ("handled event 1", "handled event 2")]
    assert {msg for _, msg in handled} == {"handled event 1", "handled event 2"}
    assert len({stream for stream, _ in handled}) == 2
    timestamps = [ts for ts, _, _ in lines]
    assert timestamps == sorted(timestamps)
    for stream, msg in handled:
        own = [m for _, s, m in lines if s == stream]
        i = own.index(msg)
        assert own[i - 1].startswith("START RequestId: ") and own[i + 1].startswith("END RequestId: ")
        assert own[i + 2].startswith("REPORT RequestId: ")


def test_logs_of_one_request_id_are_its_start_output_end_and_report(lambda_host):
    resp = lambda_host.client.invoke(FunctionName="hello-python", Payload=b"{}")
    request_id = resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    deadline = time.monotonic() + 10
    while not any(e.message.startswith("REPORT") for e in lambda_host.logs("hello-python", request_id)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    messages = [msg for _, _, msg in logs(lambda_host, "hello-python", "--request-id", request_id)]
    assert messages[0] == f"START RequestId: {request_id} Version: $LATEST"
    assert any(request_id in msg and msg.startswith("hello-python: invocation") for msg in messages)
    assert messages[-2] == f"END RequestId: {request_id}"
    assert messages[-1].startswith(f"REPORT RequestId: {request_id}\tDuration: ")


def test_a_sandboxs_stream_is_the_log_stream_name_it_sees(lambda_host):
    body = lambda_host.invoke("py-probe", {})
    stream = body["env"]["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert re.fullmatch(STREAM, stream)
    deadline = time.monotonic() + 10
    while not any(e.message.startswith("REPORT") for e in lambda_host.logs("py-probe", body["request_id"])):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert {e.stream for e in lambda_host.logs("py-probe", body["request_id"])} == {stream}


def test_logs_since_leaves_out_older_lines(lambda_host):
    lambda_host.invoke("hello-python", {})
    assert logs(lambda_host, "hello-python", "--since", "2099-01-01T00:00:00Z") == []
    assert logs(lambda_host, "hello-python", "--since", "1h")


def test_logs_follow_prints_new_lines_as_they_come(lambda_host):
    proc = subprocess.Popen([RUNTIME_HOST, "logs", "py-slow-events", "--follow", "--since", "1s",
                             "--state-dir", str(lambda_host.state_dir)], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)                  # older lines are out of --since; the follower is polling
        lambda_host.invoke("py-slow-events", {"n": 7, "sleep_s": 0.1})
        seen = []
        while not any(line.split(" ", 2)[-1].startswith("REPORT") for line in seen):
            seen.append(proc.stdout.readline().rstrip("\n"))
        assert all(TAIL_LINE.match(line) for line in seen), seen
        assert any(line.endswith(" handled event 7") for line in seen)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
