"""Fixtures shared by the end-to-end tests: a real host (`runtime-host serve`
as a subprocess, as a user starts it) on the real Docker engine, and the
callers users use (boto3 and the AWS CLI)."""
from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
RUNTIME_HOST = str(VENV_BIN / "runtime-host")
HOST_START_TIMEOUT_S = 600      # a first run may build images
UNIT_TESTS = REPO / "tests" / "unit"


def pytest_collection_modifyitems(items) -> None:
    """Everything outside tests/unit runs real containers: marked `docker`,
    so `pytest -m "not docker"` (make unit) runs the rest in seconds."""
    for item in items:
        if UNIT_TESTS not in Path(item.fspath).parents:
            item.add_marker(pytest.mark.docker)


DUMMY_AWS_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def containers_of_host(pid: int) -> list[str]:
    return docker("ps", "-aq", "--filter", f"label=runtime-host.host-pid={pid}").split()


@dataclass
class RunningHost:
    proc: subprocess.Popen
    endpoint: str
    state_dir: Path
    functions_dir: Path
    stderr_path: Path
    url_port: int = 0                   # where its function URLs listen (`serve --url-port`)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def log_of(self, function: str) -> str:
        path = self.state_dir / "logs" / f"{function}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def networks(self) -> list[str]:
        """Every sandbox network of this host: its first, then the shards it
        added as sandboxes filled the others (engine.create_shard), first first."""
        names = docker("network", "ls", "--format", "{{.Name}}", "--filter",
                       f"label=runtime-host.host-pid={self.pid}").split()
        assert names, "the host has no sandbox network"
        return sorted(names, key=lambda name: (len(name), name))

    def network(self) -> str:
        """The host's first sandbox network, whose gateway is the Runtime API's address."""
        return self.networks()[0]


@pytest.fixture(scope="session")
def docker_engine() -> None:
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine answers 'docker info'; run scripts/ensure-docker (make docker) first")


@pytest.fixture(scope="session")
def functions_dir(tmp_path_factory, awslambdaric_function, node_ric_functions) -> Path:
    """examples/* and tests/functions/* side by side, as `serve --functions` takes them.

    A test function whose folder holds a CODE_FROM file shares its code with
    the folder named there: that code is copied in (a sandbox sees only its
    own folder at /var/task, so a symlink would not do)."""
    root = tmp_path_factory.mktemp("functions")
    for parent in (REPO / "examples", REPO / "tests" / "functions"):
        for folder in sorted(parent.iterdir()):
            if not (folder / "function.toml").exists():
                continue
            if (folder / "CODE_FROM").exists():
                source = folder.parent / (folder / "CODE_FROM").read_text().strip()
                shutil.copytree(source, root / folder.name, ignore=shutil.ignore_patterns("function.toml"))
                shutil.copy2(folder / "function.toml", root / folder.name / "function.toml")
            else:
                (root / folder.name).symlink_to(folder)
    (root / awslambdaric_function.name).symlink_to(awslambdaric_function)
    for folder in sorted(node_ric_functions.iterdir()):
        (root / folder.name).symlink_to(folder)
    return root


def start_host(functions_dir: Path, state_dir: Path, port: int | None = None,
               extra_args: list[str] | None = None) -> RunningHost:
    port = port or free_port()
    url_port = free_port()              # not --port + 1, which another test's host may hold
    state_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = state_dir / "host.stderr"
    proc = subprocess.Popen(
        [RUNTIME_HOST, "serve", "--functions", str(functions_dir), "--port", str(port),
         "--url-port", str(url_port), "--state-dir", str(state_dir), *(extra_args or [])],
        stdout=subprocess.DEVNULL, stderr=open(stderr_path, "wb"), cwd=REPO)
    host = RunningHost(proc, f"http://127.0.0.1:{port}", state_dir, functions_dir, stderr_path, url_port)
    deadline = time.monotonic() + HOST_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"runtime-host serve exited with {proc.returncode}:\n{host.stderr()}")
        try:
            urllib.request.urlopen(f"{host.endpoint}/2015-03-31/functions/", timeout=1).read()
            return host
        except OSError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail(f"runtime-host serve did not answer within {HOST_START_TIMEOUT_S} s:\n{host.stderr()}")


