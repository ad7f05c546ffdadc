"""AWS's own runtime clients, unchanged, as image functions on the newer
runtimes (tests/ric_new_runtimes.py): aws-lambda-ric 4.x on nodejs22.x and
awslambdaric on python3.13, served by a host of their own."""
from __future__ import annotations

import base64

import pytest

from tests.conftest import client_for, containers_of_host, docker, invoke, start_host, stop_host
from tests.ric_new_runtimes import build_functions

PYTHON_FAIL = ("RuntimeError", "failing on request")
NODE_FAIL = ("TypeError", "failing on request")


@pytest.fixture(scope="module")
def client(docker_engine, tmp_path_factory):
    running = start_host(build_functions(tmp_path_factory), tmp_path_factory.mktemp("ric-new-state"))
    yield client_for(running.endpoint)
    stop_host(running)
    left = containers_of_host(running.pid)
    if left:
        docker("rm", "-f", *left, check=False)
    assert running.proc.returncode == 0, running.stderr()
    assert left == []


@pytest.mark.parametrize("name, ric, version", [("ric4-node22", "node", "v22."), ("ric-py313", "python", "3.13")])
def test_aws_client_answers_cold_then_warm_with_its_context(client, name, ric, version):
    resp, first = invoke(client, name, {"k": "v"}, LogType="Tail")
    assert "FunctionError" not in resp, first
    assert first["ric"] == ric and first["event"] == {"k": "v"} and first["count"] == 1
    assert str(first.get("node", first.get("python"))).startswith(version), first
    assert first["request_id"] == resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert 0 < first["remaining_ms"] <= 10_000
    assert "handler saw" in base64.b64decode(resp["LogResult"]).decode()
    _, second = invoke(client, name, {"k": 2})
    assert second["count"] == 2 and second["event"] == {"k": 2}


@pytest.mark.parametrize("name, expected", [("ric4-node22", NODE_FAIL), ("ric-py313", PYTHON_FAIL)])
def test_aws_client_reports_a_handler_error_as_unhandled(client, name, expected):
    resp, err = invoke(client, name, {"fail": True})
    assert resp["FunctionError"] == "Unhandled"
    assert (err["errorType"], err["errorMessage"]) == expected, err
