"""The pytest plugin users' own tests use: a host serving their functions for a test session.

Owns: the `lambda_host` fixture (a `runtime-host serve` started once per
session on a free loopback port, over the real Docker engine, stopped at the
end with every sandbox it started), where its folder of functions comes
from, and the boto3 client it hands out.
Must not: reach into the host (it is a separate process, exactly as a user
starts it) or know about any one function.

Which folder is served, first found wins:
1. the `lambda_functions_dir` fixture, if the user's conftest overrides it;
2. `pytest --lambda-functions DIR`;
3. `lambda_functions = DIR` in the ini file ([tool.pytest.ini_options] in
   pyproject.toml, pytest.ini, ...), relative to the ini file's folder.

    def test_my_handler(lambda_host):
        resp = lambda_host.client.invoke(FunctionName="my-fn", Payload=b'{"x": 1}')
        assert json.load(resp["Payload"]) == {"ok": True}

Loaded through the `pytest11` entry point of the runtime-host package.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

START_TIMEOUT_S = 600          # a first run builds the runtime images
STOP_TIMEOUT_S = 60
INI_OPTION = "lambda_functions"
CLI_OPTION = "--lambda-functions"


def pytest_addoption(parser) -> None:
    group = parser.getgroup("runtime-host", "runtime-host: serve Lambda functions to the lambda_host fixture")
    group.addoption(CLI_OPTION, dest="lambda_functions", default=None, metavar="DIR",
                    help="the folder of function folders lambda_host serves (overrides the ini option)")
    group.addoption("--lambda-host-args", dest="lambda_host_args", default="", metavar="ARGS",
                    help="more arguments for 'runtime-host serve', e.g. \"--stem-cells 0\"")
    parser.addini(INI_OPTION, "the folder of function folders lambda_host serves (relative to the ini file)",
                  default=None)


@dataclass
class LambdaHost:
    """A running host: its Invoke API endpoint, a boto3 Lambda client for it,
    and its state directory (logs, billing ledger)."""
    endpoint: str
    functions_dir: Path
    state_dir: Path
    process: subprocess.Popen = field(repr=False)
    _client: object = field(default=None, repr=False)

    @property
    def client(self):
        """boto3's Lambda client pointed at the host, with dummy credentials
        and no retries (a 429 reaches the test as it reached the caller)."""
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise RuntimeError("lambda_host.client needs boto3: pip install boto3") from None
            self._client = boto3.client(
                "lambda", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="test",
                aws_secret_access_key="test",
                config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=900))
        return self._client

    def invoke(self, function: str, event=None) -> object:
        """Invokes synchronously and returns the decoded JSON payload
        (a function error's payload too: check with client.invoke for FunctionError)."""
        resp = self.client.invoke(FunctionName=function, Payload=json.dumps({} if event is None else event))
        body = resp["Payload"].read()
        return json.loads(body) if body else None

    def logs(self, function: str, request_id: str | None = None):
        """The function's log events so far (runtime_host.store.log_streams.LogEvent)."""
        from runtime_host.store.log_streams import read_events
        return read_events(self.state_dir, function, request_id=request_id)

    def stderr(self) -> str:
        path = self.state_dir / "host.stderr"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="session")
def lambda_functions_dir(request) -> Path:
    """The folder of function folders to serve; override this fixture to choose it in code."""
    given = request.config.getoption("lambda_functions")
    if given:
        return Path(given).resolve()
    ini = request.config.getini(INI_OPTION)
    if ini:
        base = Path(request.config.inipath).parent if request.config.inipath else Path(request.config.rootpath)
        return (base / ini).resolve()
    raise pytest.UsageError(
        "lambda_host needs a folder of functions: pass --lambda-functions DIR, set lambda_functions = DIR in "
        "[tool.pytest.ini_options] (or pytest.ini), or override the lambda_functions_dir fixture")


@pytest.fixture(scope="session")
def lambda_host(lambda_functions_dir, tmp_path_factory, request):
    """A runtime-host serving lambda_functions_dir for the session."""
    functions_dir = Path(lambda_functions_dir)
    if not functions_dir.is_dir():
        raise pytest.UsageError(f"lambda_host: {functions_dir} is not a folder of function folders")
    host = start(functions_dir, tmp_path_factory.mktemp("lambda-host"),
                 request.config.getoption("lambda_host_args").split())
    yield host
    stop(host)


def start(functions_dir: Path, state_dir: Path, extra_args: list[str] | None = None) -> LambdaHost:
    """`runtime-host serve` on a free port, once its Invoke API answers."""
    port = _free_port()
    stderr = open(state_dir / "host.stderr", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime_host.cli", "serve", "--functions", str(functions_dir), "--port", str(port),
         "--url-port", "0", "--state-dir", str(state_dir), *(extra_args or [])],
        stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    stderr.close()
    host = LambdaHost(f"http://127.0.0.1:{port}", functions_dir, state_dir, proc)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"runtime-host serve exited with status {proc.returncode}:\n{host.stderr()}")
        try:
            urllib.request.urlopen(f"{host.endpoint}/2015-03-31/functions/", timeout=1).read()
            return host
        except OSError:
            time.sleep(0.1)
    stop(host)
    raise RuntimeError(f"runtime-host serve did not answer within {START_TIMEOUT_S} s:\n{host.stderr()}")


def stop(host: LambdaHost) -> None:
    """SIGTERM: the host drains, then removes every sandbox it started."""
    if host.process.poll() is None:
        host.process.send_signal(signal.SIGTERM)
        try:
            host.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            host.process.kill()
            host.process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
