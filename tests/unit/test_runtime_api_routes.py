"""The Runtime API 2018-06-01 route by route, as a runtime sees it (spec §1).

Each test runs a real Host over the FakeBackend (tests/unit/fakehost.py)
whose container runs a small script written here: the script makes the
runtime's HTTP calls from its container's own address and returns what it
was answered, and the test asserts the exact status, error document and
what the caller of the invocation got.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Mapping

import aiohttp
import pytest

from runtime_host.core.protocol import (H_CLIENT_CONTEXT, H_COGNITO_IDENTITY, H_DEADLINE_MS, H_FUNCTION_ARN,
                                        H_FUNCTION_ERROR_TYPE, H_REQUEST_ID, H_RESPONSE_MODE, H_TRACE_ID,
                                        LOOPBACK_RUNTIME_API, MAX_RESPONSE_BYTES)
from runtime_host.core.states import SandboxState
from tests.unit.fakehost import fake_host, function, session_from

RUNTIME = "/2018-06-01/runtime"
NEXT = f"{RUNTIME}/invocation/next"
INIT_ERROR = f"{RUNTIME}/init/error"
STRANGER = "127.0.250.250"        # on loopback, but no container of the host has it
WAIT_S = 3.0

# Documents as RAPID writes them (Go's json.Encoder: compact, ending with a newline).
ACCEPTED = '{"status":"OK"}\n'
INVALID_REQUEST_ID = '{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}\n'


def refused(source: str, target: str) -> str:
    """RAPID's 403 for a call its state machine does not allow (spec §1.4, §1.11)."""
    return ('{"errorMessage":"State transition from %s to %s failed for runtime. '
            'Error: State transition is not allowed","errorType":"InvalidStateTransition"}\n' % (source, target))


def unknown_sandbox(address: str) -> str:
    return ('{"errorMessage":"%s is not a sandbox of this host; a sandbox may only fetch and answer its own '
            'invocations","errorType":"UnknownSandbox"}\n' % address)


# --- a runtime the test scripts ------------------------------------------------------

@dataclass
class Answer:
    """What the Runtime API answered one call."""
    status: int
    headers: Mapping[str, str]     # case-insensitive, as received
    body: bytes

    @property
    def request_id(self) -> str:
        return self.headers[H_REQUEST_ID]

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self):
        return json.loads(self.body)


async def call(http: aiohttp.ClientSession, method: str, url: str, data: bytes | None = None,
               headers: dict | None = None) -> Answer:
    """One HTTP call; no Content-Type unless the test gives one."""
    async with http.request(method, url, data=data, headers=headers or {},
                            skip_auto_headers=("Content-Type",)) as r:
        return Answer(r.status, r.headers.copy(), await r.read())


class Rt:
    """The runtime side of one fake container: calls from its own address."""

    def __init__(self, http: aiohttp.ClientSession, api: str, process):
        self.http, self.api, self.process = http, api, process

    def url(self, path: str) -> str:
        return f"http://{self.api}{path}"

    async def next(self) -> Answer:
        return await call(self.http, "GET", self.url(NEXT))

    async def respond(self, request_id: str, data: bytes = b'"ok"', headers: dict | None = None) -> Answer:
        return await call(self.http, "POST", self.url(f"{RUNTIME}/invocation/{request_id}/response"), data, headers)

    async def error(self, request_id: str, data: bytes = b"", headers: dict | None = None) -> Answer:
        return await call(self.http, "POST", self.url(f"{RUNTIME}/invocation/{request_id}/error"), data, headers)

    async def init_error(self, data: bytes = b"", headers: dict | None = None) -> Answer:
        return await call(self.http, "POST", self.url(INIT_ERROR), data, headers)


def scripted(script, *, stay: bool = True):
    """(program, result): a container program that runs `script(rt)` and puts
    what it returns (or raises) in `result`. Staying, it then asks GET next
    once more, so nothing it held is left in flight, and waits to be ended;
    otherwise it exits at once (as a runtime does after init/error)."""
    result: asyncio.Future = asyncio.get_running_loop().create_future()

    async def program(process) -> int:
        async with session_from(process.container.address) as http:
            rt = Rt(http, process.runtime_api, process)
            try:
                value = await script(rt)
            except Exception as exc:
                if not result.done():
                    result.set_exception(exc)
                return 1
            if not result.done():
                result.set_result(value)
            if not stay:
                return 1
            await rt.next()
            await process.sigterm.wait()
        return 0

    return program, result


