"""Function URLs end to end (docs/spec-additions.md §6): `runtime-host serve`
gives every function with `url` in its function.toml an HTTP endpoint,
http://<name>.lambda-url.localhost:<port>/, reached here with http.client,
urllib and curl as a browser or a script would: the function gets the payload
format 2.0 event and its result becomes the HTTP response; a RESPONSE_STREAM
function's body arrives as it writes it."""
from __future__ import annotations

import base64
import http.client
import json
import subprocess
import time
import urllib.error
import urllib.request

import pytest

BROWSER_HEADERS = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "Accept-Language": "en-GB,en;q=0.9",
    "Accept-Encoding": "gzip, deflate, br",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Upgrade-Insecure-Requests": "1",
    "Sec-Fetch-Mode": "navigate",
    "Cookie": "session=abc123; theme=dark",
}


def call(host, method: str, path: str, *, function: str = "py-url", headers: dict | None = None,
         body: bytes | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    """A request addressed by host name, as a browser sends it (the Host header
    names the function), over a plain connection to the loopback port."""
    conn = http.client.HTTPConnection("127.0.0.1", host.url_port, timeout=60)
    try:
        conn.request(method, path, body=body,
                     headers={"Host": f"{function}.lambda-url.localhost:{host.url_port}", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def echoed(host, method: str, path: str, **kwargs) -> tuple[dict, http.client.HTTPMessage]:
    status, headers, body = call(host, method, path, **kwargs)
    assert status == 200, body
    doc = json.loads(body)
    assert headers["x-amzn-RequestId"] == doc["request_id"], "the invocation's request id"
    return doc["event"], headers


def test_serve_prints_the_url_of_each_function_that_has_one(host):
    stderr = host.stderr()
    assert f"http://py-url.lambda-url.localhost:{host.url_port}/" in stderr
    assert f"http://node-url-stream.lambda-url.localhost:{host.url_port}/" in stderr


def test_a_browser_style_get_arrives_as_a_payload_format_2_event(host):
    event, _ = echoed(host, "GET", "/echo?tag=a&tag=b&next=%2Fhome", headers=BROWSER_HEADERS)
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/echo" and event["rawQueryString"] == "tag=a&tag=b&next=%2Fhome"
    assert event["queryStringParameters"] == {"tag": "a,b", "next": "/home"}
    assert event["cookies"] == ["session=abc123", "theme=dark"]
    headers = event["headers"]
    assert "cookie" not in headers and headers["accept"] == BROWSER_HEADERS["Accept"]
    assert headers["sec-fetch-mode"] == "navigate" and headers["host"] == f"py-url.lambda-url.localhost:{host.url_port}"
    assert headers["x-forwarded-proto"] == "http" and headers["x-amzn-trace-id"].startswith("Root=1-")
    ctx = event["requestContext"]
    assert ctx["http"] == {"method": "GET", "path": "/echo", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                           "userAgent": BROWSER_HEADERS["User-Agent"]}
    assert ctx["domainName"] == "py-url.lambda-url.localhost" and ctx["domainPrefix"] == ctx["apiId"] == "py-url"
    assert ctx["accountId"] == "anonymous" and ctx["stage"] == "$default"
    assert abs(ctx["timeEpoch"] / 1000 - time.time()) < 60 and ctx["time"].endswith(" +0000")
    assert event["isBase64Encoded"] is False and "body" not in event


def test_a_form_post_is_base64_and_a_json_post_is_text_as_lambda_decides(host):
    form = b"name=Jane+Doe&lang=en"
    event, _ = echoed(host, "POST", "/echo", body=form,
                      headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://localhost"})
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == form
    assert event["requestContext"]["http"]["method"] == "POST"
    event, _ = echoed(host, "POST", "/echo", body=b'{"k": "v"}', headers={"Content-Type": "application/json"})
    assert event["isBase64Encoded"] is False and event["body"] == '{"k": "v"}'


def test_a_response_object_gives_the_status_headers_and_one_set_cookie_per_cookie(host):
    status, headers, body = call(host, "GET", "/custom")
    assert status == 201 and body == b"created"
    assert headers["Content-Type"] == "text/plain; charset=utf-8" and headers["X-Custom"] == "yes"
    assert headers.get_all("Set-Cookie") == ["first=1; Path=/", "second=2; Max-Age=60"]
    status, _, _ = call(host, "GET", "/custom?status=418")
    assert status == 418


def test_a_plain_value_becomes_a_200_json_body(host):
    status, headers, body = call(host, "GET", "/plain")
    assert (status, headers["Content-Type"], body) == (200, "application/json", b'{"hello":"world","n":[1,2]}')
    status, headers, body = call(host, "GET", "/string")
    assert (status, headers["Content-Type"], body) == (200, "application/json", b"just text")


def test_a_base64_body_reaches_the_client_as_bytes(host):
    status, headers, body = call(host, "GET", "/binary")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert body == b"\x89PNG\r\n\x1a\n\x00\xff"


def test_a_function_error_is_502_internal_server_error(host):
    status, headers, body = call(host, "GET", "/error")
    assert status == 502 and body == b"Internal Server Error"
    assert headers["x-amzn-RequestId"]


def test_curl_reaches_a_function_by_its_host_name(host):
    # curl resolves every *.localhost name to loopback itself, as browsers do.
    done = subprocess.run(["curl", "-sS", "-i", "--max-time", "60",
                           f"http://py-url.lambda-url.localhost:{host.url_port}/html?name=curl"],
                          capture_output=True, timeout=90)
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"content-type: text/html; charset=utf-8" in head.lower()
    assert body == b"<!doctype html><title>hi</title><p>Hello, curl!</p>"


def test_a_client_that_cannot_set_the_host_name_puts_the_function_first_in_the_path(host):
    with urllib.request.urlopen(f"http://127.0.0.1:{host.url_port}/py-url/echo?x=1", timeout=60) as resp:
        event = json.loads(resp.read())["event"]
    assert event["rawPath"] == "/echo" and event["queryStringParameters"] == {"x": "1"}


@pytest.mark.parametrize("path", ["/no-such-function/", "/hello-python/"])
def test_a_function_without_a_url_is_403_access_denied(host, path):
    with pytest.raises(urllib.error.HTTPError) as exc_info:
        urllib.request.urlopen(f"http://127.0.0.1:{host.url_port}{path}", timeout=30)
    assert exc_info.value.code == 403
    assert exc_info.value.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert "url = true" in json.loads(exc_info.value.read())["Message"]


def test_a_response_stream_function_streams_through_its_url(host):
    conn = http.client.HTTPConnection("127.0.0.1", host.url_port, timeout=60)
    try:
        started = time.monotonic()
        conn.request("GET", "/any/path", headers={"Host": f"node-url-stream.lambda-url.localhost:{host.url_port}"})
        resp = conn.getresponse()
        assert resp.status == 201, resp.read()
        assert resp.headers["x-stream"] == "yes" and resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert resp.headers["Set-Cookie"] == "streamed=1; Path=/" and resp.headers["Transfer-Encoding"] == "chunked"
        first = resp.read1()
        first_at = time.monotonic() - started
        rest = resp.read()
        end_at = time.monotonic() - started
    finally:
        conn.close()
    assert first == b"first GET /any/path\n" and rest == b"second\n"
    # The handler waits 1 s between its writes: a buffering host would deliver both at once.
    assert end_at - first_at >= 0.7, (first_at, end_at)


def test_a_stream_that_fails_before_its_first_byte_is_502(host):
    status, _, body = call(host, "GET", "/fail", function="node-url-stream")
    assert status == 502 and body == b"Internal Server Error"
