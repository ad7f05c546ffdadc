"""Function URLs' mapping (core/http_events.py, docs/spec-additions.md §6): the
payload format 2.0 event a request becomes, and the HTTP answer a result becomes."""
from __future__ import annotations

import base64
import json

import pytest

from runtime_host.core.http_events import (FUNCTION_ERROR_BODY, HttpRequest, MalformedResponse, answer_from_prelude,
                                           answer_from_result, build_event, event_payload, function_error_answer,
                                           host_without_port, is_text, local_url, prelude_end, request_time,
                                           split_path_address, url_id_of_host)


def request(**fields) -> HttpRequest:
    base = dict(method="GET", raw_path="/", raw_query="", headers=(("Host", "fn.lambda-url.localhost:9001"),),
                body=b"", source_ip="127.0.0.1", domain_name="fn.lambda-url.localhost", url_id="fn", port=9001,
                request_id="req-1", trace_id="Root=1-6500000a-0123456789abcdef01234567;Parent=1;Sampled=0",
                epoch_ms=1583348638390)
    base.update(fields)
    return HttpRequest(**base)


# --- addressing ---------------------------------------------------------------------
def test_the_host_name_names_the_function_in_lower_case_whatever_the_port():
    assert url_id_of_host("My-Fn.lambda-url.localhost:9001") == "my-fn"
    assert url_id_of_host("fn.lambda-url.us-east-1.on.aws") == "fn"
    assert url_id_of_host("127.0.0.1:9001") is None and url_id_of_host("localhost") is None
    assert url_id_of_host(".lambda-url.localhost") is None


def test_host_without_port_keeps_ipv6_brackets():
    assert host_without_port("[::1]:9001") == "[::1]" and host_without_port("a.localhost:80") == "a.localhost"
    assert host_without_port("a.localhost") == "a.localhost"


def test_a_path_address_gives_the_function_and_the_rest_of_the_path():
    assert split_path_address("/fn/a/b") == ("fn", "/a/b")
    assert split_path_address("/fn") == ("fn", "/") and split_path_address("/fn/") == ("fn", "/")
    assert split_path_address("/") == ("", "/")


def test_a_function_is_printed_with_its_lower_case_host_name():
    assert local_url("Py-Url", 9001) == "http://py-url.lambda-url.localhost:9001/"


# --- the request event -----------------------------------------------------------------
def test_a_plain_get_has_the_documented_shape_and_leaves_out_what_it_does_not_have():
    event = build_event(request(headers=(("Host", "fn.lambda-url.localhost:9001"), ("User-Agent", "curl/8"))))
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/" and event["rawQueryString"] == ""
    assert "cookies" not in event and "queryStringParameters" not in event and "body" not in event
    assert event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx == {"accountId": "anonymous", "apiId": "fn", "domainName": "fn.lambda-url.localhost",
                   "domainPrefix": "fn",
                   "http": {"method": "GET", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                            "userAgent": "curl/8"},
                   "requestId": "req-1", "routeKey": "$default", "stage": "$default",
                   "time": "04/Mar/2020:19:03:58 +0000", "timeEpoch": 1583348638390}


def test_headers_are_lower_case_and_repeats_are_joined_with_commas():
    event = build_event(request(headers=(("Host", "h"), ("X-Multi", "a"), ("x-multi", "b"), ("Accept", "*/*"))))
    assert event["headers"]["x-multi"] == "a,b" and event["headers"]["accept"] == "*/*"
    assert all(name == name.lower() for name in event["headers"])


def test_the_platform_adds_forwarding_and_trace_headers_and_drops_hop_by_hop_ones():
    event = build_event(request(headers=(("Host", "h"), ("Connection", "keep-alive"), ("X-Forwarded-For", "1.2.3.4"))))
    headers = event["headers"]
    assert "connection" not in headers
    assert headers["x-forwarded-for"] == "127.0.0.1" and headers["x-forwarded-port"] == "9001"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-amzn-trace-id"] == "Root=1-6500000a-0123456789abcdef01234567"