async def outcome_of(host, payload: bytes = b'{"hello":"world"}', **kwargs):
    """(invocation, outcome) of one invocation of "fn"."""
    return await asyncio.wait_for(host.invoke(host.functions["fn"], payload, **kwargs), WAIT_S)


async def answers(result: asyncio.Future):
    return await asyncio.wait_for(result, WAIT_S)


async def run_one(script):
    """(invocation, outcome, what `script` returned) of one invocation of "fn"
    on a host whose runtime runs `script`."""
    program, result = scripted(script)
    async with fake_host(function(), program=program) as host:
        inv, outcome = await outcome_of(host)
        return inv, outcome, await answers(result)


async def from_address(address: str, method: str, url: str, data: bytes | None = None,
                       headers: dict | None = None) -> Answer:
    async with session_from(address) as http:
        return await call(http, method, url, data, headers)


# --- GET /runtime/invocation/next -------------------------------------------------------

async def test_next_delivers_the_event_with_request_id_deadline_arn_and_trace_id():
    async def script(rt):
        event = await rt.next()
        received_ms = time.time() * 1000
        await rt.respond(event.request_id)
        return event, received_ms

    program, result = scripted(script)
    async with fake_host(function(timeout_s=7), program=program) as host:
        inv, _ = await outcome_of(host, b'{"hello":"world"}')
        event, received_ms = await answers(result)
    assert event.status == 200
    assert event.body == b'{"hello":"world"}'
    assert event.headers["Content-Type"] == "application/json"
    assert event.headers[H_REQUEST_ID] == inv.request_id
    assert abs(int(event.headers[H_DEADLINE_MS]) - (received_ms + 7000)) < 500
    assert event.headers[H_FUNCTION_ARN] == "arn:aws:lambda:us-east-1:000000000000:function:fn"
    assert event.headers[H_TRACE_ID] == inv.trace_id
    assert event.headers[H_TRACE_ID].startswith("Root=1-")


async def test_next_has_no_client_context_or_cognito_identity_header_when_the_caller_gave_none():
    async def script(rt):
        event = await rt.next()
        await rt.respond(event.request_id)
        return event

    program, result = scripted(script)
    async with fake_host(function(), program=program) as host:
        await outcome_of(host)
        event = await answers(result)
    assert event.status == 200
    assert H_CLIENT_CONTEXT not in event.headers
    assert H_COGNITO_IDENTITY not in event.headers


async def test_next_passes_client_context_and_cognito_identity_when_given():
    client_context = '{"client":{"installation_id":"i-1"},"custom":{"k":"v"},"env":{}}'
    cognito = '{"cognitoIdentityId":"us-east-1:abc","cognitoIdentityPoolId":"us-east-1:pool"}'

    async def script(rt):
        event = await rt.next()
        await rt.respond(event.request_id)
        return event

    program, result = scripted(script)
    async with fake_host(function(), program=program) as host:
        await outcome_of(host, client_context=client_context, cognito_identity=cognito)
        event = await answers(result)
    assert event.headers[H_CLIENT_CONTEXT] == client_context
    assert event.headers[H_COGNITO_IDENTITY] == cognito


async def test_next_arn_carries_the_callers_qualifier_and_the_hosts_region():
    async def script(rt):
        event = await rt.next()
        await rt.respond(event.request_id)
        return event

    program, result = scripted(script)
    async with fake_host(function(), program=program, region="eu-west-3") as host:
        await outcome_of(host, qualifier="$LATEST")
        event = await answers(result)
    assert event.headers[H_FUNCTION_ARN] == "arn:aws:lambda:eu-west-3:000000000000:function:fn:$LATEST"


