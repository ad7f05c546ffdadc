"""The Runtime API as runtimes see it (spec §1): refusals, isolation between
sandboxes, and the real AWS client (awslambdaric) served unchanged."""
from __future__ import annotations

import base64
import json
import re
import subprocess
import threading
import time

from tests.conftest import docker, invoke


def test_wrong_id_and_late_init_error_are_refused_and_the_invocation_survives(lambda_client):
    resp, body = invoke(lambda_client, "sh-protocol", {"n": 1}, LogType="Tail")
    assert "FunctionError" not in resp
    assert body["event"] == {"n": 1}, "the invocation got the right answer despite the bad calls"
    assert body["wrong_id"] == 400
    assert body["wrong_id_body"] == {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"}
    assert body["late_init_error"] == 403
    assert body["late_init_error_body"]["errorType"] == "InvalidStateTransition"


def test_second_response_for_same_request_is_rejected(lambda_client):
    resp, _ = invoke(lambda_client, "sh-protocol", {"n": 2}, LogType="Tail")
    tail = base64.b64decode(resp["LogResult"]).decode()
    line = next(l for l in tail.splitlines() if l.startswith("first="))
    assert line.startswith("first=202 second=403 ")
    refusal = json.loads(line.split(" ", 2)[2])
    assert refusal == {"errorType": "InvalidStateTransition", "errorMessage":
                       "State transition from RuntimeResponseSentState to InvocationResponse failed for runtime. "
                       "Error: State transition is not allowed"}


def test_chunked_response_body_is_read_whole(lambda_client):
    # sh-protocol posts its answer with Transfer-Encoding: chunked, as Go's client does.
    _, body = invoke(lambda_client, "sh-protocol", {"text": "ünïcödé ✓"})
    assert body["event"] == {"text": "ünïcödé ✓"}


def test_awslambdaric_is_served_unchanged(lambda_client):
    resp, first = invoke(lambda_client, "py-awslambdaric", {"k": "v"}, LogType="Tail")
    assert "FunctionError" not in resp, first
    assert first["ric"] is True and first["event"] == {"k": "v"}
    assert first["request_id"] == resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert 0 < first["remaining_ms"] <= 5000
    assert "awslambdaric handler saw" in base64.b64decode(resp["LogResult"]).decode()
    _, second = invoke(lambda_client, "py-awslambdaric", {})
    assert second["count"] == first["count"] + 1
    resp, err = invoke(lambda_client, "py-awslambdaric", {"fail": True})
    assert resp["FunctionError"] == "Unhandled"
    assert err["errorType"] == "RuntimeError" and err["errorMessage"] == "failing on request"


def test_another_container_can_neither_fetch_nor_answer_a_sandboxs_invocation(lambda_client, host):
    from runtime_host.backend.docker import image_builder as images

    result = {}
    slow = threading.Thread(target=lambda: result.update(
        zip(("resp", "body"), invoke(lambda_client, "py-probe", {"action": "sleep", "seconds": 2}))))
    slow.start()
    deadline = time.monotonic() + 10
    live_id = None
    while live_id is None and time.monotonic() < deadline:
        text = host.log_of("py-probe")
        running = set(re.findall(r"START RequestId: (\S+)", text)) - set(re.findall(r"END RequestId: (\S+)", text))
        live_id = running.pop() if running else None
        time.sleep(0.05)
    assert live_id, "the slow invocation started"
    network = host.network()
    gateway = docker("network", "inspect", network, "--format", "{{(index .IPAM.Config 0).Gateway}}").strip()
    api = f"http://{gateway}:9001/2018-06-01/runtime"
    script = (f"curl -s -m 5 -o /tmp/b -w '%{{http_code}}' {api}/invocation/next; echo \" $(cat /tmp/b)\"; "
              f"curl -s -m 5 -o /tmp/b -w '%{{http_code}}' -X POST -d '\"stolen\"' "
              f"{api}/invocation/{live_id}/response; echo \" $(cat /tmp/b)\"")
    out = subprocess.run(["docker", "run", "--rm", "--network", network, "--label", "runtime-host.test=intruder",
                          images.image_tag("provided"), "sh", "-c", script],
                         capture_output=True, text=True, timeout=60).stdout.splitlines()
    slow.join(timeout=30)
    assert out[0].startswith("403 ") and "UnknownSandbox" in out[0], out
    assert out[1].startswith("403 ") and "UnknownSandbox" in out[1], out
    assert result["body"]["event"] == {"action": "sleep", "seconds": 2}, "the real sandbox answered its own invocation"
    assert "FunctionError" not in result["resp"]
