"""The in-sandbox runtime clients (Python, Node, the shell example) against a fake Runtime API.

Each test starts the fake server (tests/fake_runtime_api.py), runs one client
as a subprocess with the environment the host gives a sandbox, and checks what
the client sent: bodies, content types, error documents, init errors, exit
statuses. No Docker and no host involved; the clients run on this machine.
The last section drives the Python client's own HTTP/1.1 layer in-process
against a server that answers with scripted bytes.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import queue
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import tomllib
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from tests.fake_runtime_api import API_PREFIX, FakeRuntimeApi

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "clients"
EXAMPLES = REPO / "examples"

# The images run Debian's /usr/bin/python3; it has no site-packages of ours,
# which also proves the client needs nothing beyond the standard library.
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
NODE = shutil.which("node")
CURL = shutil.which("curl")

CLIENT_COMMANDS = {
    # -B: the handler modules live in this checkout; leave no __pycache__ there.
    "python": [PYTHON, "-u", "-B", str(REPO / "bootstrap" / "python" / "runtime_client.py")],
    "node": [NODE or "node", str(REPO / "bootstrap" / "node" / "runtime.js")],
    "shell": [str(EXAMPLES / "hello-shell" / "bootstrap")],
}

needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")
RUNTIMES = ["python", pytest.param("node", marks=needs_node)]

# Exit status after an init error: awslambdaric sys.exit(1); aws-lambda-ric 129.
INIT_ERROR_EXIT_STATUS = {"python": 1, "node": 129, "shell": 1}

EXIT_WAIT_S = 5


class RunningClient:
    """A client subprocess, its output captured to files (no pipe to fill up)."""

    def __init__(self, process: subprocess.Popen, stdout_path: Path, stderr_path: Path):
        self.process = process
        self._stdout_path = stdout_path
        self._stderr_path = stderr_path

    def wait_exit(self, timeout_s: float = EXIT_WAIT_S) -> int:
        return self.process.wait(timeout_s)

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stdout(self) -> str:
        return self._stdout_path.read_text()

    def stderr(self) -> str:
        return self._stderr_path.read_text()


@pytest.fixture
def api():
    server = FakeRuntimeApi().start()
    yield server
    server.stop()


@pytest.fixture
def start_client(api, tmp_path):
    """start_client(runtime, task_root, handler, server=api, **extra_env) -> RunningClient."""
    started: list[subprocess.Popen] = []

    def start(runtime: str, task_root: Path, handler: str, server: FakeRuntimeApi | None = None,
              **extra_env: str) -> RunningClient:
        server = server or api
        # Only what the host sets in a sandbox (spec section 4.1), plus PATH.
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_LAMBDA_RUNTIME_API": server.address,
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": str(task_root),
            "LAMBDA_RUNTIME_DIR": str(REPO / "bootstrap" / runtime),
            "AWS_LAMBDA_FUNCTION_NAME": "probe",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/probe",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/31/[$LATEST]0123456789abcdef",
            "AWS_REGION": "us-east-1",
            "TZ": ":UTC",
        }
        env.update(extra_env)
        index = len(started)
        stdout_path = tmp_path / f"client{index}.stdout"
        stderr_path = tmp_path / f"client{index}.stderr"
        with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
            process = subprocess.Popen(CLIENT_COMMANDS[runtime], env=env, cwd=task_root,
                                       stdout=stdout, stderr=stderr)
        started.append(process)
        return RunningClient(process, stdout_path, stderr_path)

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(EXIT_WAIT_S)


def invoke(api: FakeRuntimeApi, event=None, **options):
    """Queue one event and return what the client posted for it."""
    request_id = api.enqueue(event, **options)
    return api.wait_for_result(request_id)


# Where each runtime's probe handlers live (tests/fixtures/clients/<runtime>/probe.*).
PROBE_ROOT = {"python": FIXTURES / "python", "node": FIXTURES / "node", "shell": FIXTURES / "shell"}


# ---------------------------------------------------------------------------
# The example functions


def test_python_example_answers_greeting_as_json(api, start_client):
    client = start_client("python", EXAMPLES / "hello-python", "app.handler", GREETING="hi")
    result = invoke(api, {"name": "ada"})
    assert result.kind == "response"
    assert result.headers["content-type"] == "application/json"
    body = result.json()
    assert body == {"message": "hi from python", "event": {"name": "ada"}, "invocation": 1,
                    "request_id": result.request_id}
    assert f"request {result.request_id}" in client.stdout()


@needs_node
def test_node_example_answers_greeting_as_json(api, start_client):
    client = start_client("node", EXAMPLES / "hello-node", "index.handler", GREETING="hi")
    result = invoke(api, {"name": "ada"})
    assert result.kind == "response"
    assert result.headers["content-type"] == "application/json"
    assert result.json() == {"message": "hi from node", "event": {"name": "ada"}, "invocation": 1,
                             "request_id": result.request_id}
    assert f"request {result.request_id}" in client.stdout()


@needs_curl
def test_shell_example_answers_greeting_as_json(api, start_client):
    client = start_client("shell", EXAMPLES / "hello-shell", "function.handler")
    result = invoke(api, {"name": "ada", "list": [1, 2]})
    assert result.kind == "response"
    assert result.headers["content-type"] == "application/json"
    assert result.json() == {"message": "hello from shell", "event": {"name": "ada", "list": [1, 2]}}
    assert "hello-shell: handling an event" in client.stderr()


@pytest.mark.parametrize("runtime,root,handler", [
    ("python", EXAMPLES / "hello-python", "app.handler"),
    pytest.param("node", EXAMPLES / "hello-node", "index.handler", marks=needs_node),
])
def test_example_counts_invocations_across_warm_reuse(api, start_client, runtime, root, handler):
    start_client(runtime, root, handler)
    counts = [invoke(api, {"n": n}).json()["invocation"] for n in range(3)]
    assert counts == [1, 2, 3]


@pytest.mark.parametrize("example", ["hello-python", "hello-node", "hello-shell"])
def test_example_function_toml_names_its_handler(example):
    config = tomllib.loads((EXAMPLES / example / "function.toml").read_text())
    assert config["name"] == example
    assert config["memory_mb"] == 128 and config["timeout_s"] == 3
    module = config["handler"].rsplit(".", 1)[0]
    assert any((EXAMPLES / example / (module + ext)).exists() for ext in (".py", ".js", ".sh"))


# ---------------------------------------------------------------------------
# One process, many invocations


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_one_process_serves_three_invocations_keeping_module_state(api, start_client, runtime):
    client = start_client(runtime, PROBE_ROOT[runtime], "probe.count")
    bodies = [invoke(api, {}).json() for _ in range(3)]
    assert [body["calls"] for body in bodies] == [1, 2, 3]
    assert {body["pid"] for body in bodies} == {client.process.pid}
    assert client.is_running()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_call_reuses_one_keep_alive_connection(api, start_client, runtime):
    start_client(runtime, PROBE_ROOT[runtime], "probe.count")
    for _ in range(3):
        invoke(api, {})
    api.wait_for_requests("next", 4)  # the fourth is waiting for an event
    assert [r.kind for r in api.requests()] == ["next", "response"] * 3 + ["next"]
    assert len({r.client_port for r in api.requests()}) == 1


@needs_curl
def test_shell_example_carries_events_larger_than_one_command_argument(api, start_client):
    start_client("shell", EXAMPLES / "hello-shell", "function.handler")
    event = {"blob": "x" * 300_000}  # > 128 KiB, the most one argv string may hold
    result = invoke(api, event)
    assert result.kind == "response"
    assert result.json()["event"] == event


@needs_curl
def test_shell_bootstrap_serves_three_invocations_in_one_process(api, start_client):
    client = start_client("shell", EXAMPLES / "hello-shell", "function.handler")
    events = [invoke(api, {"n": n}).json()["event"] for n in range(3)]
    assert events == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert client.is_running()


# ---------------------------------------------------------------------------
# Context and environment per invocation


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_remaining_time_counts_down_from_the_deadline(api, start_client, runtime):
    start_client(runtime, PROBE_ROOT[runtime], "probe.remaining")
    first_ms, second_ms = invoke(api, {}, timeout_ms=3000).json()
    assert 0 < first_ms <= 3000
    assert second_ms < first_ms


def test_python_remaining_time_never_goes_below_zero(api, start_client):
    start_client("python", PROBE_ROOT["python"], "probe.remaining")
    assert invoke(api, {}, timeout_ms=-1000).json() == [0, 0]


@pytest.mark.parametrize("runtime", [*RUNTIMES, pytest.param("shell", marks=needs_curl)])
def test_trace_id_env_var_follows_each_invocation(api, start_client, runtime):
    start_client(runtime, PROBE_ROOT[runtime], "probe.trace")
    first = invoke(api, {}, trace_id="Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Sampled=1").json()
    second = invoke(api, {}, trace_id="Root=1-00000000-000000000000000000000002").json()
    without = invoke(api, {}).json()
    assert first == "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Sampled=1"
    assert second == "Root=1-00000000-000000000000000000000002"
    assert without in (None, "")  # cleared, not left over from the last event


def test_python_context_carries_function_and_invocation_details(api, start_client):
    start_client("python", PROBE_ROOT["python"], "probe.describe_context")
    result = invoke(api, {},
                    client_context={"client": {"installation_id": "inst-1"},
                                     "custom": {"k": "v"}, "env": {"platform": "test"}},
                    cognito_identity={"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"})
    assert result.json() == {
        "aws_request_id": result.request_id,
        "function_name": "probe",
        "function_version": "$LATEST",
        "invoked_function_arn": "arn:aws:lambda:us-east-1:000000000000:function:probe",
        "memory_limit_in_mb": "128",
        "log_group_name": "/aws/lambda/probe",
        "log_stream_name": "2024/01/31/[$LATEST]0123456789abcdef",
        "cognito_identity_id": "id-1",
        "cognito_identity_pool_id": "pool-1",
        "client_custom": {"k": "v"},
        "client_env": {"platform": "test"},
        "client_installation_id": "inst-1",
    }


def test_python_context_without_optional_headers_has_empty_identity(api, start_client):
    start_client("python", PROBE_ROOT["python"], "probe.describe_context")
    body = invoke(api, {}).json()
    assert body["cognito_identity_id"] is None and body["client_custom"] is None


@needs_node
def test_node_context_carries_function_and_invocation_details(api, start_client):
    start_client("node", PROBE_ROOT["node"], "probe.describeContext")
    result = invoke(api, {}, client_context={"custom": {"k": "v"}},
                    cognito_identity={"cognitoIdentityId": "id-1"})
    assert result.json() == {
        "awsRequestId": result.request_id,
        "functionName": "probe",
        "functionVersion": "$LATEST",
        "invokedFunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:probe",
        "memoryLimitInMB": "128",
        "logGroupName": "/aws/lambda/probe",
        "logStreamName": "2024/01/31/[$LATEST]0123456789abcdef",
        "callbackWaitsForEmptyEventLoop": True,
        "clientContext": {"custom": {"k": "v"}},
        "identity": {"cognitoIdentityId": "id-1"},
    }


# ---------------------------------------------------------------------------
# Handler failures -> POST /invocation/{id}/error


def test_python_handler_exception_posts_awslambdaric_error_document(api, start_client):
    client = start_client("python", PROBE_ROOT["python"], "probe.fail")
    result = invoke(api, {})
    assert result.kind == "error"
    assert result.headers["content-type"] == "application/json"
    body = result.json()
    assert set(body) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    assert body["errorMessage"] == "x"
    assert body["errorType"] == "ValueError"
    assert body["requestId"] == result.request_id
    # The trace starts at the user's frame, not in the runtime client.
    assert len(body["stackTrace"]) == 1
    assert re.fullmatch(r'  File ".*/probe\.py", line \d+, in fail\n    raise ValueError\("x"\)\n',
                        body["stackTrace"][0])
    assert "[ERROR] ValueError: x\nTraceback (most recent call last):\n" in client.stderr()
    assert client.is_running()


def test_python_unserialisable_result_posts_marshal_error(api, start_client):
    start_client("python", PROBE_ROOT["python"], "probe.unserialisable")
    body = invoke(api, {}).json()
    assert body["errorType"] == "Runtime.MarshalError"
    assert body["errorMessage"] == "Unable to marshal response: Object of type set is not JSON serializable"


def test_python_unparseable_event_posts_unmarshal_error(api, start_client):
    start_client("python", PROBE_ROOT["python"], "probe.echo")
    result = invoke(api, raw_body=b"{not json")
    assert result.kind == "error"
    assert result.json()["errorType"] == "Runtime.UnmarshalError"
    assert result.json()["errorMessage"].startswith("Unable to unmarshal input: ")


def test_python_event_that_is_not_json_reaches_handler_as_bytes(api, start_client):
    start_client("python", PROBE_ROOT["python"], "probe.echo")
    result = invoke(api, raw_body=b"plain text", content_type="text/plain")
    assert result.kind == "response"
    assert result.headers["content-type"] == "application/unknown"
    assert result.body == b"plain text"


def test_python_unparseable_client_context_posts_context_unmarshal_error(api, start_client):
    client = start_client("python", PROBE_ROOT["python"], "probe.count")
    result = invoke(api, {}, client_context="{not json")
    assert result.kind == "error"
    body = result.json()
    assert body["errorType"] == "Runtime.LambdaContextUnmarshalError"
    assert body["errorMessage"].startswith("Unable to parse Client Context JSON: ")
    assert client.is_running()


@needs_node
def test_node_async_handler_rejection_posts_error_with_trace(api, start_client):
    client = start_client("node", PROBE_ROOT["node"], "probe.fail")
    result = invoke(api, {})
    assert result.kind == "error"
    assert result.headers["content-type"] == "application/json"
    body = result.json()
    assert set(body) == {"errorType", "errorMessage", "trace"}
    assert body["errorType"] == "TypeError"
    assert body["errorMessage"] == "bad thing"
    assert body["trace"][0] == "TypeError: bad thing"
    assert "probe.js" in body["trace"][1]
    assert re.search(rf"\t{result.request_id}\tERROR\tInvoke Error \t\{{", client.stdout())
    assert client.is_running()


@needs_node
def test_node_callback_error_posts_error(api, start_client):
    start_client("node", PROBE_ROOT["node"], "probe.callbackError")
    body = invoke(api, {}).json()
    assert (body["errorType"], body["errorMessage"]) == ("RangeError", "out of range")


@needs_node
def test_node_unserialisable_result_posts_error(api, start_client):
    start_client("node", PROBE_ROOT["node"], "probe.unserialisable")
    result = invoke(api, {})
    assert result.kind == "error"
    assert result.json()["errorMessage"] == "Unable to stringify response body"


@needs_node
def test_node_promise_that_can_never_settle_posts_nodejs_exit(api, start_client):
    client = start_client("node", PROBE_ROOT["node"], "probe.neverSettles")
    result = invoke(api, {})
    assert result.kind == "error"
    assert result.json()["errorType"] == "Runtime.NodeJsExit"
    # The process goes on to the next event.
    assert invoke(api, {}).kind == "error"
    assert client.is_running()


@needs_node
def test_node_uncaught_exception_during_invoke_posts_error_then_exits_129(api, start_client):
    client = start_client("node", PROBE_ROOT["node"], "probe.throwsFromTimer")
    result = invoke(api, {})
    assert result.kind == "error"
    assert result.json()["errorMessage"] == "thrown from a timer"
    assert client.wait_exit() == 129


@needs_curl
def test_shell_handler_failure_posts_error(api, start_client):
    client = start_client("shell", PROBE_ROOT["shell"], "probe.fail")
    result = invoke(api, {})
    assert result.kind == "error"
    assert result.json() == {"errorMessage": "handler 'fail' exited with status 3",
                             "errorType": "HandlerError"}
    assert "failing on purpose" in client.stderr()
    assert client.is_running()


# ---------------------------------------------------------------------------
# Node programming models


@needs_node
def test_node_callback_handler_result_is_posted(api, start_client):
    start_client("node", PROBE_ROOT["node"], "probe.callbackSuccess")
    result = invoke(api, {"k": 1})
    assert result.kind == "response"
    assert result.json() == {"via": "callback", "event": {"k": 1}}


@needs_node
def test_node_context_succeed_result_is_posted(api, start_client):
    start_client("node", PROBE_ROOT["node"], "probe.contextSucceed")
    assert invoke(api, {}).json() == {"via": "context.succeed"}


@needs_node
def test_node_callback_waits_for_empty_event_loop_by_default(api, start_client):
    client = start_client("node", PROBE_ROOT["node"], "probe.callbackThenTimer")
    result = invoke(api, {"wait": True, "timerMs": 300})
    assert result.json() == {"waited": True}
    # The timer the handler left behind ran before the answer was posted.
    assert "timer fired" in client.stdout()


@needs_node
def test_node_callback_answers_at_once_when_told_not_to_wait(api, start_client):
    client = start_client("node", PROBE_ROOT["node"], "probe.callbackThenTimer")
    result = invoke(api, {"wait": False, "timerMs": 3000})
    assert result.json() == {"waited": False}
    assert "timer fired" not in client.stdout()


@needs_node
def test_node_loads_es_module_handler(api, start_client):
    start_client("node", PROBE_ROOT["node"], "esm.handler")
    assert invoke(api, {"k": 1}).json() == {"esm": True, "event": {"k": 1}}


# ---------------------------------------------------------------------------
# Init failures -> POST /init/error, then exit


def assert_init_error(api, client, runtime, error_type, message):
    report = api.wait_for_init_error()
    assert client.wait_exit() == INIT_ERROR_EXIT_STATUS[runtime]
    assert report.headers["lambda-runtime-function-error-type"] == error_type
    assert report.headers["content-type"] == "application/json"
    body = report.json()
    assert body["errorType"] == error_type
    if message is not None:
        assert body["errorMessage"] == message
    assert api.requests("next") == []  # init failed: the client never asked for an event
    return body


def test_python_missing_module_is_import_module_error(api, start_client):
    client = start_client("python", PROBE_ROOT["python"], "nope.handler")
    body = assert_init_error(api, client, "python", "Runtime.ImportModuleError",
                             "Unable to import module 'nope': No module named 'nope'")
    assert body["requestId"] == "" and body["stackTrace"] == []


def test_python_missing_handler_is_handler_not_found(api, start_client):
    client = start_client("python", PROBE_ROOT["python"], "probe.nope")
    assert_init_error(api, client, "python", "Runtime.HandlerNotFound",
                      "Handler 'nope' missing on module 'probe'")


def test_python_handler_without_dot_is_malformed_handler_name(api, start_client):
    client = start_client("python", PROBE_ROOT["python"], "probe")
    assert_init_error(api, client, "python", "Runtime.MalformedHandlerName",
                      "Bad handler 'probe': not enough values to unpack (expected 2, got 1)")


def test_python_syntax_error_is_user_code_syntax_error(api, start_client, tmp_path):
    (tmp_path / "broken.py").write_text("def handler(event, context:\n    return 1\n")
    client = start_client("python", tmp_path, "broken.handler")
    body = assert_init_error(api, client, "python", "Runtime.UserCodeSyntaxError", None)
    assert body["errorMessage"].startswith("Syntax error in module 'broken': ")
    assert "broken.py" in body["stackTrace"][0]


def test_python_exception_at_import_is_reported_under_its_own_type(api, start_client):
    client = start_client("python", PROBE_ROOT["python"], "boom_on_import.handler")
    body = assert_init_error(api, client, "python", "KeyError", "'MISSING_SETTING'")
    assert any("boom_on_import.py" in frame for frame in body["stackTrace"])


def test_python_handler_in_a_sub_folder_is_found_by_path(api, start_client, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("def handler(event, context):\n    return 'deep'\n")
    start_client("python", tmp_path, "src/app.handler")
    assert invoke(api, {}).json() == "deep"


@needs_node
def test_node_missing_module_is_import_module_error(api, start_client):
    client = start_client("node", PROBE_ROOT["node"], "nope.handler")
    body = assert_init_error(api, client, "node", "Runtime.ImportModuleError", None)
    assert body["errorMessage"].startswith("Error: Cannot find module 'nope'")
    assert body["trace"][0].startswith("Runtime.ImportModuleError: Error: Cannot find module 'nope'")


@needs_node
def test_node_missing_handler_is_handler_not_found(api, start_client):
    client = start_client("node", PROBE_ROOT["node"], "probe.nope")
    assert_init_error(api, client, "node", "Runtime.HandlerNotFound",
                      "probe.nope is undefined or not exported")


@needs_node
def test_node_export_that_is_not_a_function_is_handler_not_found(api, start_client):
    client = start_client("node", PROBE_ROOT["node"], "probe.notAFunction")
    assert_init_error(api, client, "node", "Runtime.HandlerNotFound",
                      "probe.notAFunction is not a function")


@needs_node
def test_node_handler_without_dot_is_malformed_handler_name(api, start_client):
    client = start_client("node", PROBE_ROOT["node"], "probe")
    assert_init_error(api, client, "node", "Runtime.MalformedHandlerName", "Bad handler")


@needs_node
def test_node_syntax_error_is_user_code_syntax_error(api, start_client, tmp_path):
    (tmp_path / "broken.js").write_text("exports.handler = async (event => {;\n")
    client = start_client("node", tmp_path, "broken.handler")
    body = assert_init_error(api, client, "node", "Runtime.UserCodeSyntaxError", None)
    assert body["errorMessage"].startswith("SyntaxError: ")


@needs_node
def test_node_error_thrown_while_loading_is_reported_under_its_own_type(api, start_client):
    client = start_client("node", PROBE_ROOT["node"], "throwsOnLoad.handler")
    assert_init_error(api, client, "node", "RangeError", "thrown while loading")


@needs_curl
def test_shell_missing_handler_file_is_import_module_error(api, start_client, tmp_path):
    client = start_client("shell", tmp_path, "function.handler")
    assert_init_error(api, client, "shell", "Runtime.ImportModuleError",
                      f"Unable to import module 'function': no file {tmp_path}/function.sh")


@needs_curl
def test_shell_missing_handler_function_is_handler_not_found(api, start_client):
    client = start_client("shell", EXAMPLES / "hello-shell", "function.nope")
    assert_init_error(api, client, "shell", "Runtime.HandlerNotFound",
                      "Handler 'nope' missing on module 'function'")


# ---------------------------------------------------------------------------
# Refused POSTs


def test_python_exits_1_when_a_post_is_refused(start_client):
    refusing = FakeRuntimeApi(post_status=400).start()
    try:
        client = start_client("python", PROBE_ROOT["python"], "probe.count", server=refusing)
        request_id = refusing.enqueue({})
        refusing.wait_for_result(request_id)
        assert client.wait_exit() == 1
        assert re.search(r"POST /2018-06-01/runtime/invocation/\S+/response answered HTTP 400: "
                         r".*InvalidRequestID", client.stderr())
    finally:
        refusing.stop()


@needs_curl
def test_shell_exits_1_when_a_post_is_refused(start_client):
    refusing = FakeRuntimeApi(post_status=403).start()
    try:
        client = start_client("shell", EXAMPLES / "hello-shell", "function.handler", server=refusing)
        refusing.wait_for_result(refusing.enqueue({}))
        assert client.wait_exit() == 1
        assert "was refused" in client.stderr()
    finally:
        refusing.stop()


@needs_node
def test_node_logs_a_refused_post_and_keeps_serving(start_client):
    refusing = FakeRuntimeApi(post_status=400).start()
    try:
        client = start_client("node", PROBE_ROOT["node"], "probe.count", server=refusing)
        refusing.wait_for_result(refusing.enqueue({}))
        refusing.wait_for_result(refusing.enqueue({}))
        assert client.is_running()
        assert "answered HTTP 400" in client.stderr()
    finally:
        refusing.stop()


# ---------------------------------------------------------------------------
# Log lines


def test_python_log_records_carry_level_utc_time_and_request_id(api, start_client):
    client = start_client("python", PROBE_ROOT["python"], "probe.log")
    result = invoke(api, "ev")
    lines = client.stdout().splitlines()
    pattern = (r"\[WARNING\]\t\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\t"
               + re.escape(result.request_id) + r"\twarned about ev")
    assert any(re.fullmatch(pattern, line) for line in lines), lines
    # The root logger stays at WARNING unless AWS_LAMBDA_LOG_LEVEL says otherwise.
    assert "info is below the default level" not in client.stdout()


def test_python_log_level_comes_from_aws_lambda_log_level(api, start_client):
    client = start_client("python", PROBE_ROOT["python"], "probe.log", AWS_LAMBDA_LOG_LEVEL="info")
    invoke(api, "ev")
    assert re.search(r"^\[INFO\]\t.*\tinfo is below the default level$", client.stdout(), re.M)


@needs_node
def test_node_console_lines_carry_time_request_id_and_level(api, start_client):
    client = start_client("node", PROBE_ROOT["node"], "probe.log")
    result = invoke(api, {"k": 1})
    prefix = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\t" + re.escape(result.request_id)
    stdout = client.stdout()
    assert re.search(rf"^{prefix}\tINFO\tlogged {{ k: 1 }}$", stdout, re.M), stdout
    assert re.search(rf"^{prefix}\tWARN\twarned$", stdout, re.M), stdout
    assert re.search(rf"^{prefix}\tERROR\tfailed$", stdout, re.M), stdout


# JSON format (AWS_LAMBDA_LOG_FORMAT=JSON): one object a line, as AWS's
# runtime clients write them (docs/spec-additions.md section 4).

JSON_TIME_TO_THE_SECOND = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"          # awslambdaric
JSON_TIME_TO_THE_MS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"        # aws-lambda-ric


def json_lines(stdout: str) -> list[dict]:
    """The lines of stdout that are JSON objects (a print() stays a plain line)."""
    lines = []
    for line in stdout.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            lines.append(value)
    return lines


PYTHON_JSON_HANDLERS = """
import logging