async def test_next_trace_id_is_the_callers_when_given():
    trace = "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"

    async def script(rt):
        event = await rt.next()
        await rt.respond(event.request_id)
        return event

    program, result = scripted(script)
    async with fake_host(function(), program=program) as host:
        await outcome_of(host, trace_id=trace)
        event = await answers(result)
    assert event.headers[H_TRACE_ID] == trace


async def test_next_from_a_stranger_address_is_forbidden_unknown_sandbox():
    async with fake_host(function()) as host:
        answer = await from_address(STRANGER, "GET", f"http://{host.runtime_api_address}{NEXT}")
        assert host.sandboxes() == []
    assert answer.status == 403
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.text == unknown_sandbox(STRANGER)


async def test_next_again_before_a_result_redelivers_the_same_event():
    async def script(rt):
        first = await rt.next()
        again = await rt.next()
        await rt.respond(again.request_id, b'{"answered":true}')
        return first, again

    program, result = scripted(script)
    async with fake_host(function(), program=program) as host:
        inv, outcome = await outcome_of(host, b'{"n":1}')
        first, again = await answers(result)
    assert (first.status, again.status) == (200, 200)
    assert first.request_id == again.request_id == inv.request_id
    assert first.body == again.body == b'{"n":1}'
    assert first.headers[H_DEADLINE_MS] == again.headers[H_DEADLINE_MS]
    assert outcome.body == b'{"answered":true}' and outcome.error_type is None


async def test_next_after_init_error_is_forbidden_invalid_state_transition():
    # spec §1.11: after /init/error the runtime is in InitError; /next is refused naming that state.
    async def script(rt):
        posted = await rt.init_error(b'{"errorMessage":"bad","errorType":"Runtime.Broken"}')
        return posted, await rt.next()

    program, result = scripted(script, stay=False)
    async with fake_host(function(), program=program) as host:
        _, outcome = await outcome_of(host)
        posted, answer = await answers(result)
    assert posted.status == 202
    assert answer.status == 403
    assert answer.text == refused("InitError", "Ready")
    assert outcome.error_type == "Runtime.Broken"


async def test_two_polls_at_once_both_wait_and_both_get_the_next_event_as_in_rapid():
    both_open = asyncio.Event()

    async def script(rt):
        event = await rt.next()
        await rt.respond(event.request_id)
        sandbox = host.sandbox_at(rt.process.container.address)
        first_poll = asyncio.ensure_future(rt.next())
        while sandbox.state is not SandboxState.READY:          # the first poll has arrived
            await asyncio.sleep(0.001)
        async with session_from(rt.process.container.address) as other_connection:
            second_poll = asyncio.ensure_future(call(other_connection, "GET", rt.url(NEXT)))
            await asyncio.sleep(0.05)                          # both wait: neither is answered without an event
            waiting = not first_poll.done() and not second_poll.done()
            both_open.set()
            first, second = await first_poll, await second_poll
            await call(other_connection, "POST", rt.url(f"{RUNTIME}/invocation/{second.request_id}/response"), b'"2"')
        return waiting, first, second

    program, result = scripted(script)
    async with fake_host(function(), program=program, freeze=False) as host:
        await outcome_of(host)
        await asyncio.wait_for(both_open.wait(), WAIT_S)        # the second event comes to two open polls
        inv, outcome = await outcome_of(host, b'{"second":true}')
        waiting, first, second = await answers(result)
    assert waiting
    assert first.status == second.status == 200
    assert first.request_id == second.request_id == inv.request_id
    assert first.body == second.body == b'{"second":true}'
    assert outcome.body == b'"2"'


async def test_invocation_ends_only_when_the_runtime_calls_next_again():
    go_on = asyncio.Event()

    async def script(rt):
        event = await rt.next()
        await rt.respond(event.request_id)
        await go_on.wait()
        return None            # the program then calls GET next

    program, result = scripted(script)
    async with fake_host(function(), program=program) as host:
        inv, outcome = await outcome_of(host)
        await asyncio.sleep(0.02)
        ended_before_next = inv.finished.done()
        go_on.set()
        await asyncio.wait_for(asyncio.shield(inv.finished), WAIT_S)
        await answers(result)
    assert outcome.body == b'"ok"'
    assert ended_before_next is False
    assert inv.finished.done()


