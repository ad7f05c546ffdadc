"""The load run (issue 16): many invocations from concurrent callers across
three functions, sync and `Event` mixed, some failing on purpose, then the
checks that nothing was lost, duplicated or mixed up.

    python -m tests.load --calls 20000 --callers 16      (make load)
    python -m tests.load --calls 1000000 --callers 16    (make soak)

tests/e2e/test_load.py runs a small one (about 1,000) in the suite.

What a run checks, on a real host (`runtime-host serve` in a subprocess) on
the real engine:
- every call got exactly one answer: 200 for sync (the body carries the
  call's own nonce and the request id of its header, or, failing on purpose,
  `Unhandled` with the nonce in the message), 202 for `Event`; no 4xx/5xx;
  no request id given twice;
- every call ran exactly once: each event carries a nonce the function logs
  (LOADNONCE <nonce>); once the queue has drained, each nonce is in the
  function's log file exactly once (an `Event` lost or run twice shows here);
- the ledger (store/ledger.read_records) holds one record per call, under the
  request ids the callers were given, no more, no less;
- the host's RSS after the run is within 10 % of its RSS after the warm-up.

Owns: driving and checking a run. Must not: reach into the host's internals
(it reads only what a user can: answers, the log files, the ledger).
"""
from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from runtime_host.store.ledger import read_records

REPO = Path(__file__).resolve().parent.parent
RUNTIME_HOST = str(Path(sys.executable).parent / "runtime-host")

