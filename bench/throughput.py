"""Throughput: N concurrent callers, each invoking sequentially on its own
keep-alive connection for a fixed time; invocations per second, latency,
and any failed invocation (there must be none up to reserved_concurrency).
The 16-caller target is judged on a paired run: ours and a fleet of RIE
containers in alternating rounds (see `paired`)."""
from __future__ import annotations

import threading
import time
import tomllib

import rie
from common import BENCH_FUNCTIONS, EVENT_100_BYTES, Caller, Host, invoke_path, percentiles

FUNCTION = "bench-python"
WARMUP_S = 2.0       # untimed calls at each concurrency before the timed ones, for ours and RIE alike


def drive(port: int, path: str, callers: int, seconds: float) -> dict:
    """callers threads hammering one endpoint for `seconds`."""
    samples: list[list[float]] = [[] for _ in range(callers)]
    failures: list[int] = [0] * callers
    start = threading.Barrier(callers + 1)

    def caller(i: int) -> None:
        c = Caller(port, path)
        c.call(EVENT_100_BYTES)                    # its sandbox warm before the clock starts
        start.wait()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                status, _, ms = c.call(EVENT_100_BYTES)
            except OSError:                        # dropped, reset or never answered: a failure too
                failures[i] += 1
                c.close()
                c = Caller(port, path)
                continue
            if status == 200:
                samples[i].append(ms)
            else:
                failures[i] += 1
        c.close()

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    start.wait()
    began = time.monotonic()
    for t in threads:
        t.join()
    wall = time.monotonic() - began
    merged = [ms for s in samples for ms in s]
    stats = percentiles(merged) if merged else {"p50": 0, "p90": 0, "p99": 0, "mean": 0, "n": 0}
    stats.update(invocations_per_s=len(merged) / wall, failed=sum(failures), callers=callers)
    return stats


def paired(host: Host, callers: int, rounds: int, seconds: float) -> dict:
    """Ours and a fleet of `callers` RIE containers (one caller each), in
    alternating rounds of `seconds`, so that a noisy neighbour on a shared
    machine weighs on both sides alike; the ratio is of the totals."""
    image = rie.prepare(progress=lambda _: None)
    fleet = rie.start_fleet(image, callers)
    try:
        drive(host.port, invoke_path(FUNCTION), callers, min(1.0, seconds))     # every sandbox warm
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(drive(host.port, invoke_path(FUNCTION), callers, seconds)["invocations_per_s"])
            theirs.append(rie.drive_fleet(fleet, seconds)["invocations_per_s"])
    finally:
        for container in fleet:
            container.stop()
    return {"callers": callers, "rounds": rounds, "seconds_per_round": seconds,
            "ours_per_s": [round(x, 1) for x in ours], "rie_per_s": [round(x, 1) for x in theirs],
            "ratio": sum(ours) / sum(theirs)}


def reserved_concurrency() -> int:
    config = tomllib.loads((BENCH_FUNCTIONS / FUNCTION / "function.toml").read_text())
    return config["reserved_concurrency"]


def run(n: int = 2000, warmup: int = 0, seconds: float = 10.0, callers=(1, 4, 16)) -> dict:
    """1, 4 and 16 callers, then as many as the function's reserved
    concurrency: no invocation may fail at any of them."""
    smoke = n < 100
    if smoke:
        seconds, callers = 1.0, (1, 4)
    else:
        callers = (*callers, reserved_concurrency())
    results = {}
    with Host(BENCH_FUNCTIONS) as host:
        for c in callers:
            # Untimed first (as RIE's fleet in rie.throughput): new sandboxes'
            # first calls and the stem cell refilled behind them settle.
            drive(host.port, invoke_path(FUNCTION), c, WARMUP_S if not smoke else 0.2)
            results[f"ours_{c}"] = drive(host.port, invoke_path(FUNCTION), c, seconds)
        pair = (2, 2, 0.5) if smoke else (16, 4, 5.0)
        results["paired_with_rie"] = paired(host, *pair)
    return results