# --- POST /runtime/invocation/{id}/response -------------------------------------------------

async def test_response_is_accepted_202_ok_and_reaches_the_caller():
    async def script(rt):
        event = await rt.next()
        return await rt.respond(event.request_id, b'{"result":42}', {"Content-Type": "application/json"})

    _, outcome, answer = await run_one(script)
    assert answer.status == 202
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.text == ACCEPTED
    assert outcome.body == b'{"result":42}'
    assert outcome.content_type == "application/json"
    assert outcome.error_type is None


async def test_response_with_a_wrong_id_is_400_invalid_request_id_and_touches_nothing():
    async def script(rt):
        event = await rt.next()
        wrong = await rt.respond("not-" + event.request_id, b'"wrong"')
        right = await rt.respond(event.request_id, b'"right"')
        return wrong, right

    _, outcome, (wrong, right) = await run_one(script)
    assert wrong.status == 400
    assert wrong.headers["Content-Type"] == "application/json"
    assert wrong.text == INVALID_REQUEST_ID
    assert right.status == 202
    assert outcome.body == b'"right"'


async def test_response_during_init_is_400_invalid_request_id():
    async def script(rt):
        early = await rt.respond("8476a536-e9f4-11e8-9739-2dfe598c3fcd")
        event = await rt.next()
        await rt.respond(event.request_id, b'"late"')
        return early

    _, outcome, early = await run_one(script)
    assert early.status == 400
    assert early.text == INVALID_REQUEST_ID
    assert outcome.body == b'"late"'


async def test_response_for_an_invocation_already_released_is_400_invalid_request_id():
    async def script(rt):
        first = await rt.next()
        await rt.respond(first.request_id, b'"1"')
        second = await rt.next()                   # releases the first
        stale = await rt.respond(first.request_id, b'"stale"')
        await rt.respond(second.request_id, b'"2"')
        return stale

    program, result = scripted(script)
    async with fake_host(function(), program=program) as host:
        _, first_outcome = await outcome_of(host)
        _, second_outcome = await outcome_of(host)
        stale = await answers(result)
    assert stale.status == 400
    assert stale.text == INVALID_REQUEST_ID
    assert (first_outcome.body, second_outcome.body) == (b'"1"', b'"2"')


async def test_second_response_for_same_request_is_forbidden_with_rapids_message():
    async def script(rt):
        event = await rt.next()
        first = await rt.respond(event.request_id, b'{"n":1}')
        second = await rt.respond(event.request_id, b'{"n":2}')
        return first, second

    _, outcome, (first, second) = await run_one(script)
    assert first.status == 202
    assert second.status == 403
    assert second.headers["Content-Type"] == "application/json"
    assert second.text == refused("RuntimeResponseSentState", "InvocationResponse")
    assert outcome.body == b'{"n":1}'


async def test_invalid_response_mode_is_400_and_caller_gets_runtime_invalid_response_mode_header():
    async def script(rt):
        event = await rt.next()
        return await rt.respond(event.request_id, b'"x"', {H_RESPONSE_MODE: "buffered"})

    _, outcome, answer = await run_one(script)
    assert answer.status == 400
    assert answer.text == ('{"errorMessage":"Invalid function response mode",'
                           '"errorType":"InvalidFunctionResponseMode"}\n')
    assert outcome.error_type == "Runtime.InvalidResponseModeHeader"
    assert json.loads(outcome.body)["errorType"] == "Runtime.InvalidResponseModeHeader"


async def test_response_mode_is_compared_case_sensitively():
    async def script(rt):
        event = await rt.next()
        return await rt.respond(event.request_id, b'"x"', {H_RESPONSE_MODE: "Streaming"})

    _, outcome, answer = await run_one(script)
    assert answer.status == 400
    assert json.loads(answer.body)["errorType"] == "InvalidFunctionResponseMode"
    assert outcome.error_type == "Runtime.InvalidResponseModeHeader"