def levels(event, context):
    logging.getLogger().debug("debug line")
    logging.getLogger().info("info line")
    logging.getLogger("orders").warning("warn line %s", event)
    logging.getLogger().error("error line")
    print("printed line")

def exception(event, context):
    try:
        raise KeyError("missing")
    except KeyError:
        logging.getLogger().exception("lookup failed")

def extra(event, context):
    logging.getLogger().warning("with extra", extra={"orderId": 42})

def fail(event, context):
    raise ValueError("bad input")
"""


@pytest.fixture
def python_json_root(tmp_path) -> Path:
    root = tmp_path / "py-json"
    root.mkdir()
    (root / "handlers.py").write_text(PYTHON_JSON_HANDLERS)
    return root


def test_python_json_log_lines_carry_timestamp_level_message_logger_and_request_id(
        api, start_client, python_json_root):
    client = start_client("python", python_json_root, "handlers.levels",
                          AWS_LAMBDA_LOG_FORMAT="JSON", AWS_LAMBDA_LOG_LEVEL="INFO")
    result = invoke(api, "ev")
    lines = json_lines(client.stdout())
    warn = next(line for line in lines if line["message"] == "warn line ev")
    assert re.fullmatch(JSON_TIME_TO_THE_SECOND, warn.pop("timestamp")), warn
    assert warn == {"level": "WARNING", "message": "warn line ev", "logger": "orders",
                    "requestId": result.request_id}
    assert [line["level"] for line in lines] == ["INFO", "WARNING", "ERROR"]


def test_python_json_lines_below_aws_lambda_log_level_are_dropped(api, start_client, python_json_root):
    client = start_client("python", python_json_root, "handlers.levels",
                          AWS_LAMBDA_LOG_FORMAT="JSON", AWS_LAMBDA_LOG_LEVEL="WARN")
    invoke(api, "ev")
    assert [line["message"] for line in json_lines(client.stdout())] == ["warn line ev", "error line"]


def test_python_trace_level_lets_debug_lines_through(api, start_client, python_json_root):
    client = start_client("python", python_json_root, "handlers.levels",
                          AWS_LAMBDA_LOG_FORMAT="JSON", AWS_LAMBDA_LOG_LEVEL="TRACE")
    invoke(api, "ev")
    assert [line["level"] for line in json_lines(client.stdout())] == ["DEBUG", "INFO", "WARNING", "ERROR"]


def test_python_print_stays_a_plain_line_in_json_format(api, start_client, python_json_root):
    client = start_client("python", python_json_root, "handlers.levels",
                          AWS_LAMBDA_LOG_FORMAT="JSON", AWS_LAMBDA_LOG_LEVEL="WARN")
    invoke(api, "ev")
    assert "printed line" in client.stdout().splitlines()


def test_python_json_exception_line_carries_error_type_message_stack_and_location(
        api, start_client, python_json_root):
    client = start_client("python", python_json_root, "handlers.exception",
                          AWS_LAMBDA_LOG_FORMAT="JSON", AWS_LAMBDA_LOG_LEVEL="INFO")
    invoke(api, {})
    (line,) = json_lines(client.stdout())
    assert line["level"] == "ERROR" and line["message"] == "lookup failed"
    assert line["errorType"] == "KeyError" and line["errorMessage"] == "'missing'"
    assert any("raise KeyError" in frame for frame in line["stackTrace"]), line
    call_line = PYTHON_JSON_HANDLERS.splitlines().index('        logging.getLogger().exception("lookup failed")') + 1
    assert line["location"] == f"{python_json_root / 'handlers.py'}:exception:{call_line}", line


def test_python_json_line_carries_the_records_extra_fields(api, start_client, python_json_root):
    client = start_client("python", python_json_root, "handlers.extra",
                          AWS_LAMBDA_LOG_FORMAT="JSON", AWS_LAMBDA_LOG_LEVEL="INFO")
    invoke(api, {})
    (line,) = json_lines(client.stdout())
    assert line["orderId"] == 42


def test_python_json_invoke_error_is_one_line_with_the_error_document(api, start_client, python_json_root):
    client = start_client("python", python_json_root, "handlers.fail",
                          AWS_LAMBDA_LOG_FORMAT="JSON", AWS_LAMBDA_LOG_LEVEL="INFO")
    result = invoke(api, {})
    (line,) = json_lines(client.stdout())
    assert re.fullmatch(JSON_TIME_TO_THE_SECOND, line.pop("timestamp"))
    stack = line.pop("stackTrace")
    assert line == {"log_level": "ERROR", "errorMessage": "bad input", "errorType": "ValueError",
                    "requestId": result.request_id}
    assert stack == json.loads(result.body)["stackTrace"]
    assert "Traceback" not in client.stderr()


def test_python_text_format_is_unchanged_when_asked_for_by_name(api, start_client):
    client = start_client("python", PROBE_ROOT["python"], "probe.log",
                          AWS_LAMBDA_LOG_FORMAT="Text", AWS_LAMBDA_LOG_LEVEL="INFO")
    result = invoke(api, "ev")
    pattern = (r"\[WARNING\]\t\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\t"
               + re.escape(result.request_id) + r"\twarned about ev")
    assert any(re.fullmatch(pattern, line) for line in client.stdout().splitlines()), client.stdout()
    assert json_lines(client.stdout()) == []


NODE_JSON_HANDLERS = """
exports.levels = async (event) => {
  console.trace('trace line');
  console.debug('debug line');
  console.log('logged', event);
  console.info({ k: 1 });
  console.warn('warned');
  console.error('failed', new TypeError('bad type'));
  console.fatal('fatal line');
  return null;
};
exports.reject = async () => {
  throw new RangeError('out of range');
};
"""


@pytest.fixture
def node_json_root(tmp_path) -> Path:
    root = tmp_path / "node-json"
    root.mkdir()
    (root / "handlers.js").write_text(NODE_JSON_HANDLERS)
    return root


@needs_node
def test_node_json_log_lines_carry_timestamp_level_request_id_and_message(api, start_client, node_json_root):
    client = start_client("node", node_json_root, "handlers.levels",
                          AWS_LAMBDA_LOG_FORMAT="JSON", AWS_LAMBDA_LOG_LEVEL="INFO")
    result = invoke(api, {"k": 1})
    lines = json_lines(client.stdout())
    assert [line["level"] for line in lines] == ["INFO", "INFO", "WARN", "ERROR", "FATAL"]
    logged = lines[0]
    assert re.fullmatch(JSON_TIME_TO_THE_MS, logged.pop("timestamp")), logged
    assert logged == {"level": "INFO", "requestId": result.request_id, "message": "logged { k: 1 }"}
    assert lines[1]["message"] == {"k": 1}          # a lone argument stays a value


@needs_node
def test_node_json_line_with_an_error_argument_carries_its_type_message_and_stack(
        api, start_client, node_json_root):
    client = start_client("node", node_json_root, "handlers.levels",
                          AWS_LAMBDA_LOG_FORMAT="JSON", AWS_LAMBDA_LOG_LEVEL="INFO")
    invoke(api, {})
    failed = next(line for line in json_lines(client.stdout()) if line["level"] == "ERROR")
    assert failed["message"].startswith("failed TypeError: bad type")
    assert failed["errorType"] == "TypeError" and failed["errorMessage"] == "bad type"
    assert failed["stackTrace"][0] == "TypeError: bad type"


@needs_node
@pytest.mark.parametrize("level,kept", [
    ("WARN", ["WARN", "ERROR", "FATAL"]),
    ("TRACE", ["TRACE", "DEBUG", "INFO", "INFO", "WARN", "ERROR", "FATAL"]),
    ("FATAL", ["FATAL"]),
])
def test_node_json_lines_below_aws_lambda_log_level_are_dropped(api, start_client, node_json_root, level, kept):
    client = start_client("node", node_json_root, "handlers.levels",
                          AWS_LAMBDA_LOG_FORMAT="JSON", AWS_LAMBDA_LOG_LEVEL=level)
    invoke(api, {})
    assert [line["level"] for line in json_lines(client.stdout())] == kept


@needs_node
def test_node_json_invoke_error_is_logged_as_the_error_itself(api, start_client, node_json_root):
    client = start_client("node", node_json_root, "handlers.reject",
                          AWS_LAMBDA_LOG_FORMAT="JSON", AWS_LAMBDA_LOG_LEVEL="INFO")
    result = invoke(api, {})
    (line,) = json_lines(client.stdout())
    assert line["level"] == "ERROR" and line["requestId"] == result.request_id
    assert line["message"]["errorType"] == "RangeError"
    assert line["message"]["errorMessage"] == "out of range"
    assert line["message"]["stackTrace"][0] == "RangeError: out of range"


@needs_node
def test_node_text_format_is_unchanged_when_asked_for_by_name(api, start_client):
    client = start_client("node", PROBE_ROOT["node"], "probe.log", AWS_LAMBDA_LOG_FORMAT="Text")
    result = invoke(api, {"k": 1})
    prefix = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\t" + re.escape(result.request_id)
    assert re.search(rf"^{prefix}\tINFO\tlogged {{ k: 1 }}$", client.stdout(), re.MULTILINE), client.stdout()
    assert json_lines(client.stdout()) == []


# ---------------------------------------------------------------------------
# The image entry points


@pytest.mark.parametrize("runtime,target", [
    ("python", "/usr/bin/python3 -u /var/runtime/runtime_client.py"),
    ("node", "/usr/bin/node /var/runtime/runtime.js"),
])
def test_bootstrap_execs_the_runtime_client(runtime, target):
    bootstrap = REPO / "bootstrap" / runtime / "bootstrap"
    assert os.access(bootstrap, os.X_OK)
    text = bootstrap.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert re.search(rf"^exec {re.escape(target)}$", text, re.M)
    assert subprocess.run(["sh", "-n", str(bootstrap)]).returncode == 0


# ---------------------------------------------------------------------------
# Node response streaming (awslambda.streamifyResponse), against a Runtime API
# on plain sockets: aiohttp hides chunk boundaries and drops trailers.


@dataclass
class RawRequest:
    """One request as it came over the wire. `chunks` holds each chunk of a
    chunked body with the time.monotonic() at which it had fully arrived."""

    kind: str  # next, response, error or init_error
    method: str
    path: str
    request_id: str | None
    headers: dict[str, str]  # names lower-cased; a repeated name's values joined with ", "
    body: bytes
    chunks: list[tuple[float, bytes]]
    trailers: dict[str, str]  # names lower-cased
    client_port: int

    def json(self):
        return json.loads(self.body)


class RawRuntimeApi:
    """GET next, POST response / error / init/error on 127.0.0.1, one thread
    per connection, HTTP/1.1 keep-alive; answers as FakeRuntimeApi does and
    records every request with its chunks, their arrival times and trailers."""

    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._events: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._recorded: list[RawRequest] = []
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def enqueue(self, event=None) -> str:
        request_id = str(uuid.uuid4())
        self._events.put((request_id, json.dumps(event).encode()))
        return request_id

    def requests(self, kind: str | None = None) -> list[RawRequest]:
        with self._changed:
            return [r for r in self._recorded if kind is None or r.kind == kind]

    def wait_for(self, predicate, what: str, timeout_s: float = 5.0) -> list[RawRequest]:
        """Wait until predicate(recorded requests) is true; return them."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not predicate(self._recorded):
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    raise TimeoutError(f"no {what} within {timeout_s} s; got {self._recorded!r}")
                self._changed.wait(remaining_s)
            return list(self._recorded)

    def wait_for_result(self, request_id: str, timeout_s: float = 5.0) -> RawRequest:
        def is_result(r):
            return r.kind in ("response", "error") and r.request_id == request_id
        recorded = self.wait_for(lambda rs: any(map(is_result, rs)), f"result for {request_id}", timeout_s)
        return next(r for r in recorded if is_result(r))

    def wait_for_requests(self, kind: str, count: int, timeout_s: float = 5.0) -> list[RawRequest]:
        self.wait_for(lambda rs: sum(r.kind == kind for r in rs) >= count, f"{count} {kind}", timeout_s)
        return self.requests(kind)

    def stop(self) -> None:
        self._stopping.set()
        # shutdown() wakes the threads blocked in accept() and recv().
        for sock in [self._listener, *self._sockets]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, (_, port) = self._listener.accept()
            except OSError:
                return
            self._sockets.append(sock)
            thread = threading.Thread(target=self._serve, args=(sock, port), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, port: int) -> None:
        try:
            with sock, sock.makefile("rb") as reader:
                while (request := self._read_request(reader, port)) is not None:
                    with self._changed:
                        self._recorded.append(request)
                        self._changed.notify_all()
                    if request.kind == "next":
                        answer = self._next_answer()
                        if answer is None:
                            return
                    else:
                        answer = ACCEPTED
                    sock.sendall(answer)
        except OSError:
            pass  # stop() shut the socket down, or the client went away

    def _next_answer(self) -> bytes | None:
        while not self._stopping.is_set():
            try:
                request_id, body = self._events.get(timeout=0.1)
            except queue.Empty:
                continue
            return http_answer(headers={
                "Lambda-Runtime-Aws-Request-Id": request_id,
                "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 3000),
                "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:000000000000:function:probe",
                "Content-Type": "application/json",
            }, body=body)
        return None

    @staticmethod
    def _read_fields(reader) -> dict[str, str]:
        fields: dict[str, str] = {}
        while (line := reader.readline().decode("latin-1").rstrip("\r\n")):
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            fields[name] = f"{fields[name]}, {value}" if name in fields else value
        return fields

    def _read_request(self, reader, port: int) -> RawRequest | None:
        request_line = reader.readline().decode("latin-1").rstrip("\r\n")
        if not request_line:
            return None
        method, path, _ = request_line.split(" ")
        headers = self._read_fields(reader)
        chunks: list[tuple[float, bytes]] = []
        trailers: dict[str, str] = {}
        if "chunked" in headers.get("transfer-encoding", ""):
            while True:
                size = int(reader.readline().split(b";")[0], 16)
                if size == 0:
                    trailers = self._read_fields(reader)
                    break
                data = reader.read(size)
                chunks.append((time.monotonic(), data))
                assert reader.read(2) == b"\r\n"
            body = b"".join(data for _, data in chunks)
        else:
            body = reader.read(int(headers.get("content-length", 0)))
        match = re.fullmatch(re.escape(API_PREFIX) + r"/invocation/([^/]+)/(response|error)", path)
        if path == API_PREFIX + "/invocation/next":
            kind, request_id = "next", None
        elif match:
            kind, request_id = match[2], urllib.parse.unquote(match[1])
        else:
            kind, request_id = "init_error", None
        return RawRequest(kind, method, path, request_id, headers, body, chunks, trailers, port)


