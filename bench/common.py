"""What every benchmark shares: starting a host as a user does, a
keep-alive HTTP client, percentiles, and the machine's description."""
from __future__ import annotations

import http.client
import json
import os
import shutil
import tempfile
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
def _bench_functions() -> Path:
    """bench/functions/*, each with the handler of the example it measures
    (bench-python: examples/hello-python/app.py), in a folder of their own."""
    root = Path(tempfile.mkdtemp(prefix="rh-bench-functions-"))
    shutil.copytree(REPO / "bench" / "functions", root, dirs_exist_ok=True)
    shutil.copy2(REPO / "examples" / "hello-python" / "app.py", root / "bench-python" / "app.py")
    return root


BENCH_FUNCTIONS = _bench_functions()
RUNTIME_HOST = str(Path(sys.executable).parent / "runtime-host")
EVENT_100_BYTES = json.dumps({"k": "v" * 91}).encode()
assert len(EVENT_100_BYTES) == 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]

    # The distribution itself, for the chart: every whole percentile, p0 to p100.
    quantiles = [round(pct(p), 4) for p in range(101)]
    return {"p50": pct(50), "p90": pct(90), "p99": pct(99), "mean": statistics.fmean(ordered), "n": len(ordered),
            "quantiles": quantiles}


class Host:
    """`runtime-host serve` in a subprocess, as a user starts it."""

    def __init__(self, functions: Path, *extra: str, state_dir: Path | None = None):
        self.port = free_port()
        self.state_dir = state_dir or Path("/tmp") / f"rh-bench-{self.port}"
        self.proc = subprocess.Popen([RUNTIME_HOST, "serve", "--functions", str(functions), "--port", str(self.port),
                                      "--state-dir", str(self.state_dir), *extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 600
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("runtime-host serve did not start")
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=600)   # a host removing 500 sandboxes stops them one at a time

    def __enter__(self) -> "Host":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


CALL_TIMEOUT_S = 300   # far above any bench call (the scale phase's held calls queue behind cold starts)


class Caller:
    """One keep-alive connection, like an SDK client reusing its socket. A
    call not answered within CALL_TIMEOUT_S raises (socket.timeout) instead
    of hanging the bench."""

    def __init__(self, port: int, path: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CALL_TIMEOUT_S)
        self.path = path

    def call(self, body: bytes) -> tuple[int, bytes, float]:
        started = time.perf_counter()
        self.conn.request("POST", self.path, body=body, headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, data, (time.perf_counter() - started) * 1000

    def close(self) -> None:
        self.conn.close()


def invoke_path(function: str) -> str:
    return f"/2015-03-31/functions/{function}/invocations"


def machine() -> dict:
    docker_version = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                                    capture_output=True, text=True).stdout.strip()
    cgroup = "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1"
    return {"cores": os.cpu_count(), "kernel": platform.release(), "docker": docker_version, "cgroup": cgroup,
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
