"""Event invocations below the engine: the durable queue, Lambda's retries,
destinations, and the 202's request id being the invocation's own."""
from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from runtime_host.core.async_invoke import AsyncConfig, Destination
from runtime_host.host import Host
from runtime_host.backend.fake import FakeBackend
from runtime_host.store.event_queue import read_events
from runtime_host.store.ledger import read_records
from tests.unit.fakehost import ScriptedRuntime, fake_host, function, settle
from tests.unit.test_invoke_api_fake import BASE, invoke_api

WAIT_S = 5.0
SCALE = 0.001          # Lambda's 60 s and 120 s become 60 ms and 120 ms


async def test_the_202_request_id_is_the_one_the_function_its_log_and_the_ledger_show():
    async with invoke_api(function(), async_retry_scale=SCALE) as (host, http):
        async with http.post(f"{BASE}/fn/invocations", data=json.dumps({"print": "hi"}),
                             headers={"X-Amz-Invocation-Type": "Event"}) as r:
            assert r.status == 202
            request_id = r.headers["x-amzn-RequestId"]
        await settle(host, until=lambda: any(e.state == "done" for e in read_events(host.state_dir)), timeout_s=WAIT_S)
        await settle(host, until=lambda: any(rec.request_id == request_id for rec in read_records(host.state_dir)),
                     timeout_s=WAIT_S)
        await settle(host, until=lambda: "REPORT" in host.log_path("fn").read_text(), timeout_s=WAIT_S)
        log = host.log_path("fn").read_text()
    assert f"START RequestId: {request_id}" in log and f"REPORT RequestId: {request_id}" in log


async def test_a_function_error_is_retried_twice_then_goes_to_the_on_failure_folder():
    folder = Path(tempfile.mkdtemp(prefix="rh-unit-dest-"))
    fn = function(async_invoke=AsyncConfig(on_failure=Destination("folder", str(folder))))
    async with fake_host(fn, async_retry_scale=SCALE) as host:
        request_id = await host.invoke_async(host.functions["fn"], b'{"error": "Function.Boom"}')
        await settle(host, until=lambda: list(folder.glob("*.json")), timeout_s=WAIT_S)
        starts = host.log_path("fn").read_text().count(f"START RequestId: {request_id}")
    record = json.loads(next(folder.glob("*.json")).read_text())
    assert starts == 3, "the first try and Lambda's two retries, under one request id"
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestPayload"] == {"error": "Function.Boom"}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert record["responsePayload"]["errorType"] == "Function.Boom"
    assert [e.state for e in read_events(host.state_dir)] == ["failed"]


async def test_maximum_retry_attempts_zero_means_one_try_and_a_success_goes_to_a_destination_function():
    fn = function(async_invoke=AsyncConfig(maximum_retry_attempts=0, on_success=Destination("function", "sink")))
    sink = function("sink")
    async with fake_host(fn, sink, async_retry_scale=SCALE) as host:
        failing = await host.invoke_async(host.functions["fn"], b'{"error": "Function.Boom"}')
        passing = await host.invoke_async(host.functions["fn"], b'{"echo": {"ok": 1}}')
        await settle(host, until=lambda: any(r.function == "sink" for r in read_records(host.state_dir)),
                     timeout_s=WAIT_S)
        await settle(host, until=lambda: all(e.state in ("done", "failed") for e in read_events(host.state_dir)),
                     timeout_s=WAIT_S)
        log = host.log_path("fn").read_text()
        states = {e.request_id: (e.state, e.attempts) for e in read_events(host.state_dir)}
    assert log.count(f"START RequestId: {failing}") == 1, "no retry"
    assert states[failing] == ("failed", 1) and states[passing] == ("done", 1)


async def test_events_accepted_by_a_host_that_died_are_delivered_by_the_next_one():
    state = Path(tempfile.mkdtemp(prefix="rh-unit-state-"))
    fn = function()
    stuck = asyncio.Event()

    async def hangs(process):
        await stuck.wait()                       # the first host's runtime never answers
        return 0

    first = Host({"fn": fn}, state_dir=state, echo_logs=False, backend=FakeBackend(hangs), runtime_api_port=0,
                 stem_cells=0, async_retry_scale=SCALE)
    await first.start()
    accepted = [await first.invoke_async(fn, json.dumps({"n": i}).encode()) for i in range(5)]
    await settle(first, until=lambda: any(e.state == "running" for e in read_events(state)), timeout_s=WAIT_S)
    # kill -9: nothing is stopped, written back or drained; the queue's file is all that is left.
    await first.async_delivery.stop_taking()
    for task in list(first.async_delivery._running):
        task.cancel()
    first.event_queue._thread.shutdown(wait=True, cancel_futures=True)
    first.backend = None

    runtime = ScriptedRuntime()
    backend = FakeBackend(runtime)
    runtime.backend = backend
    second = Host({"fn": fn}, state_dir=state, echo_logs=False, backend=backend, runtime_api_port=0, stem_cells=0,
                  async_retry_scale=SCALE)
    await second.start()
    try:
        await settle(second, until=lambda: sum(e.state == "done" for e in read_events(state)) == 5, timeout_s=WAIT_S)
        ran = {r.request_id for r in read_records(state)}
    finally:
        await second.stop()
    assert set(accepted) <= ran


async def test_event_invoke_config_refuses_values_out_of_range_naming_them():
    async with invoke_api(function()) as (_, http):
        url = "/2019-09-25/functions/fn/event-invoke-config"
        async with http.put(url, json={"MaximumRetryAttempts": 5}) as r:
            bad_retries = (r.status, await r.json())
        async with http.put(url, json={"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:x"}}}) as r:
            bad_destination = (r.status, await r.json())
        async with http.get(url) as r:
            missing = r.status
        async with http.put(url, json={"MaximumEventAgeInSeconds": 120}) as r:
            put = await r.json()
        async with http.post(url, json={"MaximumRetryAttempts": 1}) as r:
            updated = await r.json()
    assert bad_retries[0] == 400 and "MaximumRetryAttempts must be a whole number from 0 to 2" in bad_retries[1]["message"]
    assert bad_destination[0] == 400 and "SQS, SNS and EventBridge destinations are not served" in bad_destination[1]["message"]
    assert missing == 404
    assert put["MaximumEventAgeInSeconds"] == 120 and put["MaximumRetryAttempts"] == 2
    assert updated["MaximumEventAgeInSeconds"] == 120 and updated["MaximumRetryAttempts"] == 1, "update keeps the rest"
