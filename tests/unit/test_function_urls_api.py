"""Function URLs' HTTP surface (api/function_urls.py) over real HTTP on loopback,
with an invoker that answers as a runtime would: routing, errors, buffered and
streamed answers, without a container engine."""
from __future__ import annotations

import asyncio
import base64
import gzip
import json
import time
from contextlib import asynccontextmanager
from types import SimpleNamespace

import aiohttp

from runtime_host.api.function_urls import FunctionUrls
from runtime_host.core.http_events import HTTP_INTEGRATION_CONTENT_TYPE, UrlConfig
from runtime_host.core.invocation import Outcome
from runtime_host.core.protocol import MAX_SYNC_REQUEST_BYTES
from runtime_host.core.streaming import StreamEnd
from runtime_host.scheduler.context import Throttled
from runtime_host.scheduler.stream import ResponseStream
from tests.unit.fakehost import function


class Invoker:
    """The host as function URLs see it; `answer(event)` says what the invocation returns."""

    def __init__(self, *functions, answer):
        self.functions = {fn.name: fn for fn in functions}
        self.stopping = False
        self.answer = answer
        self.events: list[dict] = []
        self.streaming_callers: list[bool] = []

    async def invoke(self, fn, payload, *, trace_id=None, streaming_caller=False, request_id=None):
        event = json.loads(payload)
        self.events.append(event)
        self.streaming_callers.append(streaming_caller)
        result = self.answer(event)
        if isinstance(result, Exception):
            raise result
        # The host gives the invocation the id the event carries (Host.invoke's request_id).
        inv = SimpleNamespace(request_id=request_id or "req-42", failure=None)
        return inv, await result if asyncio.iscoroutine(result) else result


def ok(doc) -> Outcome:
    return Outcome(json.dumps(doc).encode())


def streamed(content_type: str, *parts, end: StreamEnd | None = None):
    """An outcome whose stream gets each part (bytes, or a pause in seconds) as a runtime would write it."""
    async def make():
        stream = ResponseStream(content_type, 200 << 20, shaped=False)

        async def write():
            for part in parts:
                if isinstance(part, (int, float)):
                    await asyncio.sleep(part)
                else:
                    await stream.write(part)
            stream.finish(end or StreamEnd())
        asyncio.ensure_future(write())
        return Outcome(b"", content_type=content_type, stream=stream)
    return make()


@asynccontextmanager
async def urls(invoker: Invoker):
    api = FunctionUrls(invoker)
    server = await api.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{api.port}") as http:
            yield api, http
    finally:
        server.close()


def host_of(name: str, api: FunctionUrls) -> dict:
    return {"Host": f"{name}.lambda-url.localhost:{api.port}"}


URL_FN = function("py-url", url=UrlConfig())


async def test_the_host_name_picks_the_function_and_the_path_is_the_raw_path():
    invoker = Invoker(URL_FN, answer=lambda e: ok({"statusCode": 200, "body": "hi"}))
    async with urls(invoker) as (api, http):
        async with http.get("/a/b?x=1", headers=host_of("py-url", api)) as r:
            assert r.status == 200 and await r.text() == "hi"
            request_id = r.headers["x-amzn-RequestId"]
    event = invoker.events[0]
    # One id: the event's requestContext.requestId is the invocation's, the one the response carries.
    assert event["requestContext"]["requestId"] == request_id and len(request_id) == 36
    assert event["rawPath"] == "/a/b" and event["rawQueryString"] == "x=1"
    assert event["requestContext"]["domainName"] == "py-url.lambda-url.localhost"
    assert event["requestContext"]["apiId"] == "py-url" and event["headers"]["x-forwarded-port"] == str(api.port)
    assert invoker.streaming_callers == [False]


async def test_a_client_without_a_host_name_puts_the_function_first_in_the_path():
    invoker = Invoker(URL_FN, answer=lambda e: ok({"seen": e["rawPath"]}))
    async with urls(invoker) as (_, http):
        async with http.get("/py-url/deep/path") as r:
            assert r.status == 200 and await r.json() == {"seen": "/deep/path"}
        async with http.get("/PY-URL") as r:
            assert await r.json() == {"seen": "/"}, "names as host names are: any case"


async def test_no_such_url_is_403_access_denied_naming_the_urls_there_are():
    invoker = Invoker(URL_FN, function("no-url"), answer=lambda e: ok({}))
    async with urls(invoker) as (api, http):
        for path, headers in (("/missing/", {}), ("/", {}), ("/no-url/", {}), ("/", host_of("no-url", api))):
            async with http.get(path, headers=headers) as r:
                assert r.status == 403 and r.headers["x-amzn-ErrorType"] == "AccessDeniedException"
                assert "py-url" in (await r.json())["Message"]
    assert invoker.events == []


async def test_cookies_become_one_set_cookie_header_each():
    invoker = Invoker(URL_FN, answer=lambda e: ok({"statusCode": 201, "cookies": ["a=1", "b=2; Path=/"],
                                                   "headers": {"Content-Type": "text/plain"}, "body": "made"}))
    async with urls(invoker) as (api, http):
        async with http.post("/", headers=host_of("py-url", api), data=b"x") as r:
            assert r.status == 201 and r.headers["Content-Type"] == "text/plain"
            assert r.headers.getall("Set-Cookie") == ["a=1", "b=2; Path=/"]


async def test_a_function_error_is_502_internal_server_error():
    invoker = Invoker(URL_FN, answer=lambda e: Outcome(b'{"errorType":"Boom"}', error_type="Boom", status="error"))
    async with urls(invoker) as (api, http):
        async with http.get("/", headers=host_of("py-url", api)) as r:
            assert r.status == 502 and await r.text() == "Internal Server Error"


