"""Sandboxes as Lambda runs them: environment, reuse, concurrency, timeouts,
crashes and init failures, on the real engine with real runtime clients."""
from __future__ import annotations

import base64
import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from tests.conftest import client_for, containers_of_host, docker, invoke, start_host, stop_host


def test_sandbox_environment_is_lambdas(lambda_client):
    _, body = invoke(lambda_client, "py-probe", {"action": "env"})
    env = body["env"]
    assert env["_HANDLER"] == "probe.handler"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "py-probe"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["LAMBDA_TASK_ROOT"] == "/var/task"
    assert env["LAMBDA_RUNTIME_DIR"] == "/var/runtime"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["TZ"] == ":UTC"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.11"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/py-probe"
    assert "[$LATEST]" in env["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert env["AWS_LAMBDA_RUNTIME_API"] == "127.0.0.1:9001", "as on Lambda: its own loopback"
    assert env["_X_AMZN_TRACE_ID"].startswith("Root=1-")
    assert env["PROBE_SETTING"] == "from function.toml"
    assert body["cwd"] == "/var/task"
    assert body["uid"] == 993
    assert body["writable"] == {"/tmp": True, "/var/task": False, "/": False, "/var/runtime": False, "/opt": False}


def test_dev_shm_is_not_writable_only_tmp_is(lambda_client):
    """Lambda has no writable /dev/shm (issue 16, defect 8)."""
    resp, body = invoke(lambda_client, "py-probe", {"action": "write", "paths": ["/tmp", "/dev/shm"]})
    assert "FunctionError" not in resp, body
    assert body["written"]["/tmp"] == "ok"
    assert body["written"]["/dev/shm"] in ("EROFS", "EACCES"), body


def test_context_object_matches_the_invocation(lambda_client):
    resp, body = invoke(lambda_client, "py-probe", {})
    assert body["request_id"] == resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert body["function_name"] == "py-probe"
    assert body["function_version"] == "$LATEST"
    assert body["invoked_function_arn"] == "arn:aws:lambda:us-east-1:000000000000:function:py-probe"
    assert body["memory_limit_in_mb"] == "128"     # a string, as awslambdaric gives it
    assert 0 < body["remaining_ms"] <= 3000


def test_trace_id_changes_per_invocation(lambda_client):
    _, first = invoke(lambda_client, "py-probe", {})
    _, second = invoke(lambda_client, "py-probe", {})
    assert first["env"]["_X_AMZN_TRACE_ID"] != second["env"]["_X_AMZN_TRACE_ID"]


def test_warm_sandbox_is_reused_with_its_module_state(lambda_client):
    _, first = invoke(lambda_client, "py-probe", {})
    _, second = invoke(lambda_client, "py-probe", {})
    assert second["pid"] == first["pid"]
    assert second["invocations"] == first["invocations"] + 1


def test_concurrent_invocations_start_more_sandboxes_up_to_the_limit(lambda_client, host):
    # py-probe has reserved_concurrency = 2: two run side by side, a third is
    # throttled while both are still busy (not queued until one frees up).
    def slow():
        return invoke(lambda_client, "py-probe", {"action": "sleep", "seconds": 2.5})

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(slow) for _ in range(2)]
        deadline = time.monotonic() + 20
        while len(busy_probe_sandboxes(host)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(busy_probe_sandboxes(host)) == 2, "both slow invocations are running"
        with pytest.raises(ClientError) as err:
            lambda_client.invoke(FunctionName="py-probe", Payload=b"{}")
        still_running = sum(not f.done() for f in futures)
        results = [f.result() for f in futures]
    assert err.value.response["Error"]["Code"] == "TooManyRequestsException"
    assert still_running == 2, "the throttle was answered while both sandboxes were busy, without waiting for one"
    hostnames = {body["hostname"] for _, body in results}
    assert len(hostnames) == 2, "two concurrent invocations ran in two sandboxes"
    assert all("FunctionError" not in resp for resp, _ in results)


def busy_probe_sandboxes(host) -> list[dict]:
    view = json.load(urllib.request.urlopen(f"{host.endpoint}/runtime-host/sandboxes"))
    return [r for r in view["sandboxes"] if r["function"] == "py-probe" and r["state"] == "BUSY"]


def probe_sandboxes(host) -> set[str]:
    """The containers (12-hex ids, = the sandbox's hostname) of py-probe, from the host's own view."""
    view = json.load(urllib.request.urlopen(f"{host.endpoint}/runtime-host/sandboxes"))
    return {r["container"] for r in view["sandboxes"] if r["function"] == "py-probe" and r["state"] != "SHUTTING_DOWN"}


def removed_since(host, before: set[str]) -> set[str]:
    """Waits until at least one of `before` is gone; returns those gone."""
    deadline = time.monotonic() + 10
    while not (gone := before - probe_sandboxes(host)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return gone


def test_timeout_ends_the_invocation_with_aws_error_and_a_fresh_sandbox_follows(lambda_client, host):
    invoke(lambda_client, "py-probe", {})
    before = probe_sandboxes(host)
    resp, body = invoke(lambda_client, "py-probe", {"action": "sleep", "seconds": 10}, LogType="Tail")
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    rid = resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert body["errorMessage"] == f"RequestId: {rid} Error: Task timed out after 3.00 seconds"
    import base64
    tail = base64.b64decode(resp["LogResult"]).decode()
    assert f"{rid} Task timed out after 3.00 seconds" in tail
    assert "Status: timeout" in tail
    gone = removed_since(host, before)
    assert len(gone) == 1, "the timed-out sandbox is destroyed"
    _, after = invoke(lambda_client, "py-probe", {})
    assert after["hostname"] not in gone, "and never reused"


def test_runtime_exit_mid_invocation_is_exit_error_and_sandbox_is_replaced(lambda_client, host):
    invoke(lambda_client, "py-probe", {})
    before = probe_sandboxes(host)
    resp, body = invoke(lambda_client, "py-probe", {"action": "exit", "code": 7})
    rid = resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert resp["FunctionError"] == "Unhandled"
    assert body == {"errorType": "Runtime.ExitError",
                    "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: exit status 7"}
    # (a timeout would have answered Sandbox.Timedout: the exit itself ended it)
    gone = removed_since(host, before)
    assert len(gone) == 1, "the sandbox whose runtime exited is removed"
    _, after = invoke(lambda_client, "py-probe", {})
    assert after["hostname"] not in gone, "and replaced, never reused"
    # the dead container was removed
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        names = docker("ps", "-a", "--filter", f"label=runtime-host.host-pid={host.pid}",
                       "--filter", "status=exited", "--format", "{{.Names}}").split()
        if not names:
            break
        time.sleep(0.1)
    assert names == []


def test_init_error_reported_by_the_runtime_reaches_the_caller(lambda_client):
    resp, body = invoke(lambda_client, "py-import-error", {})
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ImportModuleError"
    assert "missing_module" in body["errorMessage"]


def test_runtime_exiting_during_init_is_exit_error(lambda_client):
    resp, body = invoke(lambda_client, "sh-exit-init", {})
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError"
    assert body["errorMessage"].endswith("Error: Runtime exited with error: exit status 3")
    # and again: every invocation gets a fresh sandbox, none is reused; its REPORT says what
    # the runtime used before it exited (a few MB), not the memory size (128 MB)
    resp, body = invoke(lambda_client, "sh-exit-init", {}, LogType="Tail")
    assert body["errorType"] == "Runtime.ExitError"
    report = base64.b64decode(resp["LogResult"]).decode().splitlines()[-1]
    used_mb = int(report.split("Max Memory Used: ")[1].split(" MB")[0])
    assert 0 < used_mb < 64, report


def test_response_over_the_limit_is_response_size_too_large(lambda_client):
    resp, body = invoke(lambda_client, "py-probe", {"action": "big", "bytes": 6_300_000})
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Function.ResponseSizeTooLarge"
    assert "(6291556 bytes)" in body["errorMessage"]
    resp, body = invoke(lambda_client, "py-probe", {})
    assert "FunctionError" not in resp


def test_five_mb_response_is_delivered_whole(lambda_client):
    resp, body = invoke(lambda_client, "py-probe", {"action": "big", "bytes": 5 * 1024 * 1024})
    assert "FunctionError" not in resp
    assert body == "x" * (5 * 1024 * 1024)


def test_no_container_outlives_its_sandbox(lambda_client, host):
    # everything the host holds is a live sandbox it knows; nothing exited lingers
    # One `docker ps` lists ids with states atomically (an inspect after a
    # separate list failed in CI when the reaper removed an idle sandbox in
    # between). A container caught between its exit and its removal is fine;
    # one still there after a few seconds lingers.
    invoke(lambda_client, "hello-python", {})
    deadline = time.monotonic() + 5
    while True:
        rows = docker("ps", "-a", "--filter", f"label=runtime-host.host-pid={host.pid}",
                      "--format", "{{.ID}} {{.State}}").split("\n")
        lingering = [r for r in rows if r.strip() and not r.endswith(" running")]
        if not lingering or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not lingering, lingering


def test_sandbox_memory_limit_is_memory_mb_without_swap(lambda_client, host):
    _, body = invoke(lambda_client, "py-probe", {})
    hostname = body["hostname"]
    ids = containers_of_host(host.pid)
    rows = docker("inspect", "--format",
                  "{{.Config.Hostname}} {{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.ReadonlyRootfs}} "
                  "{{.HostConfig.PidsLimit}} {{.Config.User}}", *ids).splitlines()
    row = next(r for r in rows if r.startswith(hostname))
    assert row.split()[1:] == [str(128 * 1024 * 1024), str(128 * 1024 * 1024), "true", "1024", "993:990"]


def test_sandbox_that_cannot_start_is_service_exception(lambda_client):
    with pytest.raises(ClientError) as err:
        lambda_client.invoke(FunctionName="img-missing", Payload=b"{}")
    assert err.value.response["Error"]["Code"] == "ServiceException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert "runtime-host-test/never-built:1" in err.value.response["Error"]["Message"]


def test_without_stem_cells_sandboxes_reach_the_runtime_api_on_the_gateway(functions_dir, tmp_path):
    # No stems: the runtime starts directly and is known by its address on the
    # host's network (the path runtime = "image" functions always take).
    extra = start_host(functions_dir, tmp_path / "no-stems", extra_args=["--stem-cells", "0"])
    try:
        client = client_for(extra.endpoint)
        _, first = invoke(client, "py-probe", {})
        _, second = invoke(client, "py-probe", {})
        address = first["env"]["AWS_LAMBDA_RUNTIME_API"]
        assert address != "127.0.0.1:9001" and address.endswith(".1:9001"), address
        assert second["pid"] == first["pid"], "warm reuse works the same on the gateway"
        assert first["stdout"].startswith("pipe:"), "output through Docker's attach stream"
    finally:
        stop_host(extra)


def test_output_goes_to_the_hosts_fifo_and_reaches_the_tail(lambda_client):
    resp, body = invoke(lambda_client, "py-probe", {"action": "print", "lines": ["via the fifo"]}, LogType="Tail")
    assert body["stdout"] == body["stderr"] == "/var/runtime-host/out", "not through Docker"
    tail = base64.b64decode(resp["LogResult"]).decode()
    assert "via the fifo\n" in tail and tail.index("via the fifo") < tail.index("END RequestId")