@pytest.fixture
def raw_api():
    server = RawRuntimeApi()
    yield server
    server.stop()


STREAMING_HANDLERS = """
const { Readable } = require('stream');
const { pipeline } = require('stream/promises');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

exports.twoWrites = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('a');
  await sleep(500);
  responseStream.write('b');
  responseStream.end();
});

exports.httpIntegration = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream = awslambda.HttpResponseStream.from(responseStream, { statusCode: 201, headers: { 'x-a': 'b' } });
  responseStream.write('body');
  responseStream.end();
});

exports.httpIntegrationWithoutBody = awslambda.streamifyResponse(async (event, responseStream) => {
  awslambda.HttpResponseStream.from(responseStream, { statusCode: 204 });
  responseStream.end();
});

exports.failsAfterWriting = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('part');
  await sleep(50);
  throw new Error('boom');
});

exports.failsBeforeWriting = awslambda.streamifyResponse(async () => {
  throw new TypeError('early');
});

exports.piped = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.setContentType('text/plain');
  await pipeline(Readable.from(['x', 'y', 'z']), responseStream);
});

exports.contentTypeTooLate = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('first;');
  try {
    responseStream.setContentType('text/plain');
  } catch (err) {
    responseStream.write(`${err.name}: ${err.message}`);
  }
  responseStream.end();
});

exports.describe = awslambda.streamifyResponse(async (event, responseStream, context) => {
  responseStream.write({ event, awsRequestId: context.awsRequestId, functionName: context.functionName,
                         remainingPositive: context.getRemainingTimeInMillis() > 0,
                         callbacks: ['succeed', 'fail', 'done'].filter((name) => name in context) });
  responseStream.end();
});

exports.notAsync = awslambda.streamifyResponse((event, responseStream) => {
  responseStream.end('sync');
});

exports.neverEnds = awslambda.streamifyResponse(async () => {});

exports.plain = async (event) => ({ plain: event });
"""


