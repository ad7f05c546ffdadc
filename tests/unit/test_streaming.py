"""Response streaming (spec §2) below the engine: a fake container's runtime
posts a chunked body with raw bytes (trailers included, which no Python HTTP
client sends), and the caller reads the host's ResponseStream; the event
stream framing is checked with botocore's own parser."""
from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import asdict

from botocore.eventstream import EventStreamBuffer

from runtime_host.api.invoke_api import buffered, events
from runtime_host.core.protocol import MAX_RESPONSE_BYTES
from runtime_host.store.ledger import read_records
from runtime_host.core.streaming import (STREAM_BURST_BYTES, STREAM_RATE_BYTES_PER_S, StreamEnd, TokenBucket,
                                         invoke_complete, payload_chunk)
from tests.unit.fakehost import fake_host, function
from tests.unit.test_invoke_api_fake import invoke_api
from tests.unit.test_runtime_api_routes import WAIT_S, Rt, answers, scripted

TRAILERS = b"Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n"


class StreamingPost:
    """A runtime's streaming POST, written by hand from the container's address."""

    def __init__(self, process, request_id: str):
        self.process, self.request_id = process, request_id

    async def open(self, content_type: str = "text/plain") -> "StreamingPost":
        host, port = self.process.runtime_api.rsplit(":", 1)
        self.reader, self.writer = await asyncio.open_connection(
            host, int(port), local_addr=(self.process.container.address, 0))
        self.writer.write(f"POST /2018-06-01/runtime/invocation/{self.request_id}/response HTTP/1.1\r\n"
                          f"Host: {self.process.runtime_api}\r\nContent-Type: {content_type}\r\n"
                          "Lambda-Runtime-Function-Response-Mode: streaming\r\n"
                          "Transfer-Encoding: chunked\r\n".encode() + TRAILERS + b"\r\n")
        await self.writer.drain()
        return self

    async def chunk(self, data: bytes) -> None:
        self.writer.write(b"%x\r\n%b\r\n" % (len(data), data))
        await self.writer.drain()

    async def end(self, trailers: dict[str, str] | None = None) -> tuple[int, bytes]:
        self.writer.write(b"0\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in (trailers or {}).items())
                          + b"\r\n")
        await self.writer.drain()
        return await self.answer()

    async def answer(self) -> tuple[int, bytes]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), WAIT_S)
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        body = await self.reader.readexactly(length)
        self.writer.close()
        return int(head.split(b" ")[1]), body


def streaming_runtime(steps):
    """A scripted runtime that fetches one event and runs `steps(post)`."""
    async def script(rt: Rt):
        event = await rt.next()
        post = await StreamingPost(rt.process, event.headers["Lambda-Runtime-Aws-Request-Id"]).open()
        return await steps(post)
    return scripted(script)


async def read_all(outcome) -> bytes:
    return b"".join([data async for data in outcome.stream.chunks()])


async def test_the_caller_gets_each_chunk_while_the_runtime_is_still_writing():
    caller_has_first = asyncio.Event()

    async def steps(post):
        await post.chunk(b"first ")
        await asyncio.wait_for(caller_has_first.wait(), WAIT_S)   # no more until the caller has read it
        await post.chunk(b"second")
        return await post.end()

    program, result = streaming_runtime(steps)
    async with fake_host(function(), program=program) as host:
        inv, outcome = await asyncio.wait_for(
            host.invoke(host.functions["fn"], b"{}", streaming_caller=True), WAIT_S)
        assert outcome.stream is not None and outcome.stream.content_type == "text/plain"
        chunks = outcome.stream.chunks()
        first = await asyncio.wait_for(chunks.__anext__(), WAIT_S)
        assert inv.responded_at is None, "the billed duration runs on while the stream does"
        caller_has_first.set()
        rest = b"".join([data async for data in chunks])
        status, body = await answers(result)
        await asyncio.wait_for(inv.reported, WAIT_S)
    assert (first, rest) == (b"first ", b"second")
    assert status == 202 and json.loads(body) == {"status": "OK"}
    assert outcome.stream.end == StreamEnd() and inv.stream_end == StreamEnd()
    assert inv.responded_at is not None and inv.failure is None


