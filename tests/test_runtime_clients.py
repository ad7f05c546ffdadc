"""The in-sandbox runtime clients (Python, Node, the shell example) against a fake Runtime API.

Each test starts the fake server (tests/fake_runtime_api.py), runs one client
as a subprocess with the environment the host gives a sandbox, and checks what
the client sent: bodies, content types, error documents, init errors, exit
statuses. No Docker and no host involved; the clients run on this machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.fake_runtime_api import FakeRuntimeApi

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
