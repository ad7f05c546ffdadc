"""Every runtime we offer (runtime_host/core/runtimes.py), end to end: a host
of its own serves the example handlers and the probes of tests/fixtures/runtimes
on each runtime, built from our images with our runtime clients, and boto3
invokes them. What is checked per runtime: the example answers (cold, then
warm), the interpreter is the runtime's version with AWS_EXECUTION_ENV as
Lambda sets it, ES modules load on Node, and a missing module, a missing
handler and a file that does not parse give the error each language's AWS
runtime gives. A deprecated runtime loads with a warning naming its date."""
from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, client_for, containers_of_host, docker, invoke, start_host, stop_host

FIXTURES = REPO / "tests" / "fixtures" / "runtimes"
EXAMPLES = REPO / "examples"

PYTHONS = {"python3.11": "3.11", "python3.13": "3.13"}
NODES = {"nodejs18.x": 18, "nodejs20.x": 20, "nodejs22.x": 22, "nodejs24.x": 24}
RUBIES = {"ruby3.3": "3.3"}
PROVIDED = ("provided", "provided.al2", "provided.al2023")
# Lambda's own flags on Node 20 and 22 (docs/spec-additions.md §9).
NODE_FLAGS = {18: [], 20: ["--no-experimental-require-module"],
              22: ["--no-experimental-require-module", "--no-experimental-detect-module"], 24: []}
EXAMPLE_OF = {**{r: ("hello-python", "python") for r in PYTHONS}, **{r: ("hello-node", "node") for r in NODES},
              **{r: ("hello-ruby", "ruby") for r in RUBIES}, **{r: ("hello-shell", None) for r in PROVIDED}}
DEPRECATED = {"python3.11": "June 30, 2026", "nodejs18.x": "September 1, 2025", "nodejs20.x": "April 30, 2026",
              "provided.al2": "June 30, 2026"}


def fn_name(kind: str, runtime: str) -> str:
    return f"{kind}-{runtime.replace('.', '-')}"


def write_function(root: Path, kind: str, runtime: str, code: Path, handler: str, memory_mb: int = 256) -> None:
    folder = root / fn_name(kind, runtime)
    shutil.copytree(code, folder, ignore=shutil.ignore_patterns("function.toml", "__pycache__"))
    # 256 MB: a quarter more CPU than 128 MB keeps Ruby's and Node's first start short on a busy machine.
    (folder / "function.toml").write_text(
        f'runtime = "{runtime}"\nhandler = "{handler}"\nmemory_mb = {memory_mb}\ntimeout_s = 30\n'
        '[environment]\nGREETING = "hello"\n')


@pytest.fixture(scope="module")
def runtimes_host(docker_engine, tmp_path_factory):
    root = tmp_path_factory.mktemp("runtime-functions")
    for runtime, (example, _) in EXAMPLE_OF.items():
        write_function(root, "example", runtime, EXAMPLES / example, _example_handler(example))
    for runtime in PYTHONS:
        write_function(root, "probe", runtime, FIXTURES / "python", "probe.handler")
        write_function(root, "no-module", runtime, FIXTURES / "python", "missing.handler")
        write_function(root, "no-handler", runtime, FIXTURES / "python", "probe.nope")
        write_function(root, "syntax", runtime, FIXTURES / "python-syntax", "broken.handler")
    for runtime in NODES:
        write_function(root, "probe", runtime, FIXTURES / "node", "probe.handler")
        write_function(root, "mjs", runtime, FIXTURES / "node-mjs", "index.handler")
        write_function(root, "module", runtime, FIXTURES / "node-module", "index.handler")
        write_function(root, "callback", runtime, FIXTURES / "node-callback", "index.handler")
        write_function(root, "no-module", runtime, FIXTURES / "node", "missing.handler")
        write_function(root, "no-handler", runtime, FIXTURES / "node", "probe.nope")
        write_function(root, "syntax", runtime, FIXTURES / "node-syntax", "broken.handler")
    for runtime in RUBIES:
        write_function(root, "probe", runtime, FIXTURES / "ruby", "probe.handler")
        write_function(root, "class", runtime, FIXTURES / "ruby", "probe.Greeter::Handler.process")
        write_function(root, "raises", runtime, FIXTURES / "ruby", "probe.failing")
        write_function(root, "no-module", runtime, FIXTURES / "ruby", "missing.handler")
        write_function(root, "no-handler", runtime, FIXTURES / "ruby", "probe.nope")
        write_function(root, "syntax", runtime, FIXTURES / "ruby-syntax", "broken.handler")
    running = start_host(root, tmp_path_factory.mktemp("runtime-state"))
    yield running
    stop_host(running)
    left = containers_of_host(running.pid)
    if left:
        docker("rm", "-f", *left, check=False)
    assert running.proc.returncode == 0, running.stderr()
    assert left == [], f"the host left containers behind: {left}"