async def test_error_trailers_end_the_stream_with_the_runtimes_error():
    error = base64.b64encode(json.dumps({"errorType": "Error", "errorMessage": "boom"}).encode()).decode()

    async def steps(post):
        await post.chunk(b"partial")
        return await post.end({"Lambda-Runtime-Function-Error-Type": "Error",
                               "Lambda-Runtime-Function-Error-Body": error})

    program, result = streaming_runtime(steps)
    async with fake_host(function(), program=program) as host:
        inv, outcome = await asyncio.wait_for(
            host.invoke(host.functions["fn"], b"{}", streaming_caller=True), WAIT_S)
        body = await read_all(outcome)
        status, _ = await answers(result)
        records = await wait_for_ledger(host, inv.request_id)
    assert body == b"partial" and status == 202
    assert outcome.stream.end == StreamEnd("Error", "boom")
    assert records[0]["outcome"] == "function_error" and records[0]["error_type"] == "Error"


async def test_a_buffered_caller_of_a_streaming_runtime_gets_the_whole_body_or_its_error():
    async def steps(post):
        for part in (b"a", b"b", b"c"):
            await post.chunk(part)
        return await post.end()

    program, result = streaming_runtime(steps)
    async with fake_host(function(), program=program) as host:
        inv, outcome = await asyncio.wait_for(host.invoke(host.functions["fn"], b"{}"), WAIT_S)
        whole = await asyncio.wait_for(buffered(inv, outcome), WAIT_S)
        await answers(result)
    assert whole.body == b"abc" and whole.content_type == "text/plain" and not whole.is_error


async def test_a_stream_over_the_buffered_limit_is_cut_with_413_and_function_response_size_too_large():
    piece = b"x" * 1024 * 1024

    async def steps(post):
        try:
            for _ in range(7):                       # 7 MiB > 6,291,556 bytes
                await post.chunk(piece)
            return await post.end()
        except ConnectionError:                      # the host may close first; then read its answer
            return await post.answer()

    program, result = streaming_runtime(steps)
    async with fake_host(function(), program=program) as host:
        inv, outcome = await asyncio.wait_for(host.invoke(host.functions["fn"], b"{}"), WAIT_S)
        whole = await asyncio.wait_for(buffered(inv, outcome), WAIT_S)
        status, body = await answers(result)
    assert status == 413 and json.loads(body)["errorType"] == "RequestEntityTooLarge"
    assert whole.error_type == "Function.ResponseSizeTooLarge"
    assert f"maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)" in json.loads(whole.body)["errorMessage"]
    assert outcome.stream.delivered == MAX_RESPONSE_BYTES, "the caller got the bytes up to the limit, no more"


async def test_a_timeout_mid_stream_ends_the_stream_with_sandbox_timedout():
    async def steps(post):
        await post.chunk(b"started")
        await asyncio.Event().wait()                 # never ends: the function timeout does

    program, _ = streaming_runtime(steps)
    async with fake_host(function(timeout_s=1), program=program) as host:
        inv, outcome = await asyncio.wait_for(
            host.invoke(host.functions["fn"], b"{}", streaming_caller=True), WAIT_S)
        body = await asyncio.wait_for(read_all(outcome), WAIT_S)
        records = await wait_for_ledger(host, inv.request_id)
    assert body == b"started"
    assert outcome.stream.end.error_code == "Sandbox.Timedout"
    assert "timed out after 1.00 seconds" in outcome.stream.end.error_details
    assert records[0]["outcome"] == "timeout"


async def test_a_runtime_that_drops_its_connection_mid_stream_truncates_the_response():
    async def steps(post):
        await post.chunk(b"half")
        post.writer.close()                          # no last chunk
        return None

    program, result = streaming_runtime(steps)
    async with fake_host(function(), program=program) as host:
        inv, outcome = await asyncio.wait_for(
            host.invoke(host.functions["fn"], b"{}", streaming_caller=True), WAIT_S)
        body = await asyncio.wait_for(read_all(outcome), WAIT_S)
        await answers(result)
    assert body == b"half" and outcome.stream.end.error_code == "Runtime.TruncatedResponse"


async def test_a_caller_that_leaves_does_not_stop_the_function():
    async def steps(post):
        await post.chunk(b"one")
        await asyncio.sleep(0.05)
        await post.chunk(b"two" * 500_000)           # more than the buffer: dropped, not held
        return await post.end()

    program, result = streaming_runtime(steps)
    async with fake_host(function(), program=program) as host:
        inv, outcome = await asyncio.wait_for(
            host.invoke(host.functions["fn"], b"{}", streaming_caller=True), WAIT_S)
        stream = events(inv, outcome, with_tail=False)
        await asyncio.wait_for(stream.__anext__(), WAIT_S)   # the first PayloadChunk, then the caller goes
        await stream.aclose()
        status, _ = await answers(result)
        records = await wait_for_ledger(host, inv.request_id)
    assert outcome.stream.detached and status == 202
    assert records[0]["outcome"] == "success" and outcome.stream.size == 3 + 1_500_000


