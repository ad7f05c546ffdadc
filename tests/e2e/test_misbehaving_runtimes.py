"""Runtimes that break the Runtime API's rules, each on the real engine
(issue 16): the host answers each with the error Lambda gives, keeps every
other invocation's answer its own, and keeps serving. The runtime is
tests/functions/sh-misbehave (bash + curl), steered by its event. Cases
tested elsewhere are listed in RELIABILITY.md with the test that proves them."""
from __future__ import annotations

import json
import re
import threading
import time

from runtime_host.store.ledger import read_records
from tests.conftest import client_for, containers_of_host, invoke, start_host, stop_host

FN = "sh-misbehave"
SOLO = "sh-misbehave-solo"      # the same bootstrap, one sandbox at most


def rid_of(resp) -> str:
    return resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]


def invoke_when_free(client, name: str, event, **kwargs) -> tuple[dict, object]:
    """invoke, again while it is throttled: a one-sandbox function's bash runtime may take
    longer than the pool's 0.25 s wait for a returning sandbox (RETURNING_WAIT_S) to be
    back in GET next on a busy machine; each try is a whole invocation, none is lost."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return invoke(client, name, event, **kwargs)
        except client.exceptions.TooManyRequestsException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def still_serving(client) -> None:
    resp, body = invoke_when_free(client, FN, {"do": "echo", "k": "v"})
    assert "FunctionError" not in resp, body
    assert body == {"do": "echo", "k": "v"}


def log_line(host, start: str, function: str = FN) -> str:
    """The function's first log line starting so (output reaches the log just after the answer)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [l for l in host.log_of(function).splitlines() if l.startswith(start)]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no line starting {start!r} in the log")


def block_of(host, rid: str) -> str:
    """This invocation's lines in the function's log, START to REPORT."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = host.log_of(FN)
        m = re.search(rf"START RequestId: {rid}.*?REPORT RequestId: {rid}[^\n]*", text, re.DOTALL)
        if m:
            return m.group(0)
        time.sleep(0.1)
    raise AssertionError(f"no START..REPORT for {rid} in the log")


def test_calling_next_twice_at_once_gives_both_the_next_event_and_it_is_answered_once(lambda_client, host):
    """As RAPID does (scheduler/sandbox.py, next_invocation): every pending GET next of a
    sandbox gets the next event; the runtime's answer ends it, a second would be refused."""
    resp, body = invoke_when_free(lambda_client, SOLO, {"do": "next-twice"})
    assert body == "answered"
    resp, body = invoke_when_free(lambda_client, SOLO, {"do": "echo", "after": "next-twice"})
    assert body == {"do": "echo", "after": "next-twice"}
    line = log_line(host, "next-twice: codes", SOLO)
    assert line.startswith("next-twice: codes 200 200; bodies "), line
    first, second = line.split("bodies ")[1].split(" | ")
    assert first == second == '{"do": "echo", "after": "next-twice"}', line
    records = [r for r in read_records(host.state_dir, function=SOLO) if r.request_id == rid_of(resp)]
    assert len(records) == 1 and records[0].outcome == "success", records


def test_answering_another_sandboxs_request_id_is_refused(lambda_client, host):
    result = {}
    slow = threading.Thread(target=lambda: result.update(
        zip(("resp", "body"), invoke(lambda_client, "py-probe", {"action": "sleep", "seconds": 2}))))
    slow.start()
    deadline = time.monotonic() + 10
    live_id = None
    while live_id is None and time.monotonic() < deadline:
        text = host.log_of("py-probe")
        running = set(re.findall(r"START RequestId: (\S+)", text)) - set(re.findall(r"END RequestId: (\S+)", text))
        live_id = running.pop() if running else None
        time.sleep(0.05)
    assert live_id, "the slow invocation started"
    resp, body = invoke(lambda_client, FN, {"do": "steal", "id": live_id})
    slow.join(timeout=30)
    assert 400 <= body["steal_status"] < 500, body
    assert "errorType" in body["steal_body"], body
    assert "FunctionError" not in result["resp"]
    assert result["body"]["request_id"] == live_id
    assert result["body"]["event"] == {"action": "sleep", "seconds": 2}, "its own sandbox answered it"


def test_a_ten_mb_response_is_413_to_the_runtime_and_response_size_too_large_to_the_caller(lambda_client, host):
    resp, body = invoke(lambda_client, FN, {"do": "big"})
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Function.ResponseSizeTooLarge", body
    block = block_of(host, rid_of(resp))
    assert "big response: status 413" in block, block
    still_serving(lambda_client)


def raw_invoke(client, name: str, event) -> tuple[dict, bytes]:
    resp = client.invoke(FunctionName=name, Payload=json.dumps(event))
    return resp, resp["Payload"].read()


def test_an_error_body_that_is_not_json_reaches_the_caller_as_it_is(lambda_client, host):
    """RAPID forwards an error body as it came (spec §2, error headers), with the
    function error header; the runtime gets its 202."""
    resp, body = raw_invoke(lambda_client, FN, {"do": "bad-error"})
    assert resp["FunctionError"] == "Unhandled"
    assert body == b"this is not { json"
    block = block_of(host, rid_of(resp))
    assert "bad error body: status 202" in block, block
    still_serving(lambda_client)