@pytest.fixture
def streaming_root(tmp_path):
    root = tmp_path / "task"
    root.mkdir()
    (root / "stream.js").write_text(STREAMING_HANDLERS)
    return root


def error_trailers(result: RawRequest) -> tuple[str, dict]:
    """The error type trailer and the decoded error body trailer."""
    body = base64.b64decode(result.trailers["lambda-runtime-function-error-body"], validate=True)
    return result.trailers["lambda-runtime-function-error-type"], json.loads(body)


@needs_node
def test_node_streaming_handler_sends_each_write_as_it_is_made(raw_api, start_client, streaming_root):
    client = start_client("node", streaming_root, "stream.twoWrites", server=raw_api)
    result = raw_api.wait_for_result(raw_api.enqueue({}))
    assert (result.kind, result.method) == ("response", "POST")
    assert result.headers["lambda-runtime-function-response-mode"] == "streaming"
    assert result.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in result.headers
    assert result.headers["trailer"] == (
        "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body")
    assert result.headers["content-type"] == "application/octet-stream"
    assert result.body == b"ab"
    assert result.trailers == {}  # success: an empty trailer section
    # One chunk per write; "a" was on the wire while the handler slept.
    (first_at, first), (second_at, second) = result.chunks
    assert (first, second) == (b"a", b"b")
    assert second_at - first_at >= 0.4
    # Then back to GET next, on the same keep-alive connection.
    raw_api.wait_for_requests("next", 2)
    assert [r.kind for r in raw_api.requests()] == ["next", "response", "next"]
    assert len({r.client_port for r in raw_api.requests()}) == 1
    assert client.is_running()