async def test_streaming_response_mode_is_accepted():
    async def script(rt):
        event = await rt.next()
        return await rt.respond(event.request_id, b'"streamed"', {H_RESPONSE_MODE: "streaming"})

    _, outcome, answer = await run_one(script)
    assert answer.status == 202 and answer.text == ACCEPTED
    assert outcome.stream is not None and outcome.error_type is None
    assert b"".join([data async for data in outcome.stream.chunks()]) == b'"streamed"'
    assert outcome.stream.end.error_code is None


async def test_response_over_max_size_is_413_and_caller_gets_function_response_size_too_large():
    size = MAX_RESPONSE_BYTES + 1

    async def script(rt):
        event = await rt.next()
        return await rt.respond(event.request_id, b"x" * size)

    _, outcome, answer = await run_one(script)
    assert MAX_RESPONSE_BYTES == 6_291_556
    assert answer.status == 413
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.text == ('{"errorMessage":"Exceeded maximum allowed payload size (6291556 bytes).",'
                           '"errorType":"RequestEntityTooLarge"}\n')
    assert outcome.error_type == "Function.ResponseSizeTooLarge"
    assert json.loads(outcome.body) == {
        "errorMessage": f"Response payload size ({size} bytes) exceeded maximum allowed payload size "
                        "(6291556 bytes).",
        "errorType": "Function.ResponseSizeTooLarge"}


async def test_response_of_exactly_max_size_is_accepted_whole():
    body = b"y" * MAX_RESPONSE_BYTES

    async def script(rt):
        event = await rt.next()
        return await rt.respond(event.request_id, body, {"Content-Type": "application/octet-stream"})

    _, outcome, answer = await run_one(script)
    assert answer.status == 202
    assert outcome.error_type is None
    assert outcome.body == body


async def test_error_after_an_oversized_response_is_forbidden():
    async def script(rt):
        event = await rt.next()
        too_large = await rt.respond(event.request_id, b"x" * (MAX_RESPONSE_BYTES + 1))
        then = await rt.error(event.request_id, b'{"errorMessage":"m","errorType":"E"}')
        return too_large, then

    _, outcome, (too_large, then) = await run_one(script)
    assert too_large.status == 413
    assert then.status == 403
    assert json.loads(then.body)["errorType"] == "InvalidStateTransition"
    assert outcome.error_type == "Function.ResponseSizeTooLarge"


async def test_response_content_type_is_passed_to_the_caller():
    async def script(rt):
        event = await rt.next()
        return await rt.respond(event.request_id, b"<p>hi</p>", {"Content-Type": "text/html; charset=utf-8"})

    _, outcome, answer = await run_one(script)
    assert answer.status == 202
    assert outcome.content_type == "text/html; charset=utf-8"
    assert outcome.body == b"<p>hi</p>"


async def test_response_without_content_type_reaches_the_caller_as_json():
    async def script(rt):
        event = await rt.next()
        return await rt.respond(event.request_id, b'{"a":1}')

    _, outcome, answer = await run_one(script)
    assert answer.status == 202
    assert outcome.content_type == "application/json"


async def test_response_to_a_percent_encoded_request_id_is_the_same_request():
    async def script(rt):
        event = await rt.next()
        encoded = "".join(f"%{b:02X}" for b in event.request_id.encode())
        return await rt.respond(encoded, b'"encoded"')

    _, outcome, answer = await run_one(script)
    assert answer.status == 202
    assert outcome.body == b'"encoded"'


# --- POST /runtime/invocation/{id}/error ------------------------------------------------------

async def test_error_is_accepted_202_and_caller_gets_the_document_as_sent():
    document = b'{"errorMessage":"boom","errorType":"ValueError","stackTrace":["  File \\"app.py\\""]}'

    async def script(rt):
        event = await rt.next()
        return await rt.error(event.request_id, document,
                              {H_FUNCTION_ERROR_TYPE: "Function.ValueError", "Content-Type": "application/json"})

    _, outcome, answer = await run_one(script)
    assert answer.status == 202
    assert answer.text == ACCEPTED
    assert outcome.body == document
    assert outcome.error_type == "Function.ValueError"
    assert outcome.status == "error"


