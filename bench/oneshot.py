"""The one-shot run, against SAM CLI: `runtime-host run examples/hello-python`
(what `make run` calls: --keep-warm 300) and `sam local invoke` of the same
function (bench/sam/template.yaml), in turns, N times each, wall time of the
whole command as a user types it.

SAM runs with no registry and no network: our python3.11 image is tagged
public.ecr.aws/lambda/python:3.11-x86_64 (SAM builds its own image on top of
that name, adding the RIE binary its wheel ships; --skip-pull-image keeps it
from asking a registry), SAM_CLI_TELEMETRY=0, and AWS_ENDPOINT_URL_STS points
at a closed loopback port (SAM asks STS for the account at start: refused at
once, it goes on). One SAM run before the turns builds SAM's image; it is not
counted.

Ours is measured three ways: the first run with nothing running (it starts the
warm host: what a user sees first), then in turns with SAM the runs a user
makes next (the warm host's sandbox, or a cold one after a code change), and
the host for one run only (--keep-warm 0, the way `run` worked before).
Must not: leave the warm host running (stopped at the end, even on error).
"""
from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, free_port

from runtime_host import warm_run
from runtime_host.backend.docker import image_builder as images

SAM_BASE_IMAGE = "public.ecr.aws/lambda/python:3.11-x86_64"
TEMPLATE = REPO / "bench" / "sam" / "template.yaml"
FUNCTION = REPO / "examples" / "hello-python"
KEEP_WARM_S = "300"          # the Makefile's KEEP_WARM
RUNTIME_HOST = str(Path(sys.executable).parent / "runtime-host")


def _sam() -> str | None:
    beside = Path(sys.executable).parent / "sam"
    return os.environ.get("SAM_CLI") or (str(beside) if beside.exists() else shutil.which("sam"))


def _timed(argv: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    wall = time.perf_counter() - started
    if out.returncode != 0 or "hello from python" not in out.stdout:
        raise RuntimeError(f"{' '.join(argv[:4])} failed ({out.returncode}): {out.stdout[-1500:]} {out.stderr[-1500:]}")
    return wall, out.stdout + out.stderr


SAM_ATTEMPTS = 4      # "No response from invoke container": SAM's own flake here, run again and counted


def _timed_sam(argv: list[str], env: dict, cwd: Path, failures: list[str]) -> tuple[float, str]:
    for attempt in range(SAM_ATTEMPTS):
        try:
            return _timed(argv, env, cwd)
        except RuntimeError as exc:
            if "No response from invoke container" not in str(exc) or attempt == SAM_ATTEMPTS - 1:
                raise
            failures.append(str(exc)[-300:])
    raise AssertionError("unreachable")


def _init_duration(output: str) -> float | None:
    found = re.search(r"Init Duration: ([0-9.]+) ms", output)
    return float(found.group(1)) if found else None


def _summary(walls: list[float]) -> dict:
    return {"median_s": round(statistics.median(walls), 3), "min_s": round(min(walls), 3),
            "max_s": round(max(walls), 3), "n": len(walls), "walls_s": [round(w, 3) for w in walls]}


def run(n: int = 7, smoke: bool = False) -> dict:
    sam = _sam()
    if sam is None:
        return {"skipped": "no `sam` (pip install -e '.[bench]' installs aws-sam-cli)"}
    subprocess.run(["docker", "tag", images.ensure_image("python3.11", print), SAM_BASE_IMAGE], check=True)
    sam_env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_ENDPOINT_URL_STS": f"http://127.0.0.1:{free_port()}",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    work = Path(tempfile.mkdtemp(prefix="rh-bench-oneshot-"))
    event = work / "event.json"
    event.write_text('{"k": "v"}')
    sam_argv = [sam, "local", "invoke", "HelloPython", "--template", str(TEMPLATE), "--skip-pull-image",
                "--event", str(event)]
    state = work / "state"
    ours_warm = [RUNTIME_HOST, "run", str(FUNCTION), "--keep-warm", KEEP_WARM_S, "--state-dir", str(state),
                 "--event-file", str(event)]
    ours_once = [RUNTIME_HOST, "run", str(FUNCTION), "--keep-warm", "0", "--state-dir", str(work / "state-once"),
                 "--event-file", str(event)]
    try:
        sam_failures: list[str] = []
        _timed_sam(sam_argv, sam_env, work, sam_failures)   # builds SAM's image: not counted
        first, first_out = _timed(ours_warm)
        walls: dict[str, list[float]] = {"sam": [], "ours": [], "ours_one_off": []}
        inits: dict[str, list[float | None]] = {"sam": [], "ours": [], "ours_one_off": []}
        for _ in range(2 if smoke else n):
            for name, argv, env in (("ours", ours_warm, None), ("sam", sam_argv, sam_env),
                                    ("ours_one_off", ours_once, None)):
                wall, out = _timed_sam(argv, env, work, sam_failures) if name == "sam" else _timed(argv, env, work)
                walls[name].append(wall)
                inits[name].append(_init_duration(out))
    finally:
        warm_run.wait_for_exit(warm_run.stop_warm_hosts(state.resolve(), FUNCTION.resolve()))
        shutil.rmtree(work, ignore_errors=True)
    result = {name: {**_summary(w), "init_durations_ms": inits[name]} for name, w in walls.items()}
    result["sam_runs_without_response"] = len(sam_failures)   # not in the figures: run again
    result["ours_first_run"] = {"wall_s": round(first, 3), "init_duration_ms": _init_duration(first_out)}
    sam_median = result["sam"]["median_s"]
    result["ratio_ours_to_sam"] = round(result["ours"]["median_s"] / sam_median, 3)
    result["ratio_first_run_to_sam"] = round(first / sam_median, 3)
    result["ratio_one_off_to_sam"] = round(result["ours_one_off"]["median_s"] / sam_median, 3)
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return result
