"""`runtime-host conformance` on the real engine: each deliberately broken
bootstrap (tests/conformance/broken/) is caught by the scenario meant for
it, with its hint, and by no other; our python, node and shell runtimes,
awslambdaric and a minimal correct bootstrap pass; --json, --junit, --only,
--skip, `make conformance` and the exit status do what they say.

Every target runs as a user runs it (the CLI, --json), several at once, in
one module fixture; the tests then read the reports.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, RUNTIME_HOST, VENV_BIN

FIXTURES = REPO / "tests" / "conformance"
PARALLEL_TARGETS = 4          # CLI runs at once: enough to fill 2 cores without starving the sandboxes
RUN_TIMEOUT_S = 300

# broken bootstrap -> (the scenario that must fail, words of what it saw, words of its hint)
BROKEN = {
    "never-calls-next": ("asks-for-work", "GET /2018-06-01/runtime/invocations/next (404)", "the path is GET"),
    "wrong-api-version": ("asks-for-work", "wrong API version 2019-01-01", "the Runtime API version is 2018-06-01"),
    "answers-wrong-id": ("answers-its-id", "which it was never given (400)", "Lambda-Runtime-Aws-Request-Id header"),
    "answers-twice": ("answers-its-id", "2 times: response 202, response 403", "exactly one result"),
    "exits-after-one-invocation": ("keeps-serving", "invocation 2 needed a new sandbox", "never exit between events"),
    "hangs-past-deadline": ("respects-deadline", "no answer within the 3 s timeout", "before the deadline"),
    "error-not-json": ("error-report", "body is not JSON: 'handler failed", 'post a JSON body {"errorMessage"'),
    "ignores-sigterm": ("shuts-down", "ignores SIGTERM (SIG_IGN)", "do not ignore SIGTERM"),
    "sigterm-trap-blocked": ("shuts-down", "handles SIGTERM but was still running 2 s after it",
                             "end the process from the SIGTERM handler"),
    "late-init-error": ("no-refused-calls", "POST /2018-06-01/runtime/init/error -> 403 InvalidStateTransition",
                        "never ignore a refusal"),
    "writes-var-task": ("lives-within-sandbox", "/var/task/runtime.pid: Read-only file system",
                        "write only under /tmp"),
}

# Timings depend on the machine's load, not on the runtime, and are warnings: an init
# over 1 s at 128 MB (a python3.11 cold start takes about that long at 128/1769 of a
# core), and a 5.9 MB event answered after more than the function's timeout at that
# CPU share (this test runs four conformance runs at once on two cores).
TIMING_WARNINGS = {"lives-within-sandbox": "init took",
                   "headers-and-payloads": "longer than the function's 3 s timeout"}

# Genuine findings about our own runtimes, reported rather than hidden: the scenario
# must fail exactly so (or pass, once the runtime is fixed). None left: hello-shell's
# 5.9 MB event timed out while the event sat in shell variables; it now goes through files.
KNOWN_FAILURES: dict[str, dict[str, str]] = {}


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict:
        return json.loads(self.stdout)

    def scenario(self, name: str) -> dict:
        return next(s for s in self.report["scenarios"] if s["name"] == name)


def conformance(*args: str) -> CliRun:
    done = subprocess.run([RUNTIME_HOST, "conformance", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    return CliRun(done.returncode, done.stdout, done.stderr)


def make_conformance(func: str, args: str) -> CliRun:
    venv = os.path.dirname(str(VENV_BIN))
    done = subprocess.run(["make", "--no-print-directory", "conformance", f"VENV={venv}", f"FUNC={func}",
                           f"CONFORMANCE_ARGS={args}"], cwd=REPO, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    return CliRun(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def events_mismatch(tmp_path_factory) -> Path:
    """with-events plus one event whose expected response is wrong."""
    folder = tmp_path_factory.mktemp("conformance") / "with-events-mismatch"
    shutil.copytree(FIXTURES / "with-events", folder)
    (folder / "events" / "mismatch.json").write_text('{"name": "you"}')
    (folder / "events" / "mismatch.expected.json").write_text('{"greeting": "hello me"}')
    return folder


@pytest.fixture(scope="module")
def one_loop_for_three(tmp_path_factory) -> Path:
    """hello-shell (one GET next loop) on a function that asks for three at once."""
    folder = tmp_path_factory.mktemp("conformance") / "one-loop-for-three"
    shutil.copytree(REPO / "examples" / "hello-shell", folder)
    toml = (folder / "function.toml").read_text().replace('name = "hello-shell"', 'name = "one-loop-for-three"')
    (folder / "function.toml").write_text(toml.replace("timeout_s = 3", "timeout_s = 30") + "max_concurrency = 3\n")
    return folder


@pytest.fixture(scope="module")
def runs(docker_engine, awslambdaric_function, events_mismatch, one_loop_for_three, tmp_path_factory
         ) -> dict[str, CliRun]:
    junit = tmp_path_factory.mktemp("junit") / "conformance.xml"
    jobs = {name: (conformance, str(FIXTURES / "broken" / name), "--json") for name in BROKEN}
    jobs.update({
        "hello-python": (conformance, "examples/hello-python", "--json"),
        "hello-node": (conformance, "examples/hello-node", "--json"),
        "hello-shell": (conformance, "examples/hello-shell", "--json"),
        "awslambdaric": (conformance, str(awslambdaric_function), "--json"),
        "minimal": (conformance, str(FIXTURES / "good" / "minimal"), "--json"),
        "aws-tutorial": (conformance, str(FIXTURES / "aws-tutorial"), "--json"),
        "with-events": (conformance, str(FIXTURES / "with-events"), "--json"),
        "mismatch": (conformance, str(events_mismatch), "--json", "--junit", str(junit),
                     "--skip", "survives-freeze,shuts-down", "--skip", "lives-within-sandbox"),
        "make-only": (make_conformance, "tests/conformance/broken/answers-twice", "--only answers-its-id"),
        "sigterm-aware": (conformance, str(FIXTURES / "good" / "sigterm-aware"), "--json", "--only", "shuts-down"),
        "one-loop-for-three": (conformance, str(one_loop_for_three), "--json", "--only",
                               "serves-concurrently,keeps-serving,no-refused-calls"),
    })
    # The slowest first, so the pool's last wave is short.
    order = sorted(jobs, key=lambda n: n not in ("never-calls-next", "hangs-past-deadline", "hello-shell"))
    with ThreadPoolExecutor(max_workers=PARALLEL_TARGETS) as pool:
        futures = {name: pool.submit(jobs[name][0], *jobs[name][1:]) for name in order}
        results = {name: f.result() for name, f in futures.items()}
    results["mismatch"].junit = junit
    return results


def others(run: CliRun, name: str) -> list[dict]:
    return [s for s in run.report["scenarios"] if s["name"] != name]


def unexpected(scenarios: list[dict]) -> list[dict]:
    """Scenarios that neither passed nor were skipped, timing warnings aside."""
    return [s for s in scenarios if s["verdict"] not in ("pass", "skip")
            and not (s["verdict"] == "warn" and TIMING_WARNINGS.get(s["name"], "\0") in s["seen"])]


@pytest.mark.parametrize("bootstrap", sorted(BROKEN))
def test_broken_bootstrap_is_caught_by_its_scenario_with_its_hint_and_by_no_other(runs, bootstrap):
    run = runs[bootstrap]
    scenario, seen, hint = BROKEN[bootstrap]
    assert run.returncode == 1, run.stderr
    caught = run.scenario(scenario)
    assert caught["verdict"] == "fail", caught
    assert seen in caught["seen"], caught
    assert hint in caught["hint"], caught
    assert unexpected(others(run, scenario)) == [], run.stdout


@pytest.mark.parametrize("target", ["hello-python", "hello-node", "hello-shell", "awslambdaric", "minimal"])
def test_our_runtimes_and_awslambdaric_pass_every_scenario(runs, target):
    run = runs[target]
    report = run.report
    known = KNOWN_FAILURES.get(target, {})
    for name, seen in known.items():
        s = run.scenario(name)
        assert s["verdict"] == "pass" or (s["verdict"] == "fail" and seen in s["seen"]), s
    rest = [s for s in report["scenarios"] if s["name"] not in known]
    assert unexpected(rest) == [], run.stdout
    skipped = {s["name"]: s["seen"] for s in rest if s["verdict"] == "skip"}
    # Skipped for what the function is, not for what its runtime does: no events/ folder;
    # max_concurrency 1; no layers for an image function; a handler that logs nothing but print().
    expected = {"user-events", "serves-concurrently"} | ({"beside-extensions"} if target == "awslambdaric" else set())
    assert set(skipped) - {"logs-as-configured"} == expected, skipped
    assert skipped.get("logs-as-configured", "no log record").startswith("no log record"), skipped
    assert run.returncode == (1 if any(run.scenario(n)["verdict"] == "fail" for n in known) else 0), run.stderr


def test_aws_tutorial_bootstrap_runs_as_on_lambda_and_fails_only_where_lambda_would(runs):
    """AWS's tutorial runtime, unchanged: `#!/bin/sh` with `set -euo pipefail` and `source` runs
    because /bin/sh is bash, as on provided.al2023 (with dash it died at line 3, exit status 2)."""
    run = runs["aws-tutorial"]
    verdicts = {s["name"]: s["verdict"] for s in run.report["scenarios"]}
    for name in ("asks-for-work", "answers-its-id", "keeps-serving", "respects-deadline", "survives-freeze",
                 "shuts-down", "no-refused-calls"):
        assert verdicts[name] == "pass", run.scenario(name)
    # Where it breaks on Lambda too: it hands the event to curl as one argument, and Linux takes at
    # most 128 KiB per argument (MAX_ARG_STRLEN), so a 5.9 MB event ends it with exit status 126;
    # and it reports no errors (a missing handler just ends it).
    payloads = run.scenario("headers-and-payloads")
    assert payloads["verdict"] == "fail" and "exit status 126" in payloads["seen"], payloads
    assert "not through a command-line argument" in payloads["hint"]
    assert verdicts["init-failure"] == "warn" and verdicts["error-report"] == "warn"
    assert run.returncode == 1


def test_a_runtime_that_ends_itself_on_sigterm_is_seen_exiting(runs):
    run = runs["sigterm-aware"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert [s["name"] for s in run.report["scenarios"]] == ["shuts-down"]
    shut = run.scenario("shuts-down")
    assert shut["verdict"] == "pass" and shut["seen"].startswith("exited with status 0 "), shut


def test_a_runtime_with_one_loop_fails_serves_concurrently_with_the_reason(runs):
    run = runs["one-loop-for-three"]
    assert run.returncode == 1, run.stdout + run.stderr
    served = run.scenario("serves-concurrently")
    assert served["verdict"] == "fail", served
    assert "at most 1 GET next call(s) open at once where max_concurrency is 3" in served["seen"], served
    assert "AWS_LAMBDA_MAX_CONCURRENCY" in served["hint"]
    assert [s["verdict"] for s in others(run, "serves-concurrently")] == ["pass", "pass"], run.stdout


def test_user_events_are_invoked_and_checked(runs):
    run = runs["with-events"]
    assert run.returncode == 0, run.stdout + run.stderr
    events = run.scenario("user-events")
    assert events["verdict"] == "pass", events
    assert "events/greet: response as expected" in events["seen"]
    assert "events/fail: error ValueError as expected" in events["seen"]
    assert "error for events/fail: JSON errorType ValueError" in run.scenario("error-report")["seen"]


def test_json_junit_skip_and_exit_status_when_a_scenario_fails(runs):
    run = runs["mismatch"]
    assert run.returncode == 1, run.stderr
    report = run.report
    assert report["passed"] is False and report["function"] == "with-events-mismatch"
    names = [s["name"] for s in report["scenarios"]]
    assert "shuts-down" not in names and "survives-freeze" not in names and "lives-within-sandbox" not in names
    assert len(names) == 12           # 15 scenarios, 3 skipped by --skip
    failed = [s for s in report["scenarios"] if s["verdict"] == "fail"]
    assert [s["name"] for s in failed] == ["user-events"]
    assert "events/mismatch: response" in failed[0]["seen"] and "mismatch.expected.json" in failed[0]["seen"]
    assert report["counts"]["fail"] == 1 and sum(report["counts"].values()) == 12
    for s in report["scenarios"]:
        assert set(s) == {"name", "verdict", "expected", "seen", "hint", "duration_s"}

    suite = ET.parse(run.junit).getroot().find("testsuite")
    assert suite.get("tests") == "12" and suite.get("failures") == "1"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == set(names)
    failure = cases["user-events"].find("failure")
    assert failure is not None and "events/mismatch" in failure.get("message")
    assert "hint: make the response equal" in failure.text
    assert cases["asks-for-work"].find("failure") is None


def test_make_conformance_prints_the_table_of_the_chosen_scenario_and_fails(runs):
    run = runs["make-only"]
    assert run.returncode != 0
    lines = run.stdout.splitlines()
    assert lines[0].startswith("conformance of tests/conformance/broken/answers-twice (bare bootstrap")
    header = next(l for l in lines if l.startswith("SCENARIO"))
    assert header.split() == ["SCENARIO", "VERDICT", "EXPECTED", "SEEN", "HINT"]
    row = next(l for l in lines if l.startswith("answers-its-id"))
    assert row.split()[1] == "FAIL"
    assert "exactly one result" in run.stdout
    assert lines[-1].startswith("1 scenario(s) in ") and lines[-1].endswith("0 pass, 1 fail, 0 warn, 0 skip")


def test_unknown_scenario_or_path_is_a_usage_error():
    bad = conformance("examples/hello-python", "--only", "no-such-scenario")
    assert bad.returncode == 2
    assert "no scenario named 'no-such-scenario'" in bad.stderr and "asks-for-work" in bad.stderr
    missing = conformance("no/such/path")
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
