"""Per runtime: cold start with stem cells (the invoke call to the first
response, no sandbox of the function running) and warm latency (sequential
100-byte events on one keep-alive connection), each runtime's example handler
(examples/hello-python, hello-node, hello-ruby, hello-shell) at 3,538 MB as
bench-python runs, so the host and the runtime are measured rather than
Lambda's CPU share at 128 MB. One host per runtime, one after the other; the
python3.11 row is the reference the others are read beside (same run)."""
from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

from common import EVENT_100_BYTES, REPO, Caller, Host, invoke_path, percentiles

EXAMPLE_OF = {"python3.11": "hello-python", "python3.13": "hello-python", "nodejs18.x": "hello-node",
              "nodejs20.x": "hello-node", "nodejs22.x": "hello-node", "nodejs24.x": "hello-node",
              "ruby3.3": "hello-ruby", "provided.al2023": "hello-shell"}
MEMORY_MB = 3538


def _functions(runtime: str, cold_reps: int) -> Path:
    """cold-0 .. cold-N-1 (each invoked once, cold) and warm, all the example on `runtime`."""
    root = Path(tempfile.mkdtemp(prefix=f"rh-bench-{runtime}-"))
    example = REPO / "examples" / EXAMPLE_OF[runtime]
    handler = next(line for line in (example / "function.toml").read_text().splitlines()
                   if line.startswith("handler"))
    for name in [f"cold-{i}" for i in range(cold_reps)] + ["warm"]:
        target = root / name
        shutil.copytree(example, target, ignore=shutil.ignore_patterns("function.toml", "__pycache__"))
        (target / "function.toml").write_text(
            f'name = "{name}"\nruntime = "{runtime}"\n{handler}\nmemory_mb = {MEMORY_MB}\ntimeout_s = 10\n'
            'reserved_concurrency = 4\n[environment]\nGREETING = "hello"\n')
    return root


def _stems_ready(port: int) -> int:
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/runtime-host/sandboxes"))["host"][
        "stem_cells_ready"]


def one(runtime: str, cold_reps: int, n: int, warmup: int) -> dict:
    root = _functions(runtime, cold_reps)
    cold = []
    try:
        with Host(root) as host:
            for i in range(cold_reps):
                deadline = time.monotonic() + 60       # a stem in stock, as between cold starts
                while _stems_ready(host.port) < 1 and time.monotonic() < deadline:
                    time.sleep(0.05)
                caller = Caller(host.port, invoke_path(f"cold-{i}"))
                status, body, ms = caller.call(EVENT_100_BYTES)
                caller.close()
                assert status == 200, (runtime, body[:300])
                cold.append(ms)
            caller = Caller(host.port, invoke_path("warm"))
            for _ in range(warmup):
                status, body, _ = caller.call(EVENT_100_BYTES)
                assert status == 200, (runtime, body[:300])
            warm = []
            for _ in range(n):
                status, body, ms = caller.call(EVENT_100_BYTES)
                assert status == 200, (runtime, body[:300])
                warm.append(ms)
            caller.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"cold_stem_cells": percentiles(cold), "warm": percentiles(warm)}


def run(cold_reps: int = 10, n: int = 1000, warmup: int = 50, runtimes: tuple[str, ...] = tuple(EXAMPLE_OF)) -> dict:
    return {"memory_mb": MEMORY_MB, **{runtime: one(runtime, cold_reps, n, warmup) for runtime in runtimes}}