def _example_handler(example: str) -> str:
    import tomllib
    return tomllib.loads((EXAMPLES / example / "function.toml").read_text())["handler"]


@pytest.fixture(scope="module")
def client(runtimes_host):
    return client_for(runtimes_host.endpoint)


@pytest.mark.parametrize("runtime", list(EXAMPLE_OF))
def test_the_example_handler_answers_cold_then_warm(client, runtime):
    example, language = EXAMPLE_OF[runtime]
    resp, first = invoke(client, fn_name("example", runtime), {"n": 1}, LogType="Tail")
    assert "FunctionError" not in resp, first
    assert first["message"] == f"hello from {language or 'shell'}" and first["event"] == {"n": 1}
    # The handler's own log line, through the stem cell's output redirection.
    assert f"hello-{language or 'shell'}: " in base64.b64decode(resp["LogResult"]).decode()
    if language is None:                       # hello-shell: a bash bootstrap, no counter
        return
    assert first["request_id"] == resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    _, second = invoke(client, fn_name("example", runtime), {"n": 2})
    assert second["invocation"] == first["invocation"] + 1 and second["event"] == {"n": 2}


@pytest.mark.parametrize("runtime", [*PYTHONS, *NODES, *RUBIES])
def test_the_interpreter_is_the_runtimes_with_lambdas_execution_env(client, runtime):
    resp, body = invoke(client, fn_name("probe", runtime), {"k": "v"})
    assert "FunctionError" not in resp, body
    assert body["exec_env"] == f"AWS_Lambda_{runtime}"
    assert body["event"] == {"k": "v"}
    if runtime in PYTHONS:
        assert body["version"] == PYTHONS[runtime]
    elif runtime in NODES:
        assert body["version"].startswith(f"v{NODES[runtime]}."), body
        assert body["exec_argv"] == NODE_FLAGS[NODES[runtime]]
    else:
        assert body["version"].startswith(RUBIES[runtime] + "."), body
        assert 0 < body["remaining_ms"] <= 30_000


@pytest.mark.parametrize("runtime", list(NODES))
@pytest.mark.parametrize("kind, file", [("mjs", "index.mjs"), ("module", "index.js")])
def test_node_loads_es_modules(client, runtime, kind, file):
    resp, body = invoke(client, fn_name(kind, runtime), {"esm": True})
    assert "FunctionError" not in resp, body
    assert body["module"] == "esm" and body["file"] == file and body["event"] == {"esm": True}
    if kind == "module":
        assert body["greeting"] == "hello from an ES module"          # its top-level await ran


@pytest.mark.parametrize("runtime", list(NODES))
def test_callback_handlers_are_refused_from_nodejs24(client, runtime):
    resp, body = invoke(client, fn_name("callback", runtime))
    if NODES[runtime] < 24:
        assert "FunctionError" not in resp and body == {"answered": "by callback"}, body
        return
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.CallbackHandlerDeprecated"
    assert body["errorMessage"].startswith(
        "ERROR: AWS Lambda has removed support for callback-based function handlers starting with Node.js 24.")