def stop_host(host: RunningHost) -> None:
    if host.proc.poll() is None:
        host.proc.send_signal(signal.SIGTERM)
        try:
            host.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            host.proc.kill()
            host.proc.wait()


@pytest.fixture(scope="session")
def host(docker_engine, functions_dir, tmp_path_factory) -> RunningHost:
    running = start_host(functions_dir, tmp_path_factory.mktemp("state"))
    yield running
    stop_host(running)
    assert running.proc.returncode == 0, running.stderr()
    left = containers_of_host(running.pid)
    if left:
        docker("rm", "-f", *left, check=False)
    assert left == [], f"the host left containers behind: {left}"


def client_for(endpoint: str):
    """boto3's Lambda client as a user points it at a host: dummy credentials,
    and no retries, so a 429 or 5xx reaches the test as it reached the caller."""
    import boto3
    from botocore.config import Config

    return boto3.client("lambda", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                      read_timeout=120, connect_timeout=5))


@pytest.fixture(scope="session")
def lambda_client(host):
    return client_for(host.endpoint)


def invoke(client, name: str, event=None, **kwargs) -> tuple[dict, object]:
    """boto3 invoke; returns (the response metadata dict, the decoded JSON payload)."""
    resp = client.invoke(FunctionName=name, Payload=json.dumps(event if event is not None else {}), **kwargs)
    body = resp["Payload"].read()
    return resp, json.loads(body) if body else None


# --- awslambdaric: the real AWS Python runtime client, from PyPI ------------------
AWSLAMBDARIC_HANDLER = '''
COUNT = 0
def handler(event, context):
    global COUNT
    COUNT += 1
    print("awslambdaric handler saw", event, flush=True)
    if event.get("fail"):
        raise RuntimeError("failing on request")
    return {"ric": True, "count": COUNT, "request_id": context.aws_request_id,
            "remaining_ms": context.get_remaining_time_in_millis(), "event": event}
'''


@pytest.fixture(scope="session")
def awslambdaric_function(docker_engine, tmp_path_factory) -> Path:
    """A function of runtime = "image": our python3.11 image plus awslambdaric
    (manylinux wheel from PyPI) as its entrypoint, as AWS's own base images do."""
    from runtime_host.backend.docker import image_builder as images

    base = images.ensure_image("python3.11")
    ctx = tmp_path_factory.mktemp("ric-image")
    wheels = ctx / "ric"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(wheels),
                    "--only-binary=:all:", "--platform", "manylinux2014_x86_64", "--python-version", "3.11",
                    "--implementation", "cp", "awslambdaric"], check=True)
    (ctx / "app.py").write_text(AWSLAMBDARIC_HANDLER)
    (ctx / "Dockerfile").write_text(
        f"FROM {base}\nLABEL runtime-host-test=awslambdaric\nCOPY ric/ /opt/ric/\nCOPY app.py /var/task/app.py\n"
        "ENV PYTHONPATH=/opt/ric\nWORKDIR /var/task\n"
        'ENTRYPOINT ["/usr/bin/python3", "-m", "awslambdaric"]\nCMD ["app.handler"]\n')
    tag = "runtime-host-test/awslambdaric:latest"
    subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], check=True, capture_output=True)
    # Each session's pip download is a new build context; the image it replaces
    # is left untagged, so remove those rather than let them pile up.
    subprocess.run(["docker", "image", "prune", "-f", "--filter", "label=runtime-host-test=awslambdaric"],
                   check=True, capture_output=True)
    fn = tmp_path_factory.mktemp("ric-function") / "py-awslambdaric"
    fn.mkdir()
    (fn / "function.toml").write_text(
        f'runtime = "image"\nimage = "{tag}"\nhandler = "app.handler"\nmemory_mb = 256\ntimeout_s = 5\n')
    return fn


@pytest.fixture(scope="session")
def node_ric_functions(docker_engine, tmp_path_factory) -> Path:
    """node-ric, node-ric-fail, node-ric-stream: AWS's Node RIC (npm aws-lambda-ric) image (tests/ric_node.py)."""
    from tests.ric_node import build_node_ric_function

    return build_node_ric_function(tmp_path_factory)