# Three functions: the Python one twice (two pools) and the Node one.
FUNCTIONS = {"load-py-a": "load-py", "load-py-b": "load-py", "load-node": "load-node"}
WARMUP_CALLS_PER_CALLER = 20
FAIL_EVERY = 10           # call i fails on purpose when i % FAIL_EVERY == 3
EVENT_EVERY = 4           # call i is an `Event` when i % EVENT_EVERY == 1
# Lambda's 10 s init limit is for one cold start on a quiet machine; 48
# sandboxes starting at once on 2 busy cores took longer (6 init timeouts
# in 800 calls at a load average of 22). A run checks loss, not init speed.
INIT_TIMEOUT_S = 60
DRAIN_TIMEOUT_S = 600     # for the Event queue to run dry after the last 202
RSS_GROWTH_LIMIT = 0.10
PLATFORM_ERRORS = ("Sandbox.Timedout", "ServiceException")   # the host gave up; counted, not "wrong"
NONCE = re.compile(rb"LOADNONCE (\S+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def functions_dir(root: Path) -> Path:
    for name, source in FUNCTIONS.items():
        shutil.copytree(REPO / "tests" / "functions" / source, root / name)
    return root


@dataclass(slots=True)       # a soak keeps a million of them
class Answer:
    nonce: str
    function: str
    kind: str                 # sync: 200 with its nonce; fail: 200 + Unhandled; event: 202; event-fail:
                              # 202, then the function raises (maximum_retry_attempts = 0: it runs once)
    status: int
    request_id: str
    problem: str = ""         # empty when the answer is what the call should get


@dataclass
class Report:
    calls: int = 0
    callers: int = 0
    seconds: float = 0.0
    per_second: float = 0.0
    answers: Counter = field(default_factory=Counter)     # kind -> count
    problems: list = field(default_factory=list)
    duplicate_request_ids: int = 0
    throttled: int = 0          # 429: must have neither a record nor a run
    throttled_but_ran: int = 0
    platform_errors: int = 0    # e.g. an init timed out: recorded, not run twice
    expected_records: int = 0   # the calls the host took (200 or 202)
    ledger_records: int = 0
    ledger_missing: int = 0     # request ids answered but not in the ledger
    ledger_extra: int = 0       # ledger records of this run's functions no caller was given
    runs_missing: int = 0       # nonces never logged
    runs_twice: int = 0         # nonces logged more than once
    rss_warm_kb: int = 0
    rss_after_kb: int = 0
    host_exit: int | None = None

    @property
    def rss_growth(self) -> float:
        return (self.rss_after_kb - self.rss_warm_kb) / self.rss_warm_kb if self.rss_warm_kb else 0.0

    def failures(self) -> list[str]:
        out = [f"{len(self.problems)} wrong answer(s), first: {self.problems[:3]}"] if self.problems else []
        for name in ("duplicate_request_ids", "throttled_but_ran", "ledger_missing", "ledger_extra", "runs_missing", "runs_twice"):
            if getattr(self, name):
                out.append(f"{name} = {getattr(self, name)}")
        if self.ledger_records != self.expected_records:
            out.append(f"ledger holds {self.ledger_records} records for {self.expected_records} calls taken")
        if self.rss_growth > RSS_GROWTH_LIMIT:
            out.append(f"host RSS grew {self.rss_growth:.1%} ({self.rss_warm_kb} -> {self.rss_after_kb} kB)")
        if self.host_exit not in (None, 0):
            out.append(f"host exited with {self.host_exit}")
        return out

    def summary(self) -> dict:
        return {"calls": self.calls, "callers": self.callers, "seconds": round(self.seconds, 1),
                "per_second": round(self.per_second, 1), "answers": dict(self.answers),
                "wrong_answers": len(self.problems), "throttled": self.throttled,
                "throttled_but_ran": self.throttled_but_ran, "platform_errors": self.platform_errors,
                "duplicate_request_ids": self.duplicate_request_ids, "calls_taken": self.expected_records,
                "ledger_records": self.ledger_records, "ledger_missing": self.ledger_missing,
                "ledger_extra": self.ledger_extra, "runs_missing": self.runs_missing,
                "runs_twice": self.runs_twice, "rss_warm_mb": round(self.rss_warm_kb / 1024, 1),
                "rss_after_mb": round(self.rss_after_kb / 1024, 1), "rss_growth": f"{self.rss_growth:.1%}",
                "host_exit": self.host_exit}


def _call(conn: http.client.HTTPConnection, function: str, nonce: str, kind: str) -> Answer:
    body = {"n": nonce}
    headers = {"Content-Type": "application/json"}
    if kind in ("fail", "event-fail"):
        body["fail"] = True
    if kind.startswith("event"):
        headers["X-Amz-Invocation-Type"] = "Event"
    conn.request("POST", f"/2015-03-31/functions/{function}/invocations", body=json.dumps(body), headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    rid = resp.getheader("x-amzn-RequestId") or ""
    answer = Answer(nonce, function, kind, resp.status, rid)
    if kind.startswith("event"):
        if resp.status != 202:
            answer.problem = f"Event answered {resp.status}: {data[:200]!r}"
        return answer
    if resp.status != 200:
        answer.problem = f"answered {resp.status}: {data[:200]!r}"
        return answer
    try:
        payload = json.loads(data)
    except ValueError:
        answer.problem = f"body not JSON: {data[:200]!r}"
        return answer
    error = resp.getheader("X-Amz-Function-Error")
    if kind == "fail":
        if error != "Unhandled" or nonce not in str(payload.get("errorMessage")):
            answer.problem = f"expected this call's own function error, got {error} {payload!r:.200}"
    elif error or payload != {"n": nonce, "rid": rid}:
        answer.problem = f"expected {{'n': {nonce!r}, 'rid': {rid!r}}}, got {error} {payload!r:.200}"
    return answer


def _kind(i: int) -> str:
    if i % EVENT_EVERY == 1:
        return "event"       # some of them fail on purpose too (below)
    return "fail" if i % FAIL_EVERY == 3 else "sync"


def _caller(port: int, index: int, count: int, answers: list, tag: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    names = list(FUNCTIONS)
    for i in range(count):
        function = names[(index + i) % len(names)]
        nonce = f"{tag}-{index}-{i}"
        kind = _kind(i)
        if kind == "event" and i % (2 * FAIL_EVERY) == 1:
            kind = "event-fail"
        try:
            answer = _call(conn, function, nonce, kind)
        except (OSError, http.client.HTTPException) as exc:
            answer = Answer(nonce, function, kind, 0, "", f"no answer: {exc!r}")
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        answers.append(answer)
    conn.close()


def _drive(port: int, callers: int, per_caller: int, tag: str) -> list[Answer]:
    lists: list[list[Answer]] = [[] for _ in range(callers)]
    threads = [threading.Thread(target=_caller, args=(port, i, per_caller, lists[i], tag)) for i in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [a for part in lists for a in part]


def _nonces_logged(state_dir: Path) -> Counter:
    seen: Counter = Counter()
    for name in FUNCTIONS:
        path = state_dir / "logs" / f"{name}.log"
        if path.exists():
            with open(path, "rb") as f:
                for line in f:
                    m = NONCE.search(line)
                    if m:
                        seen[m.group(1).decode()] += 1
    return seen


def _ledger(state_dir: Path) -> list:
    return [r for name in FUNCTIONS for r in read_records(state_dir, function=name)]


def run(calls: int, callers: int = 16, state_dir: Path | None = None, log=print) -> Report:
    """One run on a host of its own; returns the report (its failures() empty when every check held)."""
    work = Path(tempfile.mkdtemp(prefix="rh-load-"))
    state_dir = state_dir or work / "state"
    state_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    stderr = open(state_dir / "host.stderr", "wb")
    proc = subprocess.Popen([RUNTIME_HOST, "serve", "--functions", str(functions_dir(work / "functions")),
                             "--port", str(port), "--url-port", str(free_port()), "--state-dir", str(state_dir),
                             "--init-timeout-s", str(INIT_TIMEOUT_S)],
                            stdout=subprocess.DEVNULL, stderr=stderr, cwd=REPO)
    report = Report(calls=calls, callers=callers)
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"runtime-host serve did not start; see {state_dir / 'host.stderr'}")
                time.sleep(0.1)
        # Warm-up: every caller's sandboxes started, the loop's caches filled; its calls are checked too.
        warm = _drive(port, callers, WARMUP_CALLS_PER_CALLER, "warm")
        _wait_drained(state_dir, _accepted(warm), time.monotonic() + DRAIN_TIMEOUT_S)
        report.rss_warm_kb = rss_kb(proc.pid)
        log(f"warm: {len(warm)} calls, host RSS {report.rss_warm_kb / 1024:.1f} MB")
        per_caller = -(-calls // callers)
        report.calls = per_caller * callers
        started = time.monotonic()
        answers = _drive(port, callers, per_caller, "run")
        report.seconds = time.monotonic() - started
        report.per_second = report.calls / report.seconds
        log(f"run: {report.calls} calls in {report.seconds:.1f} s ({report.per_second:.0f}/s)")
        everything = warm + answers
        _wait_drained(state_dir, _accepted(everything), time.monotonic() + DRAIN_TIMEOUT_S)
        report.rss_after_kb = rss_kb(proc.pid)
        _check(report, everything, state_dir)
        report.calls = len(everything)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        report.host_exit = proc.returncode
        stderr.close()
    if not report.failures():
        shutil.rmtree(work, ignore_errors=True)
    else:
        log(f"kept {work} for a look")
    return report


def _accepted(answers: list[Answer]) -> int:
    """The calls that must leave a ledger record: those the host took (200, 202)."""
    return sum(1 for a in answers if a.status in (200, 202))


def _wait_drained(state_dir: Path, expected: int, deadline: float) -> None:
    """Until the ledger holds `expected` records (every Event has run), or the deadline."""
    while time.monotonic() < deadline:
        if len(_ledger(state_dir)) >= expected:
            return
        time.sleep(0.5)


def _check(report: Report, answers: list[Answer], state_dir: Path) -> None:
    """Three kinds of answer: as asked (the call's own result, or its own
    function error); throttled (429: no record, no run); a platform error
    (the host gave up on the sandbox, e.g. an init timed out on a machine
    too busy: recorded, run at most once). Anything else is a wrong answer."""
    report.answers = Counter(a.kind for a in answers)
    throttled = [a for a in answers if a.status == 429]
    platform = [a for a in answers if a.problem and a.status == 200 and _platform_error(a.problem)]
    wrong = [a for a in answers if a.problem and a.status != 429 and not (a.status == 200 and _platform_error(a.problem))]
    report.throttled, report.platform_errors = len(throttled), len(platform)
    report.problems = [f"{a.function} {a.nonce} {a.kind}: {a.problem}" for a in wrong]
    ids = Counter(a.request_id for a in answers if a.request_id)
    report.duplicate_request_ids = sum(n - 1 for n in ids.values() if n > 1)
    records = _ledger(state_dir)
    report.ledger_records = len(records)
    in_ledger = Counter(r.request_id for r in records)
    report.duplicate_request_ids += sum(n - 1 for n in in_ledger.values() if n > 1)
    taken = {a.request_id for a in answers if a.status in (200, 202)}
    report.ledger_missing = len(taken - set(in_ledger))
    report.ledger_extra = len(set(in_ledger) - taken)
    logged = _nonces_logged(state_dir)
    as_asked = [a for a in answers if not a.problem]
    report.runs_missing = sum(1 for a in as_asked if logged[a.nonce] == 0)
    report.runs_twice = sum(1 for a in answers if logged[a.nonce] > 1)
    report.throttled_but_ran = sum(1 for a in throttled if logged[a.nonce] or a.request_id in in_ledger)
    report.expected_records = len(taken)


def _platform_error(problem: str) -> bool:
    return any(f"'errorType': '{t}'" in problem for t in PLATFORM_ERRORS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--callers", type=int, default=16)
    parser.add_argument("--state-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    report = run(args.calls, args.callers, args.state_dir)
    print(json.dumps(report.summary(), indent=2))
    failures = report.failures()
    for f in failures:
        print("FAILED:", f, file=sys.stderr)
    print("every check held" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