@pytest.mark.parametrize("runtime", [*PYTHONS, *NODES])
@pytest.mark.parametrize("kind, error_type, words", [
    ("no-module", "Runtime.ImportModuleError", "missing"),
    ("no-handler", "Runtime.HandlerNotFound", "nope"),
    ("syntax", "Runtime.UserCodeSyntaxError", "broken"),
])
def test_init_errors_have_the_shape_of_aws_runtime_for_the_language(client, runtime, kind, error_type, words):
    resp, body = invoke(client, fn_name(kind, runtime))
    assert resp["FunctionError"] == "Unhandled", body
    assert body["errorType"] == error_type, body
    if kind != "syntax" or runtime in PYTHONS:     # node's SyntaxError names the token, not the file
        assert words in body["errorMessage"], body


# AWS's Ruby runtime (the aws_lambda_ric gem) classifies by where the error was
# raised: Init<...> while loading, Function<...> in the handler
# (docs/spec-additions.md §9).
@pytest.mark.parametrize("kind, error_type, words", [
    ("no-module", "Init<LoadError>", "cannot load such file"),
    ("syntax", "Init<SyntaxError>", "broken.rb"),
    ("no-handler", "Function<NoMethodError>", "nope"),
    ("raises", "Function<ZeroDivisionError>", "divided by 0"),
])
def test_ruby_errors_have_the_shape_of_aws_ruby_runtime(client, kind, error_type, words):
    resp, body = invoke(client, fn_name(kind, "ruby3.3"))
    assert resp["FunctionError"] == "Unhandled", body
    assert body["errorType"] == error_type and words in body["errorMessage"], body
    assert isinstance(body["stackTrace"], list)


def test_ruby_handler_may_be_a_class_method(client):
    resp, body = invoke(client, fn_name("class", "ruby3.3"), {"name": "Ada"})
    assert "FunctionError" not in resp, body
    assert body == {"greeted": "Ada", "function": fn_name("class", "ruby3.3")}


def test_ruby_sandbox_keeps_serving_after_a_handler_error(client):
    _, error = invoke(client, fn_name("raises", "ruby3.3"))
    assert error["errorType"] == "Function<ZeroDivisionError>"
    resp, body = invoke(client, fn_name("probe", "ruby3.3"), {"after": "error"})
    assert "FunctionError" not in resp and body["event"] == {"after": "error"}


@pytest.mark.parametrize("runtime", list(DEPRECATED))
def test_deprecated_runtimes_load_with_a_warning_naming_the_date(runtimes_host, runtime):
    warning = (f"function '{fn_name('example', runtime)}': runtime {runtime!r} is deprecated: "
               f"Lambda ended its support on {DEPRECATED[runtime]}")
    assert warning in runtimes_host.stderr()


def test_supported_runtimes_load_without_a_warning(runtimes_host):
    for runtime in ("python3.13", "nodejs22.x", "nodejs24.x", "ruby3.3", "provided.al2023"):
        assert f"runtime {runtime!r} is deprecated" not in runtimes_host.stderr()


def test_serve_builds_only_the_images_its_functions_need(docker_engine, tmp_path):
    root = tmp_path / "functions"
    shutil.copytree(EXAMPLES / "hello-ruby", root / "hello-ruby")
    running = start_host(root, tmp_path / "state")
    try:
        resp, body = invoke(client_for(running.endpoint), "hello-ruby", {"only": "ruby"})
        assert "FunctionError" not in resp and body["event"] == {"only": "ruby"}
    finally:
        stop_host(running)
    image_lines = [line for line in running.stderr().splitlines() if line.startswith("images: ")]
    assert image_lines and all(line.split()[1].rstrip(":") in ("ruby3.3", "base-trixie", "rootfs-trixie")
                               for line in image_lines), image_lines
    assert running.proc.returncode == 0
