"""Extensions: the warm latency of a function with one external extension
beside the same function without it (bench/functions-extensions/, each with
the python example's handler and bench-python's configuration):

* bench-python: no extension;
* bench-python-ext-keepalive: bench/layers/noop-keepalive, which registers
  for INVOKE and goes straight back to event/next on one kept-alive
  connection: the least work of its own an extension can have, so what it
  adds is the host's part (the figure the target is judged on);
* bench-python-ext-noop: bench/layers/noop-extension, which registers for
  INVOKE and goes straight back to event/next (no telemetry, no output):
  what the Extensions API's round trip costs;
* bench-python-ext-quiet: bench/layers/quiet-telemetry, py-telemetry
  printing nothing: the same, plus the Telemetry API (platform and function
  records, timeoutMs 25) delivered to its listener, counted there;
* bench-python-ext: tests/fixtures/layers/py-telemetry as it is, which
  also prints a line per record and one per event (the function's log).

None of the extensions has work of its own: between being handed INVOKE
and calling event/next again each does nothing but its HTTP calls (Python's
urllib, a connection per call), so what is measured beside the plain
function is the whole cost of having it there: its event/next round trip,
the telemetry records built, batched and POSTed to its listener, its lines
carried to the function's log, and the CPU all of that takes on a machine
the host, Docker and the sandboxes share.

One host serves the four (freezing on, see FREEZE_GRACE_MS). After a few
untimed calls each (the cold start, the extensions' registration), two
patterns, each on one keep-alive connection per function:

* call by call (the figure the target is judged on): a call to each
  function in every round, in an order shuffled round by round, so that a
  noisy neighbour hits all alike and none always follows another. What an
  invocation leaves to do after its answer (the extension's next call, the
  REPORT line, a telemetry batch) then lands in another function's call as
  often as in its own;
* in turns of BLOCK calls per function (an untimed call first, a pause
  between turns): what one client calling one function back to back sees,
  the after-work landing in its own next call; with the CPU each turn took
  per invocation (the host process, the sandbox's cgroup: runtime and
  extension, the bench's caller, and the rest of the machine: dockerd and
  containerd-shim carrying the extension's output, the kernel, other users).

Telemetry delivered, per pattern: the batches and records quiet-telemetry
counted (read from its listener between the patterns), and which of the
timed invocations' platform.report records reached py-telemetry (its lines
in the function's log). From the host's logs also: REPORT's Duration of
the call-by-call invocations (with an extension an invocation runs on until
the extension is back in event/next, spec §3.3) and the bytes written per
invocation.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import tomllib
import urllib.request
from collections import Counter
from pathlib import Path

from common import EVENT_100_BYTES, REPO, Caller, Host, invoke_path, percentiles

CONFIG = REPO / "bench" / "functions-extensions"
APP = REPO / "examples" / "hello-python" / "app.py"
# label -> function; the first is the reference the others are compared with.
FUNCTIONS = {"plain": "bench-python", "keepalive": "bench-python-ext-keepalive", "noop": "bench-python-ext-noop",
             "quiet": "bench-python-ext-quiet", "telemetry": "bench-python-ext"}
REFERENCE = "plain"
WARMUP = 50
BLOCK, ROUNDS = 400, 5          # the turns: 2,000 calls per function
TURN_PAUSE_S = 0.1              # around each turn: its last REPORT lines and telemetry batches land in it
SETTLE_S = 2.0                  # before reading the logs and counts: what is still queued is delivered
TARGET_MS = 0.3
# Freezing stays on, with a grace longer than the other functions' calls between two of one
# function's (call by call): a client calling one function back to back finds it thawed, and so
# should each function here. At the default 5 ms a slow moment froze them between their calls, all
# but those subscribed to telemetry, whose freeze waits for their batch to go out: spared the thaws
# the others paid, they came out faster than they are.
FREEZE_GRACE_MS = 50
QUIET_PORT = 4243               # quiet-telemetry's listener, in its sandbox
REPORT_RE = re.compile(rb"^REPORT RequestId: (\S+)\tDuration: ([0-9.]+) ms", re.MULTILINE)
# py-telemetry's lines, anywhere in a line: the log interleaves the runtime's and the extension's
# output as it arrives, and the handler's print sends its newline apart from its text.
TELEMETRY_RE = re.compile(rb"telemetry (platform\.[A-Za-z]+|function)(?: ([0-9a-f-]{36}))?")
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def _functions() -> Path:
    """bench/functions-extensions/* in a folder of their own, each with the
    python example's handler; layer paths (relative to the function's folder
    in the repository) made absolute."""
    root = Path(tempfile.mkdtemp(prefix="rh-bench-extensions-"))
    for source in sorted(p for p in CONFIG.iterdir() if (p / "function.toml").is_file()):
        folder = root / source.name
        shutil.copytree(source, folder)
        shutil.copy2(APP, folder / "app.py")
        toml = folder / "function.toml"
        layers = tomllib.loads(toml.read_text()).get("layers")
        if layers:
            absolute = json.dumps([str((source / layer).resolve()) for layer in layers])
            toml.write_text("".join(f"layers = {absolute}\n" if line.startswith("layers") else line
                                    for line in toml.read_text().splitlines(keepends=True)))
    return root


# --- the host's figures -----------------------------------------------------------------


def _sandboxes(port: int) -> list[dict]:
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/runtime-host/sandboxes"))["sandboxes"]


def _per_function(port: int) -> dict[str, Counter]:
    """Per function, over its sandboxes: the CPU-seconds of their cgroups
    (runtime and extension), how often they were frozen, invocations served."""
    out: dict[str, Counter] = {}
    for row in _sandboxes(port):
        out.setdefault(row["function"], Counter()).update(
            {"cpu_s": row["cpu_s"] or 0.0, "freezes": row["freezes"], "invocations": row["invocations"]})
    return out


def _process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S          # utime + stime


def _machine_cpu_s() -> float:
    """Busy CPU-seconds of the whole machine, every core: all but idle and iowait."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(values) - values[3] - values[4]) * TICK_S


class Meter:
    """CPU-seconds between two readings: the host process, each function's
    sandboxes, the bench's own process, and the whole machine; and the
    sandboxes' freezes."""

    def __init__(self, host: Host):
        self.host = host

    def read(self) -> dict:
        return {"host": _process_cpu_s(self.host.proc.pid), "functions": _per_function(self.host.port),
                "client": time.process_time(), "machine": _machine_cpu_s()}

    @staticmethod
    def cpu(before: dict, after: dict, function: str) -> dict[str, float]:
        out = {k: after[k] - before[k] for k in ("host", "client", "machine")}
        out["sandbox"] = after["functions"][function]["cpu_s"] - before["functions"][function]["cpu_s"]
        out["rest"] = out["machine"] - out["host"] - out["client"] - out["sandbox"]
        return out

    @staticmethod
    def freezes(before: dict, after: dict, function: str) -> int:
        return after["functions"][function]["freezes"] - before["functions"][function]["freezes"]


def _quiet_counts(port: int, caller: Caller) -> dict | None:
    """What quiet-telemetry has received so far, from its listener; after an
    untimed call, so that its sandbox is thawed. None if it cannot be read."""
    _call(caller)
    try:
        address = next(r["address"] for r in _sandboxes(port) if r["function"] == FUNCTIONS["quiet"])
        with urllib.request.urlopen(f"http://{address}:{QUIET_PORT}/", timeout=2) as answer:
            return json.load(answer)
    except (OSError, ValueError, StopIteration):
        return None


def _delivered(before: dict | None, after: dict | None, invocations: int) -> dict | None:
    """quiet-telemetry's batches and records between two readings, per invocation."""
    if before is None or after is None:
        return None
    types = {t: round((after["types"].get(t, 0) - before["types"].get(t, 0)) / invocations, 3)
             for t in after["types"] if not t.startswith("platform.init") and t not in
             ("platform.extension", "platform.telemetrySubscription")}
    return {"invocations": invocations,
            "batches_per_invocation": (after["batches"] - before["batches"]) / invocations,
            "records_per_invocation": (after["records"] - before["records"]) / invocations,
            "records_per_invocation_by_type": types}


# --- calls -------------------------------------------------------------------------------


def _call(caller: Caller) -> tuple[float, str]:
    status, body, ms = caller.call(EVENT_100_BYTES)
    assert status == 200, (status, body[:300])
    return ms, json.loads(body)["request_id"]


def call_by_call(callers: dict[str, Caller], n: int, seed: int = 1) -> dict[str, dict]:
    """n rounds, one call to each function per round, the order shuffled
    round by round. Per function: latencies and request ids."""
    rng = random.Random(seed)
    order = list(callers)
    out = {label: {"ms": [], "ids": []} for label in callers}
    for _ in range(n):
        rng.shuffle(order)
        for label in order:
            ms, request_id = _call(callers[label])
            out[label]["ms"].append(ms)
            out[label]["ids"].append(request_id)
    return out


def in_turns(callers: dict[str, Caller], block: int, rounds: int, meter: Meter) -> dict[str, dict]:
    """`rounds` rounds; in each, a turn of `block` calls per function (after
    one untimed call: the sandbox may have been frozen in the pause), the
    order rotating round by round. Per function: latencies, request ids,
    each turn's p50, the CPU its turns took and how often its sandbox was
    frozen in them (once per turn: in the pause after it)."""
    labels = list(callers)
    out = {label: {"ms": [], "ids": [], "turn_p50s": [], "cpu": Counter(), "calls": 0, "freezes": 0}
           for label in labels}
    for r in range(rounds):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            time.sleep(TURN_PAUSE_S)
            before = meter.read()
            _call(callers[label])
            turn = [_call(callers[label]) for _ in range(block)]
            time.sleep(TURN_PAUSE_S)
            after = meter.read()
            out[label]["cpu"].update(Meter.cpu(before, after, FUNCTIONS[label]))
            out[label]["freezes"] += Meter.freezes(before, after, FUNCTIONS[label])
            out[label]["calls"] += block + 1
            out[label]["ms"].extend(ms for ms, _ in turn)
            out[label]["ids"].extend(request_id for _, request_id in turn)
            out[label]["turn_p50s"].append(percentiles([ms for ms, _ in turn])["p50"])
    return out


# --- the host's logs ---------------------------------------------------------------------


def _log_figures(log: bytes, ids: list[str], invocations: int) -> dict:
    """REPORT's Duration of the invocations `ids` and the log's bytes per
    invocation."""
    durations = {m.group(1).decode(): float(m.group(2)) for m in REPORT_RE.finditer(log)}
    timed = [durations[i] for i in ids if i in durations]
    return {"report_duration": percentiles(timed) if timed else None, "reports_found": len(timed),
            "log_bytes_per_invocation": len(log) / invocations}


def _reports_received(log: bytes, ids: list[str]) -> int:
    """How many of the invocations `ids` py-telemetry printed a platform.report record of."""
    got = {(m.group(2) or b"").decode() for m in TELEMETRY_RE.finditer(log) if m.group(1) == b"platform.report"}
    return sum(1 for i in ids if i in got)


# --- containers ----------------------------------------------------------------------------


def _leftovers(pid: int) -> dict[str, list[str]]:
    """Containers and networks the host (by its pid label) left behind."""
    label = f"label=runtime-host.host-pid={pid}"
    containers = subprocess.run(["docker", "ps", "-aq", "--filter", label], capture_output=True, text=True,
                                check=False).stdout.split()
    networks = subprocess.run(["docker", "network", "ls", "-q", "--filter", label], capture_output=True,
                              text=True, check=False).stdout.split()
    return {"containers": containers, "networks": networks}


def _remove(left: dict[str, list[str]]) -> None:
    if left["containers"]:
        subprocess.run(["docker", "rm", "-f", *left["containers"]], capture_output=True, check=False)
    if left["networks"]:
        subprocess.run(["docker", "network", "rm", *left["networks"]], capture_output=True, check=False)


# --- the figures ---------------------------------------------------------------------------


def _compare(stats: dict[str, dict]) -> dict[str, dict]:
    ref = stats[REFERENCE]["p50"]
    return {label: {"p50_diff_ms": s["p50"] - ref, "p50_ratio": s["p50"] / ref}
            for label, s in stats.items() if label != REFERENCE}


def _paired(turns: dict[str, dict]) -> dict[str, dict]:
    """Turn by turn, each function's p50 minus the reference's in the same round."""
    out = {}
    for label, t in turns.items():
        if label == REFERENCE:
            continue
        diffs = sorted(a - b for a, b in zip(t["turn_p50s"], turns[REFERENCE]["turn_p50s"]))
        out[label] = {"median_ms": statistics.median(diffs), "min_ms": diffs[0], "max_ms": diffs[-1],
                      "turns": len(diffs)}
    return out


def run(n: int = 2000, warmup: int = WARMUP, smoke: bool = False) -> dict:
    block, rounds = (max(n // 2, 10), 2) if smoke else (BLOCK, ROUNDS)
    functions = _functions()
    results: dict = {"functions": FUNCTIONS, "n": n, "warmup": warmup, "block": block, "rounds": rounds,
                     "target_ms": TARGET_MS, "freeze_grace_ms": FREEZE_GRACE_MS}
    try:
        with Host(functions, "--freeze-grace-ms", str(FREEZE_GRACE_MS)) as host:
            callers = {label: Caller(host.port, invoke_path(fn)) for label, fn in FUNCTIONS.items()}
            try:
                for caller in callers.values():
                    for _ in range(warmup):
                        _call(caller)
                meter = Meter(host)
                counts = [_quiet_counts(host.port, callers["quiet"])]
                before = meter.read()
                cbc = call_by_call(callers, n)
                after = meter.read()
                cbc_freezes = {label: Meter.freezes(before, after, fn) for label, fn in FUNCTIONS.items()}
                counts.append(_quiet_counts(host.port, callers["quiet"]))
                turns = in_turns(callers, block, rounds, meter)
                time.sleep(SETTLE_S)
                counts.append(_quiet_counts(host.port, callers["quiet"]))
                time.sleep(SETTLE_S)
            finally:
                for caller in callers.values():
                    caller.close()
            served = {label: _per_function(host.port)[fn]["invocations"] for label, fn in FUNCTIONS.items()}
            sandboxes = {label: sum(1 for r in _sandboxes(host.port) if r["function"] == fn)
                         for label, fn in FUNCTIONS.items()}
            logs = {label: (host.state_dir / "logs" / f"{fn}.log").read_bytes() for label, fn in FUNCTIONS.items()}
        left = _leftovers(host.proc.pid)
        _remove(left)
        results["leftovers_removed"] = left
        shutil.rmtree(host.state_dir, ignore_errors=True)
    finally:
        shutil.rmtree(functions, ignore_errors=True)

    # Frozen between two of its calls, a call pays a thaw (see FREEZE_GRACE_MS): near 0 unless the machine stalled.
    results["call_by_call"] = {label: {**percentiles(v["ms"]), "freezes_per_invocation": cbc_freezes[label] / n}
                               for label, v in cbc.items()}
    results["call_by_call_vs_plain"] = _compare(results["call_by_call"])
    results["turns"] = {label: {**percentiles(t["ms"]), "turn_p50s": [round(x, 4) for x in t["turn_p50s"]],
                                "cpu_ms_per_invocation": {k: round(v * 1000 / t["calls"], 4)
                                                          for k, v in t["cpu"].items()},
                                "freezes_per_invocation": t["freezes"] / t["calls"]}
                        for label, t in turns.items()}
    results["turns_vs_plain"] = _compare(results["turns"])
    results["turns_paired"] = _paired(turns)
    results["logs"] = {label: _log_figures(logs[label], cbc[label]["ids"], served[label]) for label in FUNCTIONS}
    results["invocations_served"] = served
    results["sandboxes_per_function"] = sandboxes
    # Telemetry delivered: quiet-telemetry's counts (each reading adds one untimed call, counted in the
    # pattern after it), py-telemetry's platform.report lines of the timed invocations.
    results["telemetry_delivered"] = {
        "quiet_call_by_call": _delivered(counts[0], counts[1], n + 1),
        "quiet_turns": _delivered(counts[1], counts[2], rounds * (block + 1) + 1),
        "telemetry_reports_call_by_call": {"received": _reports_received(logs["telemetry"], cbc["telemetry"]["ids"]),
                                           "invocations": n},
        "telemetry_reports_turns": {"received": _reports_received(logs["telemetry"], turns["telemetry"]["ids"]),
                                    "invocations": rounds * block}}
    return results


if __name__ == "__main__":
    import sys

    smoke = "--smoke" in sys.argv
    print(json.dumps(run(30, 10, smoke=True) if smoke else run(), indent=2, default=str))
