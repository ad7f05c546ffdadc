"""An Invoke payload must be JSON as Lambda's parser reads it (issue 16,
defect 9): NaN, Infinity and -Infinity, which Python's json.loads takes, are
not JSON (RFC 8259), and Lambda's Invoke API refuses them (its frontend's
Jackson parser has ALLOW_NON_NUMERIC_NUMBERS off) with 400
InvalidRequestContentException, before anything runs."""
from __future__ import annotations


import pytest

from tests.unit.fakehost import function
from tests.unit.test_invoke_api_fake import BASE, invoke_api

INVALID = "InvalidRequestContentException"


@pytest.mark.parametrize("payload, token", [
    (b"NaN", "NaN"),
    (b"Infinity", "Infinity"),
    (b"-Infinity", "-Infinity"),
    (b'{"k": NaN}', "NaN"),
    (b'{"a": [1, 2, {"b": Infinity}]}', "Infinity"),
    (b"[-Infinity]", "-Infinity"),
])
async def test_a_payload_holding_a_non_numeric_number_is_invalid_request_content_naming_it(payload, token):
    async with invoke_api(function()) as (host, http):
        async with http.post(f"{BASE}/fn/invocations", data=payload) as r:
            assert r.status == 400
            assert r.headers["x-amzn-ErrorType"] == INVALID
            message = (await r.json())["message"]
        assert message.startswith(f"Could not parse request body into json: Non-standard token '{token}'")
        log = host.log_path("fn")
        assert not log.exists() or "START" not in log.read_text()          # nothing ran


@pytest.mark.parametrize("invocation_type", ["Event", "DryRun"])
async def test_every_invocation_type_refuses_nan(invocation_type):
    async with invoke_api(function()) as (_, http):
        async with http.post(f"{BASE}/fn/invocations", data=b'{"k": NaN}',
                             headers={"X-Amz-Invocation-Type": invocation_type}) as r:
            assert r.status == 400 and r.headers["x-amzn-ErrorType"] == INVALID


async def test_nan_as_a_string_and_a_number_too_big_for_a_double_are_json_and_accepted():
    async with invoke_api(function()) as (_, http):
        async with http.post(f"{BASE}/fn/invocations", data=b'{"echo": ["NaN", "Infinity"], "big": 1e400}') as r:
            assert r.status == 200 and await r.json() == ["NaN", "Infinity"]
