"""Scale: warm latency of one function while 0, 100, 300 and 500 other
sandboxes (of several functions) are held frozen, and what each idle frozen
sandbox costs: its container's memory and the host's RSS growth.

The target's ratio is A-B-A: the most held against the mean of the fewest
held measured before them and again after the held sandboxes are removed,
which cancels a steady drift of the machine and keeps every cost of the held
containers (the host's and the machine's) in the figure. At every level a
second host holding nothing (the control) also takes turns with the measured
one, in blocks as in warm.py: dividing by the control's own ratio removes
the drift and also any machine-wide cost of the held containers (the control
shares the machine), leaving the host's own."""
from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

from common import BENCH_FUNCTIONS, Caller, Host, invoke_path
from warm import measure_interleaved, paired_ratio, turns_of

FILLERS = 5                   # the held sandboxes are spread over this many functions
IDLE_SAMPLE_S = 2.0           # how long the machine's idle load is sampled at each level
DOCKER_PROCESSES = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2")
HOLD_EVENT = json.dumps({"hold": True}).encode()
SETTLE_MAX_S = 90.0           # after the held sandboxes are removed, before the last measurement
SETTLE_BUSY_PERCENT = 10.0


def _functions(max_held: int) -> Path:
    root = Path(tempfile.mkdtemp(prefix="rh-bench-scale-"))
    shutil.copytree(BENCH_FUNCTIONS / "bench-python", root / "bench-python")
    per = -(-max_held // FILLERS)
    for i in range(FILLERS):
        d = root / f"filler-{i}"
        d.mkdir()
        (d / "app.py").write_text("import time\n\ndef handler(event, context):\n"
                                  "    time.sleep(event.get('sleep_s', 0))\n    return 'held'\n")
        # 512 MB: enough CPU (0.29 vCPU) that dozens of cold starts at once finish their
        # init; a held sandbox's real footprint does not depend on its limit.
        (d / "function.toml").write_text(f'runtime = "python3.11"\nhandler = "app.handler"\nmemory_mb = 512\n'
                                         f"timeout_s = 300\nreserved_concurrency = {per}\nidle_ttl_s = 3600\n")
    return root


def _view(port: int) -> dict:
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/runtime-host/sandboxes"))


def _grow_to(port: int, target: int) -> None:
    """Starts sandboxes of the filler functions until `target` exist. A warm
    sandbox is reused, so each filler gets as many concurrent invocations as
    it should have sandboxes, each holding its sandbox long enough for the
    others to start."""
    per_function = -(-target // FILLERS)
    for _ in range(10):
        rows = [r for r in _view(port)["sandboxes"] if r["function"].startswith("filler-")]
        if len(rows) >= target:
            return
        for i in range(FILLERS):
            fn = f"filler-{i}"
            have = sum(1 for r in rows if r["function"] == fn)
            want = min(per_function, target - len(rows) + have) if have < per_function else have
            if want <= have:
                continue
            body = json.dumps({"sleep_s": 2 + want / 10}).encode()
            failures: list[str] = []

            def hold(fn: str = fn) -> None:
                try:
                    status, answer, _ = Caller(port, invoke_path(fn)).call(body)
                    if status != 200:
                        failures.append(f"{fn}: {status} {answer[:200]!r}")
                except OSError as exc:       # a timeout included: the host never answered
                    failures.append(f"{fn}: {type(exc).__name__}: {exc}")

            threads = [threading.Thread(target=hold) for _ in range(want)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if failures:
                raise RuntimeError(f"{len(failures)} of {want} calls holding sandboxes failed: {failures[:3]}")
            rows = [r for r in _view(port)["sandboxes"] if r["function"].startswith("filler-")]
    raise RuntimeError(f"could not get {target} sandboxes started")


def idle_load(host_pid: int, seconds: float) -> dict:
    """CPU (in cores) used while nothing is invoked: by Docker's processes
    (dockerd, containerd, one containerd-shim per container) and by the host.
    What held sandboxes cost the machine even frozen, and what slows every
    process on it, the control host included."""
    def cpu_of(procs: list[psutil.Process]) -> float:
        total = 0.0
        for proc in procs:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        return total

    docker = [p for p in psutil.process_iter(["name"]) if p.info["name"] in DOCKER_PROCESSES]
    host = [psutil.Process(host_pid)]
    before_docker, before_host = cpu_of(docker), cpu_of(host)
    time.sleep(seconds)
    return {"docker_processes": len(docker),
            "docker_cores": round((cpu_of(docker) - before_docker) / seconds, 3),
            "host_cores": round((cpu_of(host) - before_host) / seconds, 3)}


def settle(max_s: float) -> float:
    """Waits until the machine's CPUs are nearly idle (under SETTLE_BUSY of
    them busy over a second) or max_s have passed; returns how long it took."""
    started = time.monotonic()
    while time.monotonic() - started < max_s:
        t = psutil.cpu_times_percent(interval=1.0)
        if 100 - t.idle - getattr(t, "steal", 0.0) - getattr(t, "iowait", 0.0) < SETTLE_BUSY_PERCENT:
            break
    return round(time.monotonic() - started, 1)


def _measure_level(host: Host, control: Host, n: int, warmup: int, idle_s: float) -> dict:
    """Warm latency of bench-python on `host`, taking turns with the control,
    with whatever `host` holds at the moment, and what it holds."""
    idle = idle_load(host.proc.pid, idle_s)
    block, turns = turns_of(n)
    view = _view(host.port)
    held = [r for r in view["sandboxes"] if r["function"].startswith("filler-")]
    callers = {"held": Caller(host.port, invoke_path("bench-python")),
               "control": Caller(control.port, invoke_path("bench-python"))}
    try:
        both = measure_interleaved(callers, block * turns, warmup, 0.0, block)
    finally:
        for caller in callers.values():
            caller.close()
    stats = both["held"]
    stats.update(control=both["control"], to_control=paired_ratio(both["held"], both["control"]),
                 idle=idle, held=len(held),
                 frozen=sum(1 for r in held if r["state"] == "FROZEN"),
                 host_rss_mb=view["host"]["rss_mb"],
                 container_memory_mb_avg=(sum(r["memory_now_mb"] or 0 for r in held) / len(held)
                                          if held else 0.0))
    return stats


def run(n: int = 2000, warmup: int = 200, levels=(0, 100, 300, 500)) -> dict:
    """The levels in rising order, then the fewest again on a fresh host once
    the held sandboxes are gone (A-B-A): the machine drifts by tens of percent
    over the minutes the levels take, and the mean of the two fewest-held
    measurements, one before and one after, cancels a steady drift."""
    if n < 100:
        levels = (0, 4)
    idle_s = IDLE_SAMPLE_S if n >= 100 else 0.2
    root = _functions(max(levels))
    results = {}
    try:
        with Host(BENCH_FUNCTIONS) as control:
            with Host(root) as host:
                for level in levels:
                    _grow_to(host.port, level)
                    time.sleep(1.0)                   # every held sandbox frozen
                    results[f"held_{level}"] = _measure_level(host, control, n, warmup, idle_s)
                stop_started = time.monotonic()
            results["removal_s"] = round(time.monotonic() - stop_started, 1)
            # Removing 500 containers leaves the kernel and Docker busy for a
            # while (cgroups, mounts, memory): measuring then would flatter
            # the A-B-A ratio.
            results["settle_s"] = settle(SETTLE_MAX_S if n >= 100 else 2.0)
            with Host(root) as fresh:                 # the fewest again, after: the A of A-B-A
                results["fewest_again"] = _measure_level(fresh, control, n, warmup, idle_s)
        base, top, again = results[f"held_{levels[0]}"], results[f"held_{levels[-1]}"], results["fewest_again"]
        added = top["held"] - base["held"]
        results["host_rss_mb_per_sandbox"] = (top["host_rss_mb"] - base["host_rss_mb"]) / added if added else 0.0
        results["p50_ratio_most_to_fewest"] = top["p50"] / base["p50"]
        results["p50_ratio_most_to_fewest_before_and_after"] = top["p50"] / ((base["p50"] + again["p50"]) / 2)
        # The host's own: each turn against the control's turn in the same round.
        results["p50_ratio_most_to_fewest_control_corrected"] = (top["to_control"]["median"]
                                                                 / base["to_control"]["median"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results