async def wait_for_ledger(host, request_id: str) -> list[dict]:
    for _ in range(100):
        records = [asdict(r) for r in read_records(host.state_dir) if r.request_id == request_id]
        if records:
            return records
        await asyncio.sleep(0.02)
    raise AssertionError(f"no ledger record for {request_id}")


# --- pure parts --------------------------------------------------------------------

def test_event_stream_messages_parse_with_botocores_own_parser():
    buffer = EventStreamBuffer()
    buffer.add_data(payload_chunk(b"hello \x00 world") + invoke_complete(StreamEnd("Error", "boom"), "dGFpbA=="))
    first, second = list(buffer)
    assert first.headers[":event-type"] == "PayloadChunk" and first.payload == b"hello \x00 world"
    assert second.headers[":event-type"] == "InvokeComplete"
    assert json.loads(second.payload) == {"ErrorCode": "Error", "ErrorDetails": "boom", "LogResult": "dGFpbA=="}
    assert all(m.headers[":message-type"] == "event" for m in (first, second))


def test_the_token_bucket_lets_the_burst_through_then_paces_at_the_rate():
    bucket = TokenBucket()
    assert bucket.delay(STREAM_BURST_BYTES, now=0.0) == 0.0
    assert bucket.delay(STREAM_RATE_BYTES_PER_S, now=0.0) == 1.0      # a second's worth: a second's wait
    bucket = TokenBucket()
    bucket.delay(STREAM_BURST_BYTES, now=0.0)
    assert bucket.delay(STREAM_RATE_BYTES_PER_S // 2, now=0.5) == 0.0  # refilled meanwhile


# --- InvokeWithResponseStream over HTTP ------------------------------------------------

STREAM_PATH = "/2021-11-15/functions/fn/response-streaming-invocations"


def parsed(body: bytes) -> list[tuple[str, bytes]]:
    buffer = EventStreamBuffer()
    buffer.add_data(body)
    return [(m.headers[":event-type"], m.payload) for m in buffer]


async def test_a_buffered_function_answers_invoke_with_response_stream_in_one_chunk():
    async with invoke_api(function()) as (_, http):
        async with http.post(STREAM_PATH, data=json.dumps({"echo": {"a": 1}})) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "application/json"
            assert r.headers["X-Amz-Executed-Version"] == "$LATEST"
            events_seen = parsed(await r.read())
        async with http.post(STREAM_PATH, data=json.dumps({"error": "MyError"}),
                             headers={"X-Amz-Log-Type": "Tail"}) as r:
            failed = parsed(await r.read())
        async with http.post(STREAM_PATH, data=b"{}", headers={"X-Amz-Invocation-Type": "Event"}) as r:
            refused = (r.status, await r.json())
    assert events_seen == [("PayloadChunk", b'{"a": 1}'), ("InvokeComplete", b"{}")]
    assert [name for name, _ in failed] == ["InvokeComplete"]
    complete = json.loads(failed[0][1])
    assert complete["ErrorCode"] == "MyError" and complete["ErrorDetails"] == "failed"
    assert "REPORT RequestId" in base64.b64decode(complete["LogResult"]).decode()
    assert refused[0] == 400 and "RequestResponse, DryRun" in refused[1]["message"]


async def test_a_stream_over_the_streaming_cap_is_cut_with_function_response_size_too_large(monkeypatch):
    # Lambda's cap is 200 MB, which at 2 MiB/s takes 100 s to reach: the
    # rule is the same at a smaller cap.
    monkeypatch.setattr("runtime_host.api.runtime_api.STREAM_MAX_BYTES", 1000)

    async def steps(post):
        await post.chunk(b"y" * 600)
        try:
            await post.chunk(b"y" * 600)
            return await post.end()
        except ConnectionError:
            return await post.answer()

    program, result = streaming_runtime(steps)
    async with invoke_api(function(), program=program) as (_, http):
        async with http.post(STREAM_PATH, data=b"{}") as r:
            seen = parsed(await r.read())
        status, body = await answers(result)
    assert status == 413 and json.loads(body)["errorType"] == "RequestEntityTooLarge"
    assert b"".join(p for name, p in seen if name == "PayloadChunk") == b"y" * 1000
    complete = json.loads(seen[-1][1])
    assert complete == {"ErrorCode": "Function.ResponseSizeTooLarge", "ErrorDetails":
                        "Response payload size (1200 bytes) exceeded maximum allowed payload size (1000 bytes)."}
