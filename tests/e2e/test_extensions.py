"""Extensions and telemetry end to end (spec §8): unmodified external
extensions from layers, one in bash with curl and one in Python, run beside
real runtimes in real containers."""
from __future__ import annotations

import base64
import json
import re
import time

from tests.conftest import invoke


def wait_for(predicate, timeout_s: float = 20.0, every_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every_s)


def test_a_bash_extension_registers_before_the_runtime_starts_and_gets_each_invoke(lambda_client, host):
    cold, _ = invoke(lambda_client, "sh-ext", {}, LogType="Tail")
    warm, _ = invoke(lambda_client, "sh-ext", {}, LogType="Tail")
    log = host.log_of("sh-ext")
    assert log.index("EXTENSION\tName: sh-ext\tState: Ready\tEvents: [INVOKE, SHUTDOWN]") < log.index("runtime starting")
    for resp in (cold, warm):
        request_id = resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
        tail = base64.b64decode(resp["LogResult"]).decode()
        got = re.search(r"sh-ext got (\{.*\})", tail)
        assert got, tail
        event = json.loads(got.group(1))
        assert event["eventType"] == "INVOKE" and event["requestId"] == request_id
        assert event["invokedFunctionArn"].endswith(":function:sh-ext")
        # The extension works 0.3 s after each INVOKE: the invocation lasts
        # until it is back in event/next (a lower bound: noise only adds).
        duration = float(re.search(r"Duration: ([\d.]+) ms", tail).group(1))
        assert duration >= 300, tail


def test_a_bash_extension_gets_shutdown_when_its_sandbox_is_reaped(lambda_client, host):
    invoke(lambda_client, "sh-ext", {})
    # idle_ttl_s = 2: the reaper removes the sandbox, SHUTDOWN comes first.
    log = wait_for(lambda: "sh-ext shutting down" in host.log_of("sh-ext") and host.log_of("sh-ext"))
    assert log, host.log_of("sh-ext")[-2000:]
    shutdown = json.loads(re.findall(r"sh-ext got (\{.*SHUTDOWN.*\})", log)[-1])
    assert shutdown["shutdownReason"] == "spindown" and shutdown["deadlineMs"] > time.time() * 1000 - 60_000


def test_a_python_telemetry_extension_receives_every_event_of_a_cold_and_a_warm_invocation(lambda_client, host):
    _, cold = invoke(lambda_client, "py-telemetry", {})
    _, warm = invoke(lambda_client, "py-telemetry", {})
    ids = (cold["request_id"], warm["request_id"])

    def lines():
        return [line.split(" | ", 1)[-1] for line in host.log_of("py-telemetry").splitlines()
                if "telemetry " in line and not line.split(" | ", 1)[-1].startswith("TELEMETRY")]

    seen = wait_for(lambda: sum(f"platform.report {ids[1]}" in line for line in lines()) and lines())
    assert seen, host.log_of("py-telemetry")[-3000:]
    types = [line.split()[1] for line in seen if line.startswith("telemetry ")]
    init = ["platform.initStart", "platform.extension", "platform.telemetrySubscription",
            "platform.initRuntimeDone", "platform.initReport"]
    assert types[:5] == init, types
    for request_id in ids:
        mine = [line.split()[1] for line in seen if request_id in line]
        assert mine == ["platform.start", "platform.runtimeDone", "platform.report"], (request_id, seen)
    assert "telemetry function handler says hello" in seen


def test_an_extension_that_exits_during_init_fails_the_invocation_with_extension_crash(lambda_client, host):
    resp, body = invoke(lambda_client, "py-ext-crash", {}, LogType="Tail")
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Extension.Crash" and "crasher exited with status 1" in body["errorMessage"]
    assert "crasher: giving up" in host.log_of("py-ext-crash")
