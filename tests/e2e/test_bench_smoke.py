"""`make bench` in miniature: it runs end to end and produces every figure.
No figure is judged here (the machine is shared and noisy); `make bench`
reports them as ratios to references measured in the same run."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

WARM_ROWS = ("floor_loopback_aiohttp", "freeze_on_back_to_back", "freeze_off_back_to_back",
             "freeze_on_idle_gap", "freeze_off_idle_gap")


def test_bench_smoke_produces_every_figure(docker_engine, tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--smoke", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert {"cores", "kernel", "docker", "cgroup", "date"} <= set(figures["machine"])
    warm = figures["warm"]
    for row in WARM_ROWS:
        assert warm[row]["n"] == 30
        assert 0 < warm[row]["p50"] <= warm[row]["p90"] <= warm[row]["p99"]
    assert warm["freeze_on_idle_gap"]["freezes_per_invocation"] > 0.5, "idle sandboxes were frozen"
    assert warm["freeze_off_idle_gap"]["freezes_per_invocation"] == 0
    assert "freeze+thaw cost at p50" in result.stdout
    for key in ("normal_x1", "normal_x32", "full_x1", "full_x32"):
        assert figures["ledger"][key]["p50"] > 0 and figures["ledger"][key]["records_per_s"] > 0