async def test_a_result_that_is_not_an_http_response_is_502():
    invoker = Invoker(URL_FN, answer=lambda e: ok({"statusCode": "teapot"}))
    async with urls(invoker) as (api, http):
        async with http.get("/", headers=host_of("py-url", api)) as r:
            assert r.status == 502


async def test_throttling_is_429_and_a_stopping_host_503():
    invoker = Invoker(URL_FN, answer=lambda e: Throttled())
    async with urls(invoker) as (api, http):
        async with http.get("/", headers=host_of("py-url", api)) as r:
            assert r.status == 429 and r.headers["x-amzn-ErrorType"] == "TooManyRequestsException"
        invoker.stopping = True
        async with http.get("/", headers=host_of("py-url", api)) as r:
            assert r.status == 503


async def test_an_event_over_six_mib_is_413_and_never_invoked():
    invoker = Invoker(URL_FN, answer=lambda e: ok({}))
    async with urls(invoker) as (api, http):
        body = b"\x00" * (MAX_SYNC_REQUEST_BYTES * 3 // 4)        # base64 makes it over the limit
        async with http.post("/", headers=host_of("py-url", api), data=body) as r:
            assert r.status == 413 and r.headers["x-amzn-ErrorType"] == "RequestTooLargeException"
    assert invoker.events == []


async def test_a_binary_body_reaches_the_function_as_base64():
    invoker = Invoker(URL_FN, answer=lambda e: ok({"statusCode": 200, "body": e["body"], "isBase64Encoded": True,
                                                   "headers": {"content-type": "application/octet-stream"}}))
    async with urls(invoker) as (api, http):
        async with http.post("/", headers={**host_of("py-url", api), "Content-Type": "image/png"},
                             data=b"\x89PNG\x00\xff") as r:
            assert await r.read() == b"\x89PNG\x00\xff"
    assert invoker.events[0]["isBase64Encoded"] is True
    assert base64.b64decode(invoker.events[0]["body"]) == b"\x89PNG\x00\xff"


STREAM_FN = function("node-url-stream", runtime="nodejs18.x", handler="index.handler",
                     url=UrlConfig("RESPONSE_STREAM"))
PRELUDE = b'{"statusCode":201,"headers":{"x-stream":"yes","content-type":"text/plain"},"cookies":["s=1"]}' + b"\0" * 8


async def test_a_streamed_http_response_takes_its_status_from_the_prelude_and_streams_the_rest():
    invoker = Invoker(STREAM_FN, answer=lambda e: streamed(HTTP_INTEGRATION_CONTENT_TYPE, PRELUDE[:10], PRELUDE[10:],
                                                          b"first ", 0.5, b"second"))
    async with urls(invoker) as (api, http):
        started = time.monotonic()
        async with http.get("/", headers=host_of("node-url-stream", api)) as r:
            assert r.status == 201 and r.headers["x-stream"] == "yes" and r.headers["Set-Cookie"] == "s=1"
            assert r.headers["Content-Type"] == "text/plain" and r.headers["Transfer-Encoding"] == "chunked"
            first = await r.content.readany()
            first_at = time.monotonic() - started
            rest = await r.read()
            end_at = time.monotonic() - started
    assert first == b"first " and rest == b"second"
    assert end_at - first_at >= 0.35, (first_at, end_at)
    assert invoker.streaming_callers == [True]


async def test_a_stream_that_fails_before_its_first_byte_is_502():
    invoker = Invoker(STREAM_FN, answer=lambda e: streamed(HTTP_INTEGRATION_CONTENT_TYPE,
                                                          end=StreamEnd("Error", "boom")))
    async with urls(invoker) as (api, http):
        async with http.get("/", headers=host_of("node-url-stream", api)) as r:
            assert r.status == 502 and await r.text() == "Internal Server Error"


async def test_a_stream_without_a_prelude_is_200_with_the_functions_content_type():
    invoker = Invoker(STREAM_FN, answer=lambda e: streamed("text/event-stream", b"data: 1\n\n", b"data: 2\n\n"))
    async with urls(invoker) as (api, http):
        async with http.get("/", headers=host_of("node-url-stream", api)) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
            assert await r.read() == b"data: 1\n\ndata: 2\n\n"


async def test_a_buffered_result_behind_a_streaming_url_is_passed_on_as_it_is():
    invoker = Invoker(STREAM_FN, answer=lambda e: ok({"statusCode": 404, "body": "x"}))
    async with urls(invoker) as (api, http):
        async with http.get("/", headers=host_of("node-url-stream", api)) as r:
            assert r.status == 200 and await r.json() == {"statusCode": 404, "body": "x"}


async def test_a_streamed_http_response_behind_a_buffered_url_is_read_whole_and_its_prelude_applied():
    invoker = Invoker(URL_FN, answer=lambda e: streamed(HTTP_INTEGRATION_CONTENT_TYPE, PRELUDE, b"all ", b"at once"))
    async with urls(invoker) as (api, http):
        async with http.get("/", headers=host_of("py-url", api)) as r:
            assert r.status == 201 and r.headers["Content-Length"] == "11" and await r.read() == b"all at once"


async def test_a_gzip_body_reaches_the_function_decoded_and_without_its_content_encoding():
    invoker = Invoker(URL_FN, answer=lambda e: ok({}))
    async with urls(invoker) as (api, http):
        async with http.post("/", headers={**host_of("py-url", api), "Content-Type": "text/plain",
                                           "Content-Encoding": "gzip"}, data=gzip.compress(b"hello")) as r:
            assert r.status == 200
    event = invoker.events[0]
    assert event["body"] == "hello" and "content-encoding" not in event["headers"]
    assert "content-length" not in event["headers"]
