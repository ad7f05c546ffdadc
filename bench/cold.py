"""Cold start: from the invoke call to the first response, with no sandbox
of that function running, container start included. Ours with stem cells
(the default) and without (--stem-cells 0), against the floor: a bare
`docker run --rm` of the same image, on the host network and on a bridge."""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from common import BENCH_FUNCTIONS, EVENT_100_BYTES, Caller, Host, invoke_path, percentiles

from runtime_host.backend.docker import image_builder as images


def _layer(root: Path) -> Path:
    """A layer of the usual kind: a Python package (200 small modules) and a tool in bin/."""
    layer = root / "layer"
    package = layer / "python" / "benchlib"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for i in range(200):
        (package / f"m{i}.py").write_text(f"VALUE = {i}\n")
    (layer / "bin").mkdir()
    (layer / "bin" / "tool").write_text("#!/bin/sh\necho tool\n")
    (layer / "bin" / "tool").chmod(0o755)
    return layer


def _functions(reps: int, layers: bool = False) -> Path:
    """reps copies of bench-python under other names: each is cold once;
    with `layers`, each also has two layers (the one above, and a second folder)."""
    root = Path(tempfile.mkdtemp(prefix="rh-bench-cold-"))
    source = BENCH_FUNCTIONS / "bench-python"
    if layers:
        layer = _layer(root)
        (root / "layer2" / "python").mkdir(parents=True)
        (root / "layer2" / "python" / "extra.py").write_text("X = 1\n")
    for i in range(reps):
        target = root / f"cold-{i}"
        shutil.copytree(source, target)
        name_line = f'name = "cold-{i}"'
        if layers:                               # top-level keys go before the [environment] table
            name_line += f'\nlayers = ["{layer}", "{root / "layer2"}"]'
        toml = (target / "function.toml").read_text().replace('name = "bench-python"', name_line)
        (target / "function.toml").write_text(toml)
    return root


def _host_view(port: int) -> dict:
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/runtime-host/sandboxes"))["host"]


def ours(reps: int, stem_cells: bool, layers: bool = False) -> dict:
    root = _functions(reps, layers)
    samples = []
    try:
        with Host(root, *(() if stem_cells else ("--stem-cells", "0"))) as host:
            for i in range(reps):
                if stem_cells:                  # wait until a stem is in stock, as it would be between cold starts
                    deadline = time.monotonic() + 30
                    while _host_view(host.port)["stem_cells_ready"] < 1 and time.monotonic() < deadline:
                        time.sleep(0.05)
                caller = Caller(host.port, invoke_path(f"cold-{i}"))
                status, body, ms = caller.call(EVENT_100_BYTES)
                caller.close()
                assert status == 200, body[:300]
                samples.append(ms)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return percentiles(samples)


def docker_run_floor(reps: int, network: str) -> dict:
    image = images.ensure_image("python3.11")
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", f"--network={network}", image, "true"], check=True,
                       capture_output=True)
        samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples)


def run(n: int = 10, warmup: int = 0) -> dict:
    reps = max(2, min(n, 10))
    return {
        "ours_stem_cells": ours(reps, stem_cells=True),
        "ours_no_stem_cells": ours(reps, stem_cells=False),
        "ours_stem_cells_two_layers": ours(reps, stem_cells=True, layers=True),
        "floor_docker_run_host_network": docker_run_floor(reps, "host"),
        "floor_docker_run_bridge": docker_run_floor(reps, "bridge"),
    }
