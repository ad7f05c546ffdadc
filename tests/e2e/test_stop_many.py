"""Ending many sandboxes (issue 17 part 3): a host spreads its sandboxes over
networks of 30 (engine.SHARD_PREFIX) and ends them one at a time per
network, side by side across networks. A sandbox on a second network reaches
the Runtime API at the first network's gateway (and so answers); a stop
removes every container and every network, several times in a row, and the
engine still answers afterwards (a libnetwork deadlock would leave it mute).
The stop time is printed, never asserted (shared machine): bench/stop.py
measures it at 500."""
from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import client_for, docker, invoke, start_host, stop_host

HELD = 40            # more than one network's 30 sandbox addresses
STOPS = 3


def networks_of(pid: int) -> list[str]:
    return docker("network", "ls", "--format", "{{.Name}}", "--filter", f"label=runtime-host.host-pid={pid}").split()


def containers_of(pid: int) -> list[str]:
    return docker("ps", "-aq", "--filter", f"label=runtime-host.host-pid={pid}").split()


def test_sandboxes_on_several_networks_answer_and_a_stop_removes_everything(docker_engine, tmp_path):
    functions = tmp_path / "functions"
    (functions / "held").mkdir(parents=True)
    (functions / "held" / "app.py").write_text(
        "import time\n\ndef handler(event, context):\n    time.sleep(event['sleep_s'])\n    return 'held'\n")
    (functions / "held" / "function.toml").write_text(
        f'runtime = "python3.11"\nhandler = "app.handler"\nmemory_mb = 512\ntimeout_s = 120\n'
        f'reserved_concurrency = {HELD}\n')
    for round_ in range(STOPS):
        host = start_host(functions, tmp_path / f"state-{round_}")
        try:
            client = client_for(host.endpoint)
            with ThreadPoolExecutor(HELD) as pool:
                answers = list(pool.map(lambda _: invoke(client, "held", {"sleep_s": 8}), range(HELD)))
            assert all(body == "held" and "FunctionError" not in resp for resp, body in answers), answers[:3]
            sandboxes = json.loads(subprocess.run(
                ["curl", "-s", f"{host.endpoint}/runtime-host/sandboxes"], capture_output=True, text=True).stdout)
            assert len([s for s in sandboxes["sandboxes"] if s["function"] == "held"]) == HELD
            assert len(networks_of(host.pid)) >= 2, "more sandboxes than one network holds"
        finally:
            started = time.monotonic()
            stop_host(host)
            print(f"stop {round_ + 1}: {time.monotonic() - started:.1f} s with {HELD} sandboxes")
        assert host.proc.returncode == 0
        assert containers_of(host.pid) == []
        assert networks_of(host.pid) == []
        assert subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0, \
            "the engine still answers"