def test_cookie_headers_become_the_cookies_list_and_leave_the_headers():
    event = build_event(request(headers=(("Host", "h"), ("Cookie", "session=abc; theme=dark"), ("Cookie", "x=1"))))
    assert event["cookies"] == ["session=abc", "theme=dark", "x=1"]
    assert "cookie" not in event["headers"]


def test_query_parameters_are_decoded_and_a_repeated_key_is_joined_with_commas():
    event = build_event(request(raw_query="tag=a&tag=b&path=%2Fx&empty="))
    assert event["rawQueryString"] == "tag=a&tag=b&path=%2Fx&empty="
    assert event["queryStringParameters"] == {"tag": "a,b", "path": "/x", "empty": ""}


def test_the_raw_path_keeps_its_percent_encoding():
    event = build_event(request(raw_path="/pa2%Fth/1"))
    assert event["rawPath"] == "/pa2%Fth/1" and event["requestContext"]["http"]["path"] == "/pa2%Fth/1"


@pytest.mark.parametrize("content_type", ["text/plain", "text/html; charset=utf-8", "application/json",
                                          "Application/JSON; charset=UTF-8", "application/xml",
                                          "application/javascript"])
def test_a_text_body_is_handed_over_as_text(content_type):
    event = build_event(request(method="POST", headers=(("Content-Type", content_type),), body="héllo".encode()))
    assert event["body"] == "héllo" and event["isBase64Encoded"] is False


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "multipart/form-data; b=1",
                                          "application/octet-stream", "image/png"])
def test_any_other_body_is_base64(content_type):
    headers = (("Content-Type", content_type),) if content_type else ()
    event = build_event(request(method="POST", headers=headers, body=b"name=Jane+Doe&x=\x00\xff"))
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"name=Jane+Doe&x=\x00\xff"


def test_a_text_type_with_bytes_that_are_not_utf8_is_sent_as_base64_rather_than_mangled():
    event = build_event(request(method="POST", headers=(("Content-Type", "text/plain"),), body=b"\xff\xfe"))
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\xff\xfe"


def test_the_payload_is_compact_utf8_json():
    payload = event_payload(request(raw_query="q=é"))
    assert json.loads(payload)["queryStringParameters"] == {"q": "é"} and b", " not in payload


def test_request_time_uses_english_months_in_utc():
    assert request_time(1631055022677) == "07/Sep/2021:22:50:22 +0000"


@pytest.mark.parametrize("content_type, text", [("text/csv", True), ("application/jsonx", False), ("", False)])
def test_is_text(content_type, text):
    assert is_text(content_type) is text


# --- the answer to a buffered result ------------------------------------------------------
def test_an_object_with_a_status_code_is_the_response():
    answer = answer_from_result(json.dumps({
        "statusCode": 201, "headers": {"Content-Type": "text/plain", "X-Custom": "yes"},
        "cookies": ["a=1; Path=/", "b=2; Max-Age=60"], "body": "created"}).encode())
    assert answer.status == 201 and answer.content_type == "text/plain" and answer.body == b"created"
    assert answer.headers == (("X-Custom", "yes"), ("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Max-Age=60"))


def test_a_response_without_content_type_is_application_json():
    answer = answer_from_result(b'{"statusCode": 200, "body": "body123"}')
    assert (answer.status, answer.content_type, answer.body) == (200, "application/json", b"body123")


def test_a_string_status_code_is_taken():
    assert answer_from_result(b'{"statusCode": "418", "body": "teapot"}').status == 418


def test_a_base64_body_is_decoded():
    data = b"\x89PNG\x00\xff"
    answer = answer_from_result(json.dumps({"statusCode": 200, "body": base64.b64encode(data).decode(),
                                            "isBase64Encoded": True, "headers": {"content-type": "image/png"}}).encode())
    assert answer.body == data and answer.content_type == "image/png"


def test_a_body_that_is_not_a_string_is_sent_as_compact_json():
    assert answer_from_result(b'{"statusCode": 200, "body": {"a": [1, 2]}}').body == b'{"a":[1,2]}'