@pytest.mark.parametrize("header, error_type", [
    ("Bogus", "Runtime.Unknown"),
    ("unhandled", "Runtime.Unknown"),
    ("Function.x", "Function.Unknown"),
    ("Runtime.ImportModuleError", "Runtime.ImportModuleError"),
    ("wrapped Function.UserError here", "wrapped Function.UserError here"),     # the pattern is not anchored
])
async def test_error_type_header_is_sanitised_as_rapid_does(header, error_type):
    async def script(rt):
        event = await rt.next()
        return await rt.error(event.request_id, b'{"errorMessage":"m","errorType":"FromBody"}',
                              {H_FUNCTION_ERROR_TYPE: header})

    _, outcome, answer = await run_one(script)
    assert answer.status == 202
    assert outcome.error_type == error_type
    assert outcome.body == b'{"errorMessage":"m","errorType":"FromBody"}'


async def test_error_type_comes_from_the_body_when_the_header_is_absent():
    async def script(rt):
        event = await rt.next()
        return await rt.error(event.request_id, b'{"errorMessage":"division by zero","errorType":"ZeroDivisionError"}',
                              {"Content-Type": "application/json"})

    _, outcome, answer = await run_one(script)
    assert answer.status == 202
    assert outcome.error_type == "ZeroDivisionError"


async def test_error_cause_content_type_is_reduced_to_message_type_and_stack_trace():
    document = {"errorMessage": "boom", "errorType": "Oops", "stackTrace": ["a", "b"],
                "errorCause": {"paths": ["/var/task/app.py"]}, "requestId": "r"}

    async def script(rt):
        event = await rt.next()
        return await rt.error(event.request_id, json.dumps(document).encode(),
                              {"Content-Type": "application/vnd.aws.lambda.error.cause+json",
                               H_FUNCTION_ERROR_TYPE: "Function.Oops"})

    _, outcome, answer = await run_one(script)
    assert answer.status == 202
    assert json.loads(outcome.body) == {"errorMessage": "boom", "errorType": "Oops", "stackTrace": ["a", "b"]}
    assert outcome.content_type == "application/json"
    assert outcome.error_type == "Function.Oops"


async def test_error_cause_content_type_with_a_body_that_is_not_json_gives_invalid_error_body():
    async def script(rt):
        event = await rt.next()
        return await rt.error(event.request_id, b"not json {",
                              {"Content-Type": "application/vnd.aws.lambda.error.cause+json"})

    _, outcome, answer = await run_one(script)
    assert answer.status == 202
    assert outcome.body == b'"Invalid error body"'
    assert outcome.content_type == "application/octet-stream"
    assert outcome.error_type == "Runtime.Unknown"


async def test_error_with_an_empty_body_gets_the_unknown_application_error_document():
    async def script(rt):
        event = await rt.next()
        return await rt.error(event.request_id, b"", {H_FUNCTION_ERROR_TYPE: "Function.Crashed"})

    _, outcome, answer = await run_one(script)
    assert answer.status == 202
    assert json.loads(outcome.body) == {"errorMessage": "Unknown application error occurred",
                                        "errorType": "Function.Crashed"}
    assert outcome.error_type == "Function.Crashed"


async def test_error_with_a_wrong_id_is_400_invalid_request_id_and_touches_nothing():
    async def script(rt):
        event = await rt.next()
        wrong = await rt.error("not-" + event.request_id, b'{"errorMessage":"m","errorType":"E"}')
        right = await rt.respond(event.request_id, b'"fine"')
        return wrong, right

    _, outcome, (wrong, right) = await run_one(script)
    assert wrong.status == 400
    assert wrong.text == INVALID_REQUEST_ID
    assert right.status == 202
    assert outcome.body == b'"fine"' and outcome.error_type is None


