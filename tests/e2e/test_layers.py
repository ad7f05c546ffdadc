"""Layers end to end: function folders with layers (folders and .zip files)
served by a real host on the real engine (stem cells on, as users run it)
and run once by `runtime-host run` (no stem cells), called with boto3."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, RUNTIME_HOST, client_for, invoke, start_host, stop_host
from tests.zips import make_zip


def function(root: Path, name: str, toml: str, files: dict[str, str]) -> None:
    folder = root / "functions" / name
    folder.mkdir(parents=True)
    (folder / "function.toml").write_text(toml)
    for file, text in files.items():
        (folder / file).write_text(text)


@pytest.fixture(scope="module")
def layered(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("layered")
    layers = root / "layers"
    # A folder layer with a Python module, overridden by a zip layer that also brings a tool in bin/.
    (layers / "pylib" / "python").mkdir(parents=True)
    (layers / "pylib" / "python" / "greeting.py").write_text("WHO = 'the folder layer'\n")
    (layers / "pylib" / "python" / "only_here.py").write_text("VALUE = 42\n")
    make_zip(layers / "tools.zip", {"python/greeting.py": ("WHO = 'the zip layer'\n", 0o644),
                                    "bin/shout": ("#!/bin/sh\necho \"$*\" | tr a-z A-Z\n", 0o755)})
    function(root, "py-layered", 'runtime = "python3.11"\nhandler = "app.handler"\n'
             'layers = ["../../layers/pylib", "../../layers/tools.zip"]\n', {"app.py": (
                 "import subprocess, greeting, only_here\n"
                 "def handler(event, context):\n"
                 "    try:\n"
                 "        open('/opt/new-file', 'w')\n"
                 "        opt_writable = True\n"
                 "    except OSError:\n"
                 "        opt_writable = False\n"
                 "    shout = subprocess.run(['shout', 'from bin'], capture_output=True, text=True).stdout.strip()\n"
                 "    return {'who': greeting.WHO, 'value': only_here.VALUE, 'shout': shout,\n"
                 "            'opt_writable': opt_writable}\n")})
    # A custom runtime whose bootstrap comes from a layer (/opt/bootstrap): hello-shell's.
    bootstrap = (REPO / "examples" / "hello-shell" / "bootstrap").read_bytes()
    make_zip(layers / "shell-runtime.zip", {"bootstrap": (bootstrap, 0o755)})
    function(root, "sh-runtime-from-layer", 'runtime = "provided"\nhandler = "function.handler"\n'
             'layers = ["../../layers/shell-runtime.zip"]\n',
             {"function.sh": (REPO / "examples" / "hello-shell" / "function.sh").read_text()})
    # Node: a package from a layer's nodejs/node_modules, found through NODE_PATH.
    (layers / "nodelib" / "nodejs" / "node_modules" / "greet").mkdir(parents=True)
    (layers / "nodelib" / "nodejs" / "node_modules" / "greet" / "index.js").write_text(
        "module.exports = (name) => `hello ${name} from a layer`;\n")
    function(root, "node-layered", 'runtime = "nodejs18.x"\nhandler = "index.handler"\n'
             'layers = ["../../layers/nodelib"]\n',
             {"index.js": "const greet = require('greet');\nexports.handler = async () => greet('node');\n"})
    # A wrapper script from a layer (AWS_LAMBDA_EXEC_WRAPPER) that starts the interpreter it is handed.
    make_zip(layers / "wrapper.zip", {"wrapper.sh": ("#!/bin/sh\nexport WRAPPED_BY=wrapper.sh\n"
                                                     "export WRAPPED_COMMAND=\"$*\"\nexec \"$@\"\n", 0o755)})
    function(root, "py-wrapped", 'runtime = "python3.11"\nhandler = "app.handler"\nlayers = ["../../layers/wrapper.zip"]\n'
             '[environment]\nAWS_LAMBDA_EXEC_WRAPPER = "/opt/wrapper.sh"\n',
             {"app.py": "import os\ndef handler(event, context):\n"
                        "    return {k: os.environ.get(k) for k in ('WRAPPED_BY', 'WRAPPED_COMMAND')}\n"})
    return root


@pytest.fixture(scope="module")
def layered_client(docker_engine, layered, tmp_path_factory):
    running = start_host(layered / "functions", tmp_path_factory.mktemp("layered-state"))
    yield client_for(running.endpoint)
    stop_host(running)
    assert running.proc.returncode == 0, running.stderr()


def test_python_finds_layer_modules_and_tools_and_later_layers_win(layered_client):
    for _ in range(2):                                    # the cold start (a stem cell), then warm
        resp, body = invoke(layered_client, "py-layered")
        assert "FunctionError" not in resp, body
        assert body == {"who": "the zip layer", "value": 42, "shout": "FROM BIN", "opt_writable": False}


def test_a_provided_functions_bootstrap_runs_from_a_layer(layered_client):
    resp, body = invoke(layered_client, "sh-runtime-from-layer", {"k": "v"})
    assert "FunctionError" not in resp, body
    assert body == {"message": "hello from shell", "event": {"k": "v"}}


def test_node_requires_a_package_from_a_layer(layered_client):
    resp, body = invoke(layered_client, "node-layered")
    assert "FunctionError" not in resp, body
    assert body == "hello node from a layer"


def test_an_exec_wrapper_from_a_layer_starts_the_runtime(layered_client):
    resp, body = invoke(layered_client, "py-wrapped")
    assert "FunctionError" not in resp, body
    assert body["WRAPPED_BY"] == "wrapper.sh"
    assert body["WRAPPED_COMMAND"].startswith("/usr/bin/python3 ")


def test_runtime_host_run_serves_layers_without_stem_cells(docker_engine, layered, tmp_path):
    out = subprocess.run([RUNTIME_HOST, "run", str(layered / "functions" / "py-layered"),
                          "--state-dir", str(tmp_path / "state")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr + out.stdout
    response = out.stdout.split("--- response ---", 1)[1]
    assert json.loads(response)["who"] == "the zip layer"


def test_serve_refuses_a_bad_layer_and_still_serves_the_others(docker_engine, layered, tmp_path):
    functions = tmp_path / "functions"
    shutil.copytree(layered / "functions" / "node-layered", functions / "node-layered", symlinks=True)
    (functions / "node-layered" / "function.toml").write_text(
        'runtime = "nodejs18.x"\nhandler = "index.handler"\nlayers = ["' + str(layered / "layers" / "nodelib") + '"]\n')
    function(tmp_path, "broken", 'runtime = "python3.11"\nhandler = "app.handler"\nlayers = ["missing-layer"]\n',
             {"app.py": ""})
    running = start_host(functions, tmp_path / "state")
    try:
        assert "field 'layers' = 'missing-layer'" in running.stderr()
        _, body = invoke(client_for(running.endpoint), "node-layered")
        assert body == "hello node from a layer"
    finally:
        stop_host(running)
