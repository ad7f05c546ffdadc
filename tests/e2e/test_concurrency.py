"""max_concurrency end to end: one sandbox of our Python and Node runtimes
serves three boto3 callers at once (spec §4.1, docs/spec-additions.md §5)."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import invoke


def sandboxes_of(lambda_client, host, name: str) -> list[dict]:
    import urllib.request
    rows = json.load(urllib.request.urlopen(f"{host.endpoint}/runtime-host/sandboxes"))["sandboxes"]
    return [r for r in rows if r.get("function") == name]


@pytest.mark.parametrize("name", ["py-concurrent", "node-concurrent"])
def test_one_sandbox_serves_three_callers_at_once(lambda_client, host, name):
    invoke(lambda_client, name, {"together": 1})          # its sandbox is up and idle
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: invoke(lambda_client, name, {"together": 3}), range(3)))
    for resp, body in answers:
        assert "FunctionError" not in resp, body
        assert body["request_id"] == resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
        assert body["seen_at_once"] == 3, body             # all three were inside it together
    assert len(sandboxes_of(lambda_client, host, name)) == 1