async def test_second_error_for_same_request_is_forbidden_with_rapids_message():
    # RAPID's invocationerror.go names the target state InvocationErrorResponse
    # (core.RuntimeInvocationErrorResponseStateName), not InvocationResponse.
    async def script(rt):
        event = await rt.next()
        first = await rt.error(event.request_id, b'{"errorMessage":"1","errorType":"E"}')
        second = await rt.error(event.request_id, b'{"errorMessage":"2","errorType":"E"}')
        return first, second

    _, outcome, (first, second) = await run_one(script)
    assert first.status == 202
    assert second.status == 403
    assert json.loads(outcome.body)["errorMessage"] == "1"
    assert second.text == refused("RuntimeResponseSentState", "InvocationErrorResponse")


async def test_response_and_error_from_a_stranger_are_forbidden_and_touch_nothing():
    async def script(rt):
        event = await rt.next()
        base = rt.url(f"{RUNTIME}/invocation/{event.request_id}")
        by_stranger = (await from_address(STRANGER, "POST", f"{base}/response", b'"stolen"'),
                       await from_address(STRANGER, "POST", f"{base}/error", b'{"errorType":"E"}'))
        await rt.respond(event.request_id, b'"mine"')
        return by_stranger

    _, outcome, (response, error) = await run_one(script)
    assert (response.status, error.status) == (403, 403)
    assert response.text == error.text == unknown_sandbox(STRANGER)
    assert outcome.body == b'"mine"'


# --- POST /runtime/init/error ------------------------------------------------------------------

async def test_init_error_is_accepted_and_the_cold_start_caller_gets_the_runtimes_document():
    document = (b'{"errorMessage":"Unable to import module \'app\': No module named \'x\'",'
                b'"errorType":"Runtime.ImportModuleError","stackTrace":[]}')

    async def script(rt):
        return await rt.init_error(document, {H_FUNCTION_ERROR_TYPE: "Runtime.ImportModuleError",
                                              "Content-Type": "application/json"})

    program, result = scripted(script, stay=False)
    async with fake_host(function(), program=program) as host:
        inv, outcome = await outcome_of(host)
        answer = await answers(result)
    assert answer.status == 202
    assert answer.text == ACCEPTED
    assert inv.cold
    assert outcome.body == document
    assert outcome.error_type == "Runtime.ImportModuleError"
    assert outcome.status == "error"


async def test_second_init_error_is_forbidden():
    # spec §1.6, §1.11: the runtime is in InitError; a second /init/error is refused naming that state.
    async def script(rt):
        first = await rt.init_error(b'{"errorMessage":"1","errorType":"Runtime.Broken"}')
        second = await rt.init_error(b'{"errorMessage":"2","errorType":"Runtime.Broken"}')
        return first, second

    program, result = scripted(script, stay=False)
    async with fake_host(function(), program=program) as host:
        _, outcome = await outcome_of(host)
        first, second = await answers(result)
    assert first.status == 202
    assert second.status == 403
    assert json.loads(outcome.body)["errorMessage"] == "1"
    assert second.text == refused("InitError", "InitError")


async def test_init_error_after_init_is_forbidden():
    async def script(rt):
        event = await rt.next()
        late = await rt.init_error(b'{"errorMessage":"too late","errorType":"Runtime.Broken"}')
        await rt.respond(event.request_id, b'"still fine"')
        return late

    _, outcome, late = await run_one(script)
    assert late.status == 403
    assert late.text == refused("Running", "InitError")
    assert outcome.body == b'"still fine"' and outcome.error_type is None


async def test_init_error_from_a_stranger_is_forbidden_unknown_sandbox():
    async with fake_host(function()) as host:
        answer = await from_address(STRANGER, "POST", f"http://{host.runtime_api_address}{INIT_ERROR}",
                                    b'{"errorMessage":"x","errorType":"y"}')
    assert answer.status == 403
    assert answer.text == unknown_sandbox(STRANGER)


# --- ping, unknown paths, wrong methods ----------------------------------------------------------

async def test_ping_answers_200_pong():
    async with fake_host(function()) as host:
        answer = await from_address(STRANGER, "GET", f"http://{host.runtime_api_address}/2018-06-01/ping")
    assert answer.status == 200
    assert answer.body == b"pong"
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize("path", ["/", "/2018-06-01/runtime/nothing", "/2018-06-01/runtime/invocation/abc/done",
                                  "/2019-01-01/runtime/invocation/next"])