def test_a_response_without_body_has_an_empty_one():
    assert answer_from_result(b'{"statusCode": 204}').body == b""


def test_header_values_that_are_numbers_or_booleans_become_text_and_null_ones_are_dropped():
    answer = answer_from_result(b'{"statusCode": 200, "headers": {"x-n": 3, "x-b": true, "x-none": null}}')
    assert answer.headers == (("x-n", "3"), ("x-b", "true"))


def test_framing_headers_of_the_function_are_the_servers_to_write():
    answer = answer_from_result(b'{"statusCode": 200, "headers": {"Content-Length": "99", "Connection": "close",'
                                b' "Transfer-Encoding": "chunked", "x-kept": "1"}, "body": "ok"}')
    assert answer.headers == (("x-kept", "1"),)


@pytest.mark.parametrize("result, body", [
    ({"hello": "world"}, b'{"hello":"world"}'),
    (["hello", 3, True], b'["hello",3,true]'),
    ("hello", b"hello"),
    (3, b"3"), (3.1, b"3.1"), (True, b"true"), (None, b"null"),
    ({"body": "not a response without statusCode"}, b'{"body":"not a response without statusCode"}'),
])
def test_any_other_value_is_a_200_json_body(result, body):
    answer = answer_from_result(json.dumps(result).encode())
    assert (answer.status, answer.content_type, answer.headers, answer.body) == (200, "application/json", (), body)


def test_a_result_that_is_not_json_is_the_body_as_it_is():
    answer = answer_from_result(b"\x00raw bytes")
    assert answer.status == 200 and answer.body == b"\x00raw bytes"


@pytest.mark.parametrize("result", [
    {"statusCode": "abc"}, {"statusCode": 99}, {"statusCode": 600}, {"statusCode": True}, {"statusCode": "4_18"},
    {"statusCode": 200, "headers": ["x"]}, {"statusCode": 200, "headers": {"x": {"nested": 1}}},
    {"statusCode": 200, "headers": {"x": "a\r\nInjected: yes"}}, {"statusCode": 200, "headers": {"bad name": "v"}},
    {"statusCode": 200, "cookies": "a=1"}, {"statusCode": 200, "cookies": ["a=1\r\nx: y"]},
    {"statusCode": 200, "body": "!!", "isBase64Encoded": True},
    {"statusCode": 200, "body": {"a": 1}, "isBase64Encoded": True},
])
def test_a_response_lambda_could_not_send_is_malformed(result):
    with pytest.raises(MalformedResponse):
        answer_from_result(json.dumps(result).encode())


def test_a_function_error_is_502_internal_server_error():
    answer = function_error_answer()
    assert answer.status == 502 and answer.body == FUNCTION_ERROR_BODY == b"Internal Server Error"


# --- the prelude of a streamed HTTP response -------------------------------------------------
def test_the_prelude_ends_after_eight_nul_bytes():
    data = b'{"statusCode":201}' + b"\x00" * 8 + b"body"
    end = prelude_end(data)
    assert data[end:] == b"body" and prelude_end(b'{"statusCode":201}\x00\x00') == -1


def test_the_prelude_gives_status_headers_and_cookies():
    answer = answer_from_prelude(b'{"statusCode":201,"headers":{"x-stream":"yes","content-type":"text/plain"},'
                                 b'"cookies":["s=1"]}')
    assert answer.status == 201 and answer.content_type == "text/plain"
    assert answer.headers == (("x-stream", "yes"), ("Set-Cookie", "s=1"))


def test_a_prelude_without_status_is_200_and_without_content_type_an_octet_stream():
    answer = answer_from_prelude(b"{}")
    assert answer.status == 200 and answer.content_type == "application/octet-stream"


@pytest.mark.parametrize("prelude", [b"not json", b"[1]", b'{"statusCode": "x"}'])
def test_a_prelude_that_is_not_an_object_of_metadata_is_malformed(prelude):
    with pytest.raises(MalformedResponse):
        answer_from_prelude(prelude)