@needs_node
def test_node_http_response_stream_writes_the_prelude_before_the_body(raw_api, start_client, streaming_root):
    start_client("node", streaming_root, "stream.httpIntegration", server=raw_api)
    result = raw_api.wait_for_result(raw_api.enqueue({}))
    assert result.headers["content-type"] == "application/vnd.awslambda.http-integration-response"
    assert result.body == b'{"statusCode":201,"headers":{"x-a":"b"}}' + b"\0" * 8 + b"body"
    assert result.trailers == {}


@needs_node
def test_node_http_response_stream_ended_without_a_body_still_sends_the_prelude(
        raw_api, start_client, streaming_root):
    # aws-lambda-ric loses the prelude here (its issue #97); we send it.
    start_client("node", streaming_root, "stream.httpIntegrationWithoutBody", server=raw_api)
    result = raw_api.wait_for_result(raw_api.enqueue({}))
    assert result.headers["content-type"] == "application/vnd.awslambda.http-integration-response"
    assert result.body == b'{"statusCode":204}' + b"\0" * 8


@needs_node
def test_node_streaming_failure_after_writing_goes_out_as_trailers(raw_api, start_client, streaming_root):
    client = start_client("node", streaming_root, "stream.failsAfterWriting", server=raw_api)
    result = raw_api.wait_for_result(raw_api.enqueue({}))
    assert result.kind == "response"  # the stream's own POST, no /error
    assert result.body == b"part"
    error_type, error = error_trailers(result)
    assert error_type == "Error"
    assert set(error) == {"errorType", "errorMessage", "trace"}
    assert (error["errorType"], error["errorMessage"]) == ("Error", "boom")
    assert error["trace"][0] == "Error: boom" and "stream.js" in error["trace"][1]
    assert re.search(rf"\t{result.request_id}\tERROR\tInvoke Error \t\{{", client.stdout())
    raw_api.wait_for_requests("next", 2)
    assert raw_api.requests("error") == []
    assert client.is_running()


@needs_node
def test_node_streaming_failure_before_writing_still_posts_through_the_stream(
        raw_api, start_client, streaming_root):
    start_client("node", streaming_root, "stream.failsBeforeWriting", server=raw_api)
    result = raw_api.wait_for_result(raw_api.enqueue({}))
    assert result.kind == "response"
    assert result.headers["lambda-runtime-function-response-mode"] == "streaming"
    assert result.body == b"" and result.chunks == []
    error_type, error = error_trailers(result)
    assert (error_type, error["errorMessage"]) == ("TypeError", "early")


@needs_node
def test_node_streaming_content_type_is_set_and_a_pipeline_writes(raw_api, start_client, streaming_root):
    start_client("node", streaming_root, "stream.piped", server=raw_api)
    result = raw_api.wait_for_result(raw_api.enqueue({}))
    assert result.headers["content-type"] == "text/plain"
    assert result.body == b"xyz"
    assert result.trailers == {}


@needs_node
def test_node_streaming_content_type_cannot_change_after_the_first_write(
        raw_api, start_client, streaming_root):
    start_client("node", streaming_root, "stream.contentTypeTooLate", server=raw_api)
    result = raw_api.wait_for_result(raw_api.enqueue({}))
    assert result.headers["content-type"] == "application/octet-stream"
    assert result.body == b"first;Runtime.InvalidStreamingOperation: Cannot set content-type, too late."


@needs_node
def test_node_streaming_handler_gets_event_and_context_and_objects_go_out_as_json(
        raw_api, start_client, streaming_root):
    start_client("node", streaming_root, "stream.describe", server=raw_api)
    result = raw_api.wait_for_result(raw_api.enqueue({"k": 1}))
    assert result.json() == {"event": {"k": 1}, "awsRequestId": result.request_id, "functionName": "probe",
                             "remainingPositive": True, "callbacks": []}


@pytest.mark.parametrize("handler,message", [
    ("notAsync", "Streaming does not support non-async handlers."),
    ("neverEnds", "Response stream is not finished."),
])
@needs_node
def test_node_streaming_handler_that_cannot_answer_fails_through_the_stream(
        raw_api, start_client, streaming_root, handler, message):
    client = start_client("node", streaming_root, f"stream.{handler}", server=raw_api)
    for _ in range(2):  # and the runtime serves the next event
        result = raw_api.wait_for_result(raw_api.enqueue({}))
        assert result.kind == "response"
        error_type, error = error_trailers(result)
        # aws-lambda-ric reports these as strings.
        assert (error_type, error["errorMessage"]) == ("string", message)
    assert client.is_running()


@needs_node
def test_node_plain_handler_still_posts_a_buffered_response(raw_api, start_client, streaming_root):
    start_client("node", streaming_root, "stream.plain", server=raw_api)
    result = raw_api.wait_for_result(raw_api.enqueue({"k": 1}))
    assert result.headers["content-type"] == "application/json"
    assert result.headers["content-length"] == str(len(result.body))
    assert "lambda-runtime-function-response-mode" not in result.headers
    assert result.json() == {"plain": {"k": 1}}


# ---------------------------------------------------------------------------
# The Python client's HTTP/1.1 layer: framings and dropped connections, end to end


class ChunkedRuntimeApi(FakeRuntimeApi):
    """Answers GET next with a chunked body (a conforming server may), a few bytes per chunk."""

    CHUNK_BYTES = 7

    async def _next(self, request: web.Request) -> web.StreamResponse:
        await self._record(request, "next")
        item = await self._queue.get()
        response = web.StreamResponse(status=200, headers=item.headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(item.body), self.CHUNK_BYTES):
            await response.write(item.body[start:start + self.CHUNK_BYTES])
        await response.write_eof()
        return response


