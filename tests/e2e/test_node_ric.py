"""AWS's Node runtime interface client (npm aws-lambda-ric, tests/ric_node.py)
as a container-image function: the real client, served unchanged."""
from __future__ import annotations

import base64

from tests.conftest import invoke


def test_node_ric_handler_answers_with_the_event_and_its_context(lambda_client):
    resp, body = invoke(lambda_client, "node-ric", {"k": "v"}, LogType="Tail")
    assert "FunctionError" not in resp, body
    assert body["ric"] == "node" and body["event"] == {"k": "v"}
    assert body["request_id"] == resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert 0 < body["remaining_ms"] <= 10000
    log = base64.b64decode(resp["LogResult"]).decode()
    assert 'node ric handler saw {"k":"v"}' in log, log


def test_node_ric_handler_error_is_unhandled_with_its_type_and_message(lambda_client):
    resp, err = invoke(lambda_client, "node-ric-fail", {})
    assert resp["FunctionError"] == "Unhandled"
    assert err["errorType"] == "Error" and err["errorMessage"] == "failing on request", err


def test_node_ric_second_invocation_is_warm(lambda_client):
    _, first = invoke(lambda_client, "node-ric", {"n": 1})
    _, second = invoke(lambda_client, "node-ric", {"n": 2})
    # Same process: the id the module drew when it was loaded, and its counter.
    # (process.pid alone proves nothing: each container's node has the same pid.)
    assert second["instance"] == first["instance"] and second["pid"] == first["pid"]
    assert second["count"] == first["count"] + 1
    assert second["event"] == {"n": 2}
