"""The Invoke API over a real Host on the fake backend: what a caller sees,
over real HTTP on loopback, without a container engine."""
from __future__ import annotations

import asyncio
import base64
import json


from runtime_host.core.states import SandboxState
from tests.unit.fakehost import function, settle, invoke_api

BASE = "/2015-03-31/functions"


async def test_get_function_reports_the_functions_own_architecture():
    async with invoke_api(function("arm", architecture="arm64"), function("x86")) as (_, http):
        async with http.get(f"{BASE}/arm") as r:
            assert (await r.json())["Configuration"]["Architectures"] == ["arm64"]
        async with http.get(f"{BASE}/x86/configuration") as r:
            assert (await r.json())["Architectures"] == ["x86_64"]


async def test_a_sync_invoke_answers_the_runtimes_response_with_the_log_tail():
    async with invoke_api(function()) as (_, http):
        async with http.post(f"{BASE}/fn/invocations", data=json.dumps({"print": "hi", "echo": {"k": 1}}),
                             headers={"X-Amz-Log-Type": "Tail"}) as r:
            assert r.status == 200 and await r.json() == {"k": 1}
            assert r.headers["X-Amz-Executed-Version"] == "$LATEST"
            tail = base64.b64decode(r.headers["X-Amz-Log-Result"]).decode()
        assert "hi\n" in tail and tail.splitlines()[-1].startswith("REPORT RequestId: ")


async def test_a_function_error_is_200_with_x_amz_function_error():
    async with invoke_api(function()) as (_, http):
        async with http.post(f"{BASE}/fn/invocations", data=json.dumps({"error": "Function.Boom"})) as r:
            assert r.status == 200 and r.headers["X-Amz-Function-Error"] == "Unhandled"
            assert (await r.json())["errorType"] == "Function.Boom"


async def test_beyond_reserved_concurrency_the_caller_gets_429_with_the_reason():
    async with invoke_api(function(reserved_concurrency=1)) as (host, http):
        busy = asyncio.create_task(http.post(f"{BASE}/fn/invocations", data=json.dumps({"sleep_s": 0.3})))
        pool = host.scheduler.pools["fn"]
        await settle(host, until=lambda: any(s.state is SandboxState.BUSY for s in pool.sandboxes.values()))
        async with http.post(f"{BASE}/fn/invocations", data=b"{}") as r:
            assert r.status == 429 and r.headers["x-amzn-ErrorType"] == "TooManyRequestsException"
            assert (await r.json())["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
        (await busy).release()


async def test_an_event_invoke_is_accepted_at_once_and_runs_in_the_background():
    async with invoke_api(function()) as (host, http):
        async with http.post(f"{BASE}/fn/invocations", data=json.dumps({"print": "from the event"}),
                             headers={"X-Amz-Invocation-Type": "Event"}) as r:
            assert r.status == 202
        await settle(host, until=lambda: "from the event" in (host.sink.log_dir / "fn.log").read_text()
                     if (host.sink.log_dir / "fn.log").exists() else False)


async def test_an_engine_that_cannot_create_containers_is_a_service_exception_naming_it():
    async with invoke_api(function()) as (host, http):
        host.fake.fail_create = "cannot reach the Docker engine"
        async with http.post(f"{BASE}/fn/invocations", data=b"{}") as r:
            assert r.status == 500 and r.headers["x-amzn-ErrorType"] == "ServiceException"
            assert "cannot reach the Docker engine" in (await r.json())["message"]


async def test_a_deeply_nested_payload_is_invalid_request_content_not_a_server_error():
    async with invoke_api(function()) as (_, http):
        async with http.post(f"{BASE}/fn/invocations", data=b"[" * 100_000) as r:
            assert r.status == 400 and r.headers["x-amzn-ErrorType"] == "InvalidRequestContentException"
            assert "nested too deeply" in (await r.json())["message"]


async def test_a_gzip_body_that_does_not_decode_is_400_at_once():
    async with invoke_api(function()) as (_, http):
        for encoding in ("gzip", "deflate"):
            async with http.post(f"{BASE}/fn/invocations", data=b"not compressed",
                                 headers={"Content-Encoding": encoding}) as r:
                assert r.status == 400
                assert f"Can not decode content-encoding: {encoding}" in await r.text()


async def test_an_idle_connection_is_closed_and_a_stalled_body_gets_408():
    async with invoke_api(function(), timeouts={"idle_timeout_s": 0.2, "body_timeout_s": 0.2}) as (host, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", host.invoke_api_port)
        assert await asyncio.wait_for(reader.read(), 5) == b""          # closed by the server, nothing sent
        writer.close()

        reader, writer = await asyncio.open_connection("127.0.0.1", host.invoke_api_port)
        writer.write(b"POST /2015-03-31/functions/fn/invocations HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 100\r\n\r\n{\"partial\": ")
        answer = await asyncio.wait_for(reader.read(), 5)
        assert answer.startswith(b"HTTP/1.1 408 ")
        writer.close()


async def test_a_kept_alive_connection_in_use_is_not_closed_between_requests_that_come_in_time():
    async with invoke_api(function(), timeouts={"idle_timeout_s": 0.5}) as (host, http):
        for _ in range(3):
            async with http.post(f"{BASE}/fn/invocations", data=json.dumps({"echo": 1})) as r:
                assert r.status == 200
            await asyncio.sleep(0.1)
