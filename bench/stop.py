"""Ending sandboxes: how long a host holding N sandboxes takes to stop
(SIGTERM, as Ctrl-C: from the signal to the process's exit, every container
and the host's network removed), and whether the Docker engine survives
stops in a row (issue 17 part 3: the libnetwork deadlock, moby/libnetwork
#2679, is why containers on the host's network end one at a time).

Measured: one stop at N sandboxes (500 in `make bench`), then ROUNDS stops
in a row of hosts holding PER_ROUND sandboxes each. After each stop: the
containers and networks still labelled with the host's pid (must be none),
and whether `docker info` answers within ENGINE_ANSWER_S (a deadlocked
engine never answers a call that touches a network).
Must not: leave a host or a container behind (a host that does not stop in
STOP_TIMEOUT_S is killed, and its containers are removed by the next host).
"""
from __future__ import annotations

import signal
import subprocess
import time

from common import Host
from scale import _functions, _grow_to

STOP_TIMEOUT_S = 600
ENGINE_ANSWER_S = 10


def _left(pid: int) -> tuple[int, int]:
    label = f"label=runtime-host.host-pid={pid}"
    containers = subprocess.run(["docker", "ps", "-aq", "--filter", label], capture_output=True, text=True).stdout
    networks = subprocess.run(["docker", "network", "ls", "-q", "--filter", label], capture_output=True, text=True).stdout
    return len(containers.split()), len(networks.split())


def _engine_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=ENGINE_ANSWER_S).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def stop_once(root, n: int) -> dict:
    host = Host(root)
    try:
        _grow_to(host.port, n)
    except BaseException:
        host.stop()
        raise
    started = time.perf_counter()
    host.proc.send_signal(signal.SIGTERM)
    try:
        host.proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        host.proc.kill()
        host.proc.wait()
    seconds = time.perf_counter() - started
    containers, networks = _left(host.proc.pid)
    return {"sandboxes": n, "stop_s": round(seconds, 2), "containers_left": containers, "networks_left": networks,
            "engine_answers": _engine_answers()}


def run(n: int = 500, rounds: int = 20, per_round: int = 10, smoke: bool = False) -> dict:
    if smoke:
        n, rounds, per_round = 10, 2, 5
    root = _functions(max(n, per_round))
    big = stop_once(root, n)
    row = [stop_once(root, per_round) for _ in range(rounds)]
    return {"big": big, "rounds": row, "rounds_max_stop_s": max(r["stop_s"] for r in row),
            "rounds_all_clean": all(r["containers_left"] == 0 and r["networks_left"] == 0 and r["engine_answers"]
                                    for r in row)}