async def test_unknown_path_is_404_page_not_found(path):
    async with fake_host(function()) as host:
        answer = await from_address(STRANGER, "GET", f"http://{host.runtime_api_address}{path}")
    assert answer.status == 404
    assert answer.text == "404 page not found\n"
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize("method, path, allow", [
    ("POST", NEXT, "GET"),
    ("GET", INIT_ERROR, "POST"),
    ("GET", f"{RUNTIME}/invocation/abc/response", "POST"),
    ("PUT", f"{RUNTIME}/invocation/abc/error", "POST"),
    ("POST", "/2018-06-01/ping", "GET"),
])
async def test_wrong_method_is_405_with_an_allow_header(method, path, allow):
    async with fake_host(function()) as host:
        answer = await from_address(STRANGER, method, f"http://{host.runtime_api_address}{path}")
    assert answer.status == 405
    assert answer.headers["Allow"] == allow
    assert answer.body == b""


# --- a sandbox on its own loopback listener (from a stem cell) --------------------------------------

def stem_program(seen: dict):
    """A stem cell's program: asks what to be, then calls its own listener as
    a stranger address would (the listener alone says who it is)."""
    async def program(process) -> int:
        async with session_from(process.container.address) as own:
            try:
                told = await call(own, "GET", f"http://{process.runtime_api}/runtime-host/stem")
            except aiohttp.ClientError:
                return 0
            if told.status != 200:
                return 0
            env = told.json()["env"]
            seen["told_api"] = env["AWS_LAMBDA_RUNTIME_API"]
            listener = seen["host"].fake.listener_address(process.container)
            async with aiohttp.ClientSession() as gateway_side:          # from 127.0.0.1
                seen["remote_of_calls"] = "127.0.0.1"
                event = await call(gateway_side, "GET", f"http://{listener}{NEXT}")
                seen["event"] = event
                seen["same_caller_on_gateway"] = await call(gateway_side, "GET",
                                                            f"http://{process.runtime_api}{NEXT}")
                seen["stem_again"] = await call(own, "GET", f"http://{process.runtime_api}/runtime-host/stem")
                seen["response"] = await call(gateway_side, "POST", f"http://{listener}{RUNTIME}/invocation/"
                                              f"{event.request_id}/response", b'"via listener"')
                await call(gateway_side, "GET", f"http://{listener}{NEXT}")
        await process.sigterm.wait()
        return 0
    return program


async def test_sandbox_from_a_stem_is_known_by_its_listener_not_its_address():
    seen: dict = {}
    async with fake_host(function(), stem_cells=1, loopback_listener=True, program=stem_program(seen)) as host:
        seen["host"] = host
        inv, outcome = await outcome_of(host, b'{"via":"stem"}')
    assert seen["told_api"] == LOOPBACK_RUNTIME_API == "127.0.0.1:9001"
    assert seen["event"].status == 200
    assert seen["event"].request_id == inv.request_id
    assert seen["event"].body == b'{"via":"stem"}'
    assert seen["response"].status == 202
    assert outcome.body == b'"via listener"'
    # The same caller, on the gateway's Runtime API, is known by its address: a stranger.
    assert seen["same_caller_on_gateway"].status == 403
    assert seen["same_caller_on_gateway"].text == unknown_sandbox(seen["remote_of_calls"])


async def test_stem_endpoint_refuses_a_non_stem_address_with_403_unknown_stem():
    seen: dict = {}
    async with fake_host(function(), stem_cells=1, loopback_listener=True, program=stem_program(seen)) as host:
        seen["host"] = host
        stranger = await from_address(STRANGER, "GET", f"http://{host.runtime_api_address}/runtime-host/stem")
        await outcome_of(host)
    assert stranger.status == 403
    assert stranger.json() == {"errorType": "UnknownStem",
                               "errorMessage": f"{STRANGER} is not a stem cell of this host"}
    # A stem that has become a sandbox is no longer a stem cell at its address.
    assert seen["stem_again"].status == 403
    assert seen["stem_again"].json()["errorType"] == "UnknownStem"