class ClosingRuntimeApi(FakeRuntimeApi):
    """Answers every POST with `Connection: close`, then closes the connection."""

    def _post_answer(self) -> web.Response:
        response = super()._post_answer()
        response.force_close()
        return response


class DroppingRuntimeApi(FakeRuntimeApi):
    """Can drop the connections of the GET next calls waiting for an event,
    as when the host closes an idle keep-alive socket or resets the socket of
    a frozen sandbox."""

    def __init__(self):
        super().__init__()
        self._waiting: set = set()

    async def _next(self, request: web.Request) -> web.Response:
        self._waiting.add(request.transport)
        try:
            return await super()._next(request)
        finally:
            self._waiting.discard(request.transport)

    def drop_waiting(self, reset: bool) -> None:
        def drop():
            for transport in list(self._waiting):
                if reset:  # SO_LINGER 0: close() sends RST instead of FIN
                    transport.get_extra_info("socket").setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    transport.abort()
                else:
                    transport.close()
        self._loop.call_soon_threadsafe(drop)


@pytest.fixture
def server_of_kind():
    """server_of_kind(cls) -> a started instance of that FakeRuntimeApi subclass."""
    started: list[FakeRuntimeApi] = []

    def start(cls):
        started.append(cls().start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.mark.parametrize("size", [100, 300_000])
def test_python_reads_a_chunked_next_answer(server_of_kind, start_client, size):
    chunked = server_of_kind(ChunkedRuntimeApi)
    client = start_client("python", PROBE_ROOT["python"], "probe.echo", server=chunked)
    for n in range(2):  # the second proves the chunked body was consumed to its end
        event = {"n": n, "pad": "x" * size}
        result = invoke(chunked, event, trace_id="Root=1-chunked")
        assert result.kind == "response"
        assert result.json() == event
    assert len({r.client_port for r in chunked.requests()}) == 1
    assert client.is_running()


def test_python_opens_a_new_connection_after_connection_close(server_of_kind, start_client):
    closing = server_of_kind(ClosingRuntimeApi)
    client = start_client("python", PROBE_ROOT["python"], "probe.count", server=closing)
    assert [invoke(closing, {}).json()["calls"] for _ in range(3)] == [1, 2, 3]
    closing.wait_for_requests("next", 4)
    requests = closing.requests()
    # Each POST ends its connection; the next GET next comes on a new one.
    ports = [r.client_port for r in requests]
    assert [r.kind for r in requests] == ["next", "response"] * 3 + ["next"]
    assert ports[0::2] == ports[1::2] + [ports[-1]] and len(set(ports)) == 4
    assert client.is_running()


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_python_retries_next_on_a_new_connection_when_the_host_drops_it(
        server_of_kind, start_client, reset):
    dropping = server_of_kind(DroppingRuntimeApi)
    client = start_client("python", PROBE_ROOT["python"], "probe.count", server=dropping)
    assert invoke(dropping, {}).json()["calls"] == 1
    dropping.wait_for_requests("next", 2)
    dropping.drop_waiting(reset)
    first, dropped, retried = dropping.wait_for_requests("next", 3)
    assert first.client_port == dropped.client_port != retried.client_port
    assert invoke(dropping, {}).json()["calls"] == 2
    assert client.is_running()
    assert client.stderr() == ""


# ---------------------------------------------------------------------------
# Several invocations at once: AWS_LAMBDA_MAX_CONCURRENCY (Lambda Managed
# Instances; docs/spec-additions.md §5). Python forks one worker process per
# concurrent invocation, as awslambdaric 4 does; Node runs that many GET next
# loops in its one event loop, each on its own connection.


class ConcurrencyRuntimeApi(FakeRuntimeApi):
    """Also records the connection each event went out on, and how many GET
    nexts wait for an event at once (and at most)."""

    def __init__(self, post_status: int = 202):
        super().__init__(post_status)
        self.delivered_on: dict[str, int] = {}  # request id -> port of the GET next that carried it
        self.waiting = 0
        self.most_waiting = 0

    async def _next(self, request: web.Request) -> web.Response:
        recorded = await self._record(request, "next")
        self._count_waiting(+1)
        try:
            item = await self._queue.get()
        finally:
            self._count_waiting(-1)
        self.delivered_on[item.request_id] = recorded.client_port
        headers = dict(item.headers)
        headers["Lambda-Runtime-Deadline-Ms"] = str(int(time.time() * 1000) + item.timeout_ms)
        return web.Response(status=200, body=item.body, headers=headers)

    def _count_waiting(self, change: int) -> None:
        with self._changed:
            self.waiting += change
            self.most_waiting = max(self.most_waiting, self.waiting)
            self._changed.notify_all()

    def wait_until_waiting(self, count: int, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self.waiting != count:
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    raise TimeoutError(f"{self.waiting} GET nexts waiting, not {count}")
                self._changed.wait(remaining_s)


PYTHON_CONCURRENT_HANDLERS = """
import logging
import os
import time

calls = 0
print("init in", os.getpid())


def slow(event, context):
    global calls
    calls += 1
    logging.getLogger().warning("started %s", event["n"])
    time.sleep(0.5)
    return {"n": event["n"], "request_id": context.aws_request_id, "pid": os.getpid(),
            "calls": calls, "trace": os.environ.get("_X_AMZN_TRACE_ID")}
"""

NODE_CONCURRENT_HANDLERS = """
let calls = 0;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

exports.slow = async (event, context) => {
  calls += 1;
  console.log('started', event.n);
  await sleep(500);
  return {
    n: event.n,
    request_id: context.awsRequestId,
    pid: process.pid,
    calls,
    trace: process.env._X_AMZN_TRACE_ID ?? null,
    contextTrace: context.xRayTraceId ?? null,
    // Installed with AWS_LAMBDA_MAX_CONCURRENCY only.
    storeTrace: awslambda.InvokeStore?.getXRayTraceId() ?? null,
    storeRequestId: awslambda.InvokeStore?.getRequestId() ?? null,
  };
};

exports.plain = (event, context) => ({
  plain: event.n,
  succeed: typeof context.succeed,
  waitsForEmptyEventLoop: 'callbackWaitsForEmptyEventLoop' in context,
});

exports.callback = (event, context, callback) => callback(null, 'never');

exports.stream = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write(`start ${event.n};`);
  await sleep(500);
  responseStream.end(`end ${event.n}`);
});

exports.crashLater = async (event) => {
  if (event.crash) {
    setTimeout(() => {
      throw new Error(`crash ${event.n}`);
    }, 100);
  }
  await sleep(500);
  return { n: event.n };
};
"""

TRACES = [f"Root=1-00000000-00000000000000000000000{n};Sampled=1" for n in range(3)]


@pytest.fixture
def concurrent_root(tmp_path) -> dict[str, Path]:
    root = tmp_path / "concurrent"
    root.mkdir()
    (root / "concurrent.py").write_text(PYTHON_CONCURRENT_HANDLERS)
    (root / "concurrent.js").write_text(NODE_CONCURRENT_HANDLERS)
    return {"python": root, "node": root}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_max_concurrency_fetches_n_events_before_the_first_result(
        server_of_kind, start_client, concurrent_root, runtime):
    api = server_of_kind(ConcurrencyRuntimeApi)
    request_ids = [api.enqueue({"n": n}) for n in range(3)]
    client = start_client(runtime, concurrent_root[runtime], "concurrent.slow", server=api,
                          AWS_LAMBDA_MAX_CONCURRENCY="3")
    results = [api.wait_for_result(request_id) for request_id in request_ids]
    # All three events were fetched before the first result came back.
    kinds = [r.kind for r in api.requests()]
    assert kinds[:3] == ["next"] * 3, kinds
    assert kinds.count("response") == 3
    # Each result went to its own request id, on the connection that fetched its event.
    for n, (request_id, result) in enumerate(zip(request_ids, results)):
        assert result.kind == "response"
        assert result.json()["n"] == n
        assert result.json()["request_id"] == request_id
        assert result.client_port == api.delivered_on[request_id]
    assert len({api.delivered_on[request_id] for request_id in request_ids}) == 3
    # Then each of the three loops is back in GET next, and never more than three.
    api.wait_until_waiting(3)
    assert api.most_waiting == 3
    assert client.is_running()


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("setting", [None, "1"], ids=["unset", "1"])
def test_without_max_concurrency_one_next_is_outstanding_at_a_time(
        server_of_kind, start_client, concurrent_root, runtime, setting):
    api = server_of_kind(ConcurrencyRuntimeApi)
    request_ids = [api.enqueue({"n": n}) for n in range(3)]
    extra_env = {} if setting is None else {"AWS_LAMBDA_MAX_CONCURRENCY": setting}
    client = start_client(runtime, concurrent_root[runtime], "concurrent.slow", server=api, **extra_env)
    bodies = [api.wait_for_result(request_id).json() for request_id in request_ids]
    api.wait_for_requests("next", 4)
    assert [r.kind for r in api.requests()] == ["next", "response"] * 3 + ["next"]
    assert len({r.client_port for r in api.requests()}) == 1
    assert api.most_waiting == 1
    assert [body["request_id"] for body in bodies] == request_ids
    assert [body["calls"] for body in bodies] == [1, 2, 3]
    assert {body["pid"] for body in bodies} == {client.process.pid}


def test_python_max_concurrency_gives_each_invocation_its_own_worker_process(
        server_of_kind, start_client, concurrent_root):
    api = server_of_kind(ConcurrencyRuntimeApi)
    request_ids = [api.enqueue({"n": n}, trace_id=TRACES[n]) for n in range(3)]
    client = start_client("python", concurrent_root["python"], "concurrent.slow", server=api,
                          AWS_LAMBDA_MAX_CONCURRENCY="3")
    bodies = [api.wait_for_result(request_id).json() for request_id in request_ids]
    # As awslambdaric: one process per concurrent invocation, each with its
    # own init and module state, so _X_AMZN_TRACE_ID is each one's own.
    pids = {body["pid"] for body in bodies}
    assert len(pids) == 3 and client.process.pid not in pids
    assert [body["calls"] for body in bodies] == [1, 1, 1]
    assert [body["trace"] for body in bodies] == TRACES
    assert client.stdout().count("init in") == 3
    for n, request_id in enumerate(request_ids):
        assert re.search(rf"\[WARNING\]\t\S+\t{request_id}\tstarted {n}\n", client.stdout())


def _gone(pid: int) -> bool:
    """The process has exited (an unreaped zombie counts: it runs no code)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _wait_until_gone(pids, timeout_s: float = EXIT_WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(_gone(pid) for pid in pids):
        assert time.monotonic() < deadline, [pid for pid in pids if not _gone(pid)]
        time.sleep(0.02)


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_python_workers_end_with_the_runtime_process(server_of_kind, start_client, concurrent_root, how):
    api = server_of_kind(ConcurrencyRuntimeApi)
    request_ids = [api.enqueue({"n": n}) for n in range(2)]
    client = start_client("python", concurrent_root["python"], "concurrent.slow", server=api,
                          AWS_LAMBDA_MAX_CONCURRENCY="2")
    worker_pids = [api.wait_for_result(request_id).json()["pid"] for request_id in request_ids]
    api.wait_until_waiting(2)
    if how == "sigterm":
        client.process.terminate()  # passed on to the workers; their status is the process's
        assert client.wait_exit() == 128 + 15
    else:
        client.process.kill()       # the kernel kills the workers (PR_SET_PDEATHSIG)
        client.wait_exit()
    _wait_until_gone(worker_pids)


def test_python_init_error_with_max_concurrency_is_posted_and_the_process_exits_1(api, start_client):
    client = start_client("python", PROBE_ROOT["python"], "no_such_module.handler",
                          AWS_LAMBDA_MAX_CONCURRENCY="3")
    assert client.wait_exit() == 1
    # Every worker does its own init, so every one reports (RAPID answers
    # the later ones 403, which a worker takes as "already reported").
    init_errors = api.requests("init_error")
    assert len(init_errors) == 3
    assert {r.json()["errorType"] for r in init_errors} == {"Runtime.ImportModuleError"}
    assert not api.requests("next")


def test_python_worker_logs_a_refused_post_and_keeps_serving(start_client):
    refusing = FakeRuntimeApi(post_status=400).start()
    try:
        client = start_client("python", PROBE_ROOT["python"], "probe.count", server=refusing,
                              AWS_LAMBDA_MAX_CONCURRENCY="2")
        refusing.wait_for_result(refusing.enqueue({}))
        refusing.wait_for_result(refusing.enqueue({}))
        assert client.is_running()
        assert re.search(r"POST /2018-06-01/runtime/invocation/\S+/response answered HTTP 400: "
                         r".*InvalidRequestID.*; this worker carries on", client.stderr())
    finally:
        refusing.stop()


@needs_node
def test_node_max_concurrency_runs_handlers_concurrently_in_one_event_loop(
        server_of_kind, start_client, concurrent_root):
    api = server_of_kind(ConcurrencyRuntimeApi)
    request_ids = [api.enqueue({"n": n}, trace_id=TRACES[n]) for n in range(3)]
    client = start_client("node", concurrent_root["node"], "concurrent.slow", server=api,
                          AWS_LAMBDA_MAX_CONCURRENCY="3")
    bodies = [api.wait_for_result(request_id).json() for request_id in request_ids]
    # One process, one module: all three were in flight together.
    assert {body["pid"] for body in bodies} == {client.process.pid}
    assert [body["calls"] for body in bodies] == [3, 3, 3]
    # _X_AMZN_TRACE_ID is process-wide, so it is not set; each invocation's
    # trace id and request id are in its context and its InvokeStore context.
    assert [body["trace"] for body in bodies] == [None] * 3
    assert [body["contextTrace"] for body in bodies] == TRACES
    assert [body["storeTrace"] for body in bodies] == TRACES
    assert [body["storeRequestId"] for body in bodies] == request_ids
    # Log lines are JSON (without AWS_LAMBDA_LOG_FORMAT), each with its own request id.
    started = {line["message"]: line["requestId"] for line in json_lines(client.stdout())
               if str(line.get("message", "")).startswith("started")}
    assert started == {f"started {n}": request_ids[n] for n in range(3)}


@needs_node
def test_node_max_concurrency_takes_a_plain_handlers_value_and_gives_no_callback_context(
        api, start_client, concurrent_root):
    start_client("node", concurrent_root["node"], "concurrent.plain", AWS_LAMBDA_MAX_CONCURRENCY="2")
    result = invoke(api, {"n": 7})
    assert result.kind == "response"
    assert result.json() == {"plain": 7, "succeed": "undefined", "waitsForEmptyEventLoop": False}


@needs_node
def test_node_max_concurrency_refuses_a_callback_handler_at_init(api, start_client, concurrent_root):
    client = start_client("node", concurrent_root["node"], "concurrent.callback",
                          AWS_LAMBDA_MAX_CONCURRENCY="2")
    init_error = api.wait_for_init_error()
    assert init_error.headers["lambda-runtime-function-error-type"] == "Runtime.CallbackHandlerDeprecated"
    assert init_error.json()["errorType"] == "Runtime.CallbackHandlerDeprecated"
    assert "callback-based function handlers" in init_error.json()["errorMessage"]
    assert client.wait_exit() == INIT_ERROR_EXIT_STATUS["node"]
    assert not api.requests("next")


@needs_node
def test_node_max_concurrency_streams_responses_concurrently(server_of_kind, start_client, concurrent_root):
    api = server_of_kind(ConcurrencyRuntimeApi)
    request_ids = [api.enqueue({"n": n}) for n in range(2)]
    client = start_client("node", concurrent_root["node"], "concurrent.stream", server=api,
                          AWS_LAMBDA_MAX_CONCURRENCY="2")
    results = [api.wait_for_result(request_id) for request_id in request_ids]
    assert [r.kind for r in api.requests()][:2] == ["next", "next"]
    for n, (request_id, result) in enumerate(zip(request_ids, results)):
        assert result.kind == "response"
        assert result.headers["lambda-runtime-function-response-mode"] == "streaming"
        assert result.body == f"start {n};end {n}".encode()
        assert result.client_port == api.delivered_on[request_id]
    api.wait_until_waiting(2)
    assert client.is_running()


@needs_node
def test_node_max_concurrency_crash_is_posted_for_the_invocation_that_threw(
        server_of_kind, start_client, concurrent_root):
    api = server_of_kind(ConcurrencyRuntimeApi)
    calm = api.enqueue({"n": 0})
    crashing = api.enqueue({"n": 1, "crash": True})
    client = start_client("node", concurrent_root["node"], "concurrent.crashLater", server=api,
                          AWS_LAMBDA_MAX_CONCURRENCY="2")
    result = api.wait_for_result(crashing)
    assert result.kind == "error"
    assert result.json()["errorMessage"] == "crash 1"
    assert client.wait_exit() == 129
    # The other invocation ended with the process: the host reports that one.
    assert not [r for r in api.requests() if r.request_id == calm]


# ---------------------------------------------------------------------------
# The Python client's HTTP/1.1 layer in-process, against scripted bytes


def _load_python_client():
    spec = importlib.util.spec_from_file_location(
        "runtime_client_under_test", REPO / "bootstrap" / "python" / "runtime_client.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rtc = _load_python_client()


@dataclass
class Reply:
    """What the scripted server does for one request: send `pieces` one
    write each, `pause_s` apart (so that the client reads them one recv each),
    then keep the connection or close it."""

    pieces: list[bytes]
    close: bool = False
    pause_s: float = 0.0


HANG_UP = Reply([], close=True)  # close the connection without answering


@dataclass
class ReceivedRequest:
    connection: int  # 1 for the first connection accepted, 2 for the next...
    request_line: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


def http_answer(status: str = "200 OK", headers: dict | None = None, body: bytes = b"",
                content_length: bool = True) -> bytes:
    lines = ["HTTP/1.1 " + status] + [f"{name}: {value}" for name, value in (headers or {}).items()]
    if content_length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def next_answer(request_id: str = "req-1", body: bytes = b'{"k": 1}', **options) -> bytes:
    headers = {"Lambda-Runtime-Aws-Request-Id": request_id, "Lambda-Runtime-Deadline-Ms": "1700000000000",
               "Content-Type": "application/json"}
    return http_answer(headers=headers, body=body, **options)


ACCEPTED = http_answer("202 Accepted", {"Content-Type": "application/json"}, b'{"status":"OK"}')


class ScriptedServer:
    """Answers the requests it receives, on whatever connection, with the
    scripted replies in order; stops listening when they run out, so a
    client that asks for more fails at once instead of waiting forever."""

    def __init__(self, *replies: Reply):
        self._replies = list(replies)
        self.requests: list[ReceivedRequest] = []
        self._connection: socket.socket | None = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        # shutdown(), not just close(): it is what wakes a thread blocked in
        # accept() or recv() on the socket.
        for sock in (self._listener, self._connection):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._thread.join(5)

    def _serve(self) -> None:
        connections = 0
        try:
            while self._replies:
                sock, _ = self._listener.accept()
                connections += 1
                self._connection = sock
                with sock, sock.makefile("rb") as reader:
                    self._serve_connection(sock, reader, connections)
        except OSError:
            pass  # stop() shut the sockets down
        finally:
            self._listener.close()

    def _serve_connection(self, sock, reader, number: int) -> None:
        while self._replies:
            request = self._read_request(reader, number)
            if request is None:
                return
            self.requests.append(request)
            reply = self._replies.pop(0)
            for index, piece in enumerate(reply.pieces):
                if index and reply.pause_s:
                    time.sleep(reply.pause_s)
                sock.sendall(piece)
            if reply.close:
                return

    @staticmethod
    def _read_request(reader, number: int) -> ReceivedRequest | None:
        request_line = reader.readline().decode("latin-1").rstrip("\r\n")
        if not request_line:
            return None
        headers = {}
        while (line := reader.readline().decode("latin-1").rstrip("\r\n")):
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
        body = reader.read(int(headers.get("content-length", 0)))
        return ReceivedRequest(number, request_line, headers, body)


@pytest.fixture
def scripted():
    """scripted(*replies) -> (ScriptedServer, RuntimeApiClient connected to it)."""
    servers: list[ScriptedServer] = []

    def start(*replies: Reply):
        servers.append(ScriptedServer(*replies))
        return servers[-1], rtc.RuntimeApiClient(servers[-1].address)

    yield start
    for server in servers:
        server.stop()


def chunked(body: bytes, sizes: list[int], trailer: str = "") -> list[bytes]:
    """`body` as chunks of the given sizes (the last takes the rest), in
    pieces cut between the CR and the LF of each chunk size line."""
    pieces, start = [], 0
    for size in [*sizes, len(body)]:
        data = body[start:start + size]
        start += len(data)
        if data:
            # Upper-case hex digits and an extension: both are legal.
            pieces += [b"%X;name=value\r" % len(data), b"\n%s\r\n" % data]
    pieces.append(b"0\r\n" + trailer.encode() + b"\r\n")
    return pieces


def test_http_layer_sends_one_keep_alive_request_per_call(scripted):
    server, client = scripted(Reply([next_answer("a/b c")]), Reply([ACCEPTED]))
    invocation = client.next_invocation()
    client.post_response(invocation.request_id, b'{"ok": true}', "application/json")
    get, post = server.requests
    assert get.request_line == f"GET {API_PREFIX}/invocation/next HTTP/1.1"
    assert "content-length" not in get.headers and get.body == b""
    assert post.request_line == f"POST {API_PREFIX}/invocation/a%2Fb%20c/response HTTP/1.1"
    assert post.headers["content-length"] == "12" and post.body == b'{"ok": true}'
    assert post.headers["content-type"] == "application/json"
    for request in (get, post):
        assert request.headers["host"] == server.address
        assert request.headers["user-agent"].startswith("runtime-host-python/3.")
    assert get.connection == post.connection == 1


def test_http_layer_reads_every_invocation_header_in_any_case(scripted):
    answer = http_answer(headers={
        "lambda-runtime-aws-request-id": "id-1",
        "LAMBDA-RUNTIME-DEADLINE-MS": "1700000000123",
        "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:000000000000:function:f",
        "Lambda-Runtime-Trace-Id": "Root=1-abc;Sampled=1",
        "Lambda-Runtime-Client-Context": '{"custom": {"k": "v"}}',
        "Lambda-Runtime-Cognito-Identity": '{"cognitoIdentityId": "c"}',
        "content-type": "text/plain",
    }, body=b"raw")
    _, client = scripted(Reply([answer]))
    invocation = client.next_invocation()
    assert (invocation.request_id, invocation.deadline_ms) == ("id-1", 1700000000123)
    assert invocation.function_arn == "arn:aws:lambda:us-east-1:000000000000:function:f"
    assert invocation.trace_id == "Root=1-abc;Sampled=1"
    assert invocation.client_context_json == '{"custom": {"k": "v"}}'
    assert invocation.cognito_identity_json == '{"cognitoIdentityId": "c"}'
    assert (invocation.content_type, invocation.body) == ("text/plain", b"raw")


def test_http_layer_parses_header_edge_cases():
    head = (b"HTTP/1.1 200 OK\r\nX-Twice: a\r\nx-twice: b\r\nX-Folded: first\r\n  second\r\n"
            b"not a header line\r\nX-Spaces:   padded \t\r\nX-Latin: caf\xe9")
    version, status, headers = rtc._parse_head(head)
    assert (version, status) == ("HTTP/1.1", 200)
    assert headers == {"x-twice": "a, b", "x-folded": "first second", "x-spaces": "padded",
                       "x-latin": "caf\u00e9"}


@pytest.mark.parametrize("status_line", ["HTTP/1.1 2000 OK", "ICY 200 OK", "HTTP/1.1 OK", ""])
def test_http_layer_refuses_a_malformed_status_line(status_line):
    with pytest.raises(rtc.ProtocolError):
        rtc._parse_head(status_line.encode())


@pytest.mark.parametrize("sizes", [[], [1, 1, 1], [3, 5000]], ids=["one-chunk", "tiny-chunks", "big-chunk"])
def test_http_layer_reads_chunked_bodies(scripted, sizes):
    event = json.dumps({"pad": "y" * 20000}).encode()
    head = next_answer("id-1", body=b"", content_length=False).replace(
        b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    # Each piece is its own write, so the chunk framing straddles reads.
    first = Reply([head, *chunked(event, sizes, trailer="X-Checksum: 1\r\n")], pause_s=0.01)
    second = Reply([head, *chunked(b'"again"', [2])])
    server, client = scripted(first, second)
    assert client.next_invocation().body == event
    assert client.next_invocation().body == b'"again"'
    assert [r.connection for r in server.requests] == [1, 1]


def test_http_layer_finds_the_end_of_headers_split_across_reads(scripted):
    answer = next_answer("id-1", body=b"[1]")
    end = answer.index(b"\r\n\r\n")
    # close=True: were the split blank line missed, the client would fail, not hang.
    pieces = [answer[:end + 1], answer[end + 1:end + 3], answer[end + 3:]]
    _, client = scripted(Reply(pieces, close=True, pause_s=0.05))
    invocation = client.next_invocation()
    assert (invocation.request_id, invocation.body) == ("id-1", b"[1]")


def test_http_layer_reads_a_body_that_ends_with_the_connection(scripted):
    answer = next_answer("id-1", body=b"until close", content_length=False)
    server, client = scripted(Reply([answer], close=True), Reply([next_answer("id-2")]))
    assert client.next_invocation().body == b"until close"
    assert client.next_invocation().request_id == "id-2"
    assert [r.connection for r in server.requests] == [1, 2]


def test_http_layer_skips_interim_answers(scripted):
    _, client = scripted(Reply([b"HTTP/1.1 100 Continue\r\n\r\n", next_answer("id-1")]))
    assert client.next_invocation().request_id == "id-1"


def test_http_layer_closes_after_connection_close(scripted):
    closing = next_answer("id-1").replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    # The server keeps its end open: only the header tells the client to leave.
    server, client = scripted(Reply([closing]), Reply([next_answer("id-2")]))
    assert client.next_invocation().request_id == "id-1"
    assert client.next_invocation().request_id == "id-2"
    assert [r.connection for r in server.requests] == [1, 2]


def test_http_layer_retries_once_when_an_idle_keep_alive_connection_was_closed(scripted):
    # The host answers, then closes the connection without saying so.
    server, client = scripted(Reply([next_answer("id-1")], close=True), Reply([ACCEPTED]),
                              Reply([next_answer("id-2")]))
    assert client.next_invocation().request_id == "id-1"
    client.post_response("id-1", b"{}", "application/json")
    assert client.next_invocation().request_id == "id-2"
    assert [r.connection for r in server.requests] == [1, 2, 2]


def test_http_layer_gives_up_when_the_retry_fails_too(scripted):
    server, client = scripted(Reply([next_answer("id-1")]), HANG_UP, HANG_UP)
    client.next_invocation()
    with pytest.raises(ConnectionResetError):
        client.next_invocation()
    assert [r.connection for r in server.requests] == [1, 1, 2]


def test_http_layer_does_not_retry_on_a_fresh_connection(scripted):
    server, client = scripted(HANG_UP, Reply([next_answer("id-1")]))
    with pytest.raises(rtc.ConnectionClosed):
        client.next_invocation()
    assert len(server.requests) == 1


def test_http_layer_refuses_a_body_cut_short(scripted):
    truncated = next_answer("id-1", body=b"0123456789")[:-4]
    server, client = scripted(Reply([truncated], close=True), Reply([next_answer("id-2")]))
    with pytest.raises(rtc.ProtocolError, match="4 bytes before the end"):
        client.next_invocation()
    assert len(server.requests) == 1  # a half-read answer is not retried


def test_http_layer_carries_6_mb_both_ways(scripted):
    event = b'"' + b"e" * (6 * 1024 * 1024) + b'"'
    result = b'"' + b"r" * (6 * 1024 * 1024) + b'"'
    server, client = scripted(Reply([next_answer("id-1", body=event)]), Reply([ACCEPTED]))
    invocation = client.next_invocation()
    assert invocation.body == event and type(invocation.body) is bytes
    client.post_response("id-1", result, "application/json")
    assert server.requests[1].headers["content-length"] == str(len(result))
    assert server.requests[1].body == result


def test_http_layer_refuses_a_header_value_with_a_line_break(scripted):
    _, client = scripted()
    with pytest.raises(ValueError):
        client.post_init_error({"errorType": "Bad\r\nInjected: yes", "errorMessage": "",
                                "requestId": "", "stackTrace": []})


def test_http_layer_dies_with_the_refusal_when_a_post_is_refused(scripted, capsys):
    refusal = http_answer("400 Bad Request", {"Content-Type": "application/json"},
                          b'{"errorType":"InvalidRequestID"}')
    _, client = scripted(Reply([refusal]))
    with pytest.raises(SystemExit) as exit_info:
        client.post_response("id-1", b"{}", "application/json")
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == (
        f"runtime_client: POST {API_PREFIX}/invocation/id-1/response answered HTTP 400: "
        '{"errorType":"InvalidRequestID"}\n')


@pytest.mark.parametrize("address,host,port,host_header", [
    ("127.0.0.1:9001", "127.0.0.1", 9001, "127.0.0.1:9001"),
    ("localhost", "localhost", 80, "localhost"),
    ("[::1]:9001", "::1", 9001, "[::1]:9001"),
])
def test_http_layer_reads_the_address_as_http_client_did(address, host, port, host_header):
    connection = rtc.HttpConnection(address)
    assert (connection.host, connection.port, connection.host_header) == (host, port, host_header)
