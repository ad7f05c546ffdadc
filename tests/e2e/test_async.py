"""Event invocations end to end: the durable queue survives kill -9 and
SIGTERM of the host, and the 202's request id is the invocation's own."""
from __future__ import annotations

import json
import os
import signal
import time

from tests.conftest import client_for, containers_of_host, docker, start_host, stop_host


def wait_until(predicate, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


def ledger_ids(state_dir) -> set[str]:
    from runtime_host.store.ledger import read_records
    try:
        return {r.request_id for r in read_records(state_dir, function="py-slow-events")}
    except Exception:                           # no ledger yet
        return set()


def send_events(client, count: int) -> list[str]:
    ids = []
    for n in range(count):
        resp = client.invoke(FunctionName="py-slow-events", InvocationType="Event",
                             Payload=json.dumps({"n": n, "sleep_s": 0.3}))
        assert resp["StatusCode"] == 202
        ids.append(resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"])
    return ids


def test_events_accepted_before_kill_9_run_after_the_restart_under_their_own_request_ids(functions_dir, tmp_path):
    state = tmp_path / "state"
    first = start_host(functions_dir, state, extra_args=["--async-retry-scale", "0.01"])
    ids = send_events(client_for(first.endpoint), 12)
    wait_until(lambda: ledger_ids(state), 30)    # a few ran; most wait in the queue
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait()
    left = containers_of_host(first.pid)
    if left:
        docker("rm", "-f", *left, check=False)
    ran_before = ledger_ids(state)
    assert len(ran_before) < 12, "the kill came while events were still queued"
    second = start_host(functions_dir, state, extra_args=["--async-retry-scale", "0.01"])
    try:
        assert wait_until(lambda: set(ids) <= ledger_ids(state), 90), sorted(set(ids) - ledger_ids(state))[:5]
    finally:
        stop_host(second)
    log = (state / "logs" / "py-slow-events.log").read_text()
    assert all(f"START RequestId: {i}" in log for i in ids), "each ran under the id its 202 gave"


def test_events_waiting_when_the_host_is_stopped_run_after_its_restart(functions_dir, tmp_path):
    state = tmp_path / "state"
    first = start_host(functions_dir, state, extra_args=["--async-retry-scale", "0.01", "--drain-timeout-s", "2"])
    ids = send_events(client_for(first.endpoint), 10)
    stop_host(first)                              # SIGTERM: a clean stop, events still queued
    assert first.proc.returncode == 0
    assert len(ledger_ids(state)) < 10
    second = start_host(functions_dir, state, extra_args=["--async-retry-scale", "0.01"])
    try:
        assert wait_until(lambda: set(ids) <= ledger_ids(state), 90)
    finally:
        stop_host(second)


def test_the_aws_cli_sets_retries_and_an_on_failure_destination_function(lambda_client, host, tmp_path):
    import subprocess
    from tests.conftest import DUMMY_AWS_ENV, VENV_BIN

    def aws(*args):
        done = subprocess.run([str(VENV_BIN / "aws"), "lambda", *args, "--endpoint-url", host.endpoint],
                              env={**os.environ, **DUMMY_AWS_ENV}, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else None

    sink_arn = "arn:aws:lambda:us-east-1:000000000000:function:py-echo-log"
    put = aws("put-function-event-invoke-config", "--function-name", "py-slow-events",
              "--maximum-retry-attempts", "0",
              "--destination-config", json.dumps({"OnFailure": {"Destination": sink_arn}}))
    assert put["MaximumRetryAttempts"] == 0 and put["DestinationConfig"]["OnFailure"]["Destination"] == sink_arn
    got = aws("get-function-event-invoke-config", "--function-name", "py-slow-events")
    assert got["MaximumEventAgeInSeconds"] == 21600 and got["FunctionArn"].endswith(":py-slow-events:$LATEST")
    try:
        resp = lambda_client.invoke(FunctionName="py-slow-events", InvocationType="Event",
                                    Payload=json.dumps({"fail": True, "n": 7}))
        request_id = resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
        sink_log = wait_until(lambda: request_id in host.log_of("py-echo-log") and host.log_of("py-echo-log"), 60)
        assert sink_log, "the destination function was invoked with the record"
        record = json.loads(next(line for line in sink_log.splitlines() if request_id in line).split("echo-log got ", 1)[1])
        assert record["requestContext"]["condition"] == "RetriesExhausted"
        assert record["requestPayload"] == {"fail": True, "n": 7}
        assert record["responsePayload"]["errorType"] == "RuntimeError"
        assert host.log_of("py-slow-events").count(f"START RequestId: {request_id}") == 1, "no retry"
    finally:
        aws("delete-function-event-invoke-config", "--function-name", "py-slow-events")