def test_an_error_cause_body_that_is_not_json_is_invalid_error_body(lambda_client, host):
    """With Content-Type application/vnd.aws.lambda.error.cause+json, a body that is not
    JSON reaches the caller as the JSON string "Invalid error body" (spec §2)."""
    resp, body = raw_invoke(lambda_client, FN, {"do": "bad-cause"})
    assert resp["FunctionError"] == "Unhandled"
    assert body == b'"Invalid error body"'
    assert "bad error body: status 202" in block_of(host, rid_of(resp))
    still_serving(lambda_client)


def test_exit_0_mid_invocation_is_runtime_exit_error(lambda_client):
    resp, body = invoke(lambda_client, FN, {"do": "exit0"})
    assert resp["FunctionError"] == "Unhandled"
    assert body == {"errorType": "Runtime.ExitError",
                    "errorMessage": f"RequestId: {rid_of(resp)} Error: Runtime exited without providing a reason"}
    still_serving(lambda_client)


def test_a_child_process_left_running_neither_holds_the_answer_nor_is_killed_between_invocations(lambda_client):
    resp, started = invoke_when_free(lambda_client, SOLO, {"do": "child"})
    assert "FunctionError" not in resp, started
    resp, checked = invoke_when_free(lambda_client, SOLO, {"do": "child-check"})
    assert checked == {"child": started["child"], "alive": True}, (started, checked)


def test_a_runtime_ignoring_sigterm_does_not_stop_the_host_from_stopping_cleanly(functions_dir, tmp_path):
    """The host ends a sandbox with SIGTERM, then SIGKILL after its grace; a runtime that
    traps SIGTERM is killed all the same and nothing is left behind."""
    extra = start_host(functions_dir, tmp_path / "ignore-term")
    try:
        client = client_for(extra.endpoint)
        resp, body = invoke_when_free(client, SOLO, {"do": "ignore-term"})
        assert body == "ignoring SIGTERM"
    finally:
        stop_host(extra)
    assert extra.proc.returncode == 0, extra.stderr()
    assert containers_of_host(extra.pid) == []


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_100_mb_of_output_in_one_invocation_keeps_host_memory_bounded_and_goes_whole_to_the_log(functions_dir, tmp_path):
    """Output goes to the function's log file as it comes; the host keeps only the last
    4 KB (for Tail) and one source's unfinished line (at most 256 KB). The log is not cut:
    every byte is in <state>/logs/<function>.log."""
    extra = start_host(functions_dir, tmp_path / "flood")
    try:
        client = client_for(extra.endpoint)
        invoke(client, SOLO, {"do": "echo"})
        before = rss_mb(extra.pid)
        resp, body = invoke_when_free(client, SOLO, {"do": "flood"}, LogType="Tail")
        after = rss_mb(extra.pid)
        assert body == "flooded"
        assert "FunctionError" not in resp
        assert len(resp["LogResult"]) <= 4096 * 4 // 3 + 4, "the tail is the last 4 KB"
        log = extra.state_dir / "logs" / f"{SOLO}.log"
        assert log.stat().st_size >= 100 * 1024 * 1024
        with open(log, "rb") as f:
            lines = sum(1 for line in f if line == b"f" * 1023 + b"\n")
        assert lines == 100 * 1024 * 1024 // 1024, "every 1 KB line whole in the log"
        # 100 MB went through: growth well under that means it was not held.
        assert after - before < 20, (before, after)
    finally:
        stop_host(extra)
    assert extra.proc.returncode == 0, extra.stderr()


def test_ten_thousand_connections_to_the_runtime_api_leave_the_host_serving(lambda_client, host):
    """The sandbox's nofile limit (1,024) caps one process; the bootstrap opens them from 10
    processes. Whatever it got, the host answers this invocation and others meanwhile."""
    result = {}
    flood = threading.Thread(target=lambda: result.update(
        zip(("resp", "body"), invoke(lambda_client, FN, {"do": "conns", "n": 10000}))))
    flood.start()
    time.sleep(1)
    resp, body = invoke(lambda_client, "hello-python", {"during": "conns"})
    assert "FunctionError" not in resp, body
    flood.join(timeout=120)
    assert "FunctionError" not in result["resp"], result
    opened = result["body"]["opened"]
    assert opened > 0, result
    still_serving(lambda_client)



def test_a_request_sent_byte_by_byte_is_read_whole_and_holds_no_one_else_up(lambda_client, host):
    """The Runtime API has no read timeout (a GET next waits as long as no event comes),
    so a request sent one byte at a time over 6 s is the same to it as over 60 s: each
    byte arrives long before anything would close the connection."""
    result = {}
    slow = threading.Thread(target=lambda: result.update(
        zip(("resp", "body"), invoke(lambda_client, FN, {"do": "dribble", "seconds": 6}))))
    slow.start()
    time.sleep(1)
    resp, body = invoke(lambda_client, "hello-python", {"during": "dribble"})
    assert "FunctionError" not in resp, body
    slow.join(timeout=120)
    assert result["body"] == {"dribbled": True, "padding": "0123456789"}, result
    assert "HTTP/1.1 202" in log_line(host, "dribbled ")
