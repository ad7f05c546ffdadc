"""The parts of `runtime-host conformance` that need no engine: judging an
error document, naming a stray call, choosing scenarios, reading a target
and its events, and the three report formats. (The scenarios themselves
run on the real engine: tests/e2e/test_conformance.py.)"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest

from runtime_host.core.config import ConfigError
from runtime_host.conformance import report as reports
from runtime_host.conformance.observer import describe_stray
from runtime_host.conformance.runner import Report, ScenarioResult, select
from runtime_host.conformance.scenarios import SCENARIOS, judge_error_report
from runtime_host.conformance.target import load_target
from runtime_host.api.runtime_api import RuntimeApi


def error_post(body: bytes, path="/2018-06-01/runtime/invocation/abc/error", **headers) -> dict:
    return {"path": path, "body": body, "body_size": len(body), "headers": headers}


def test_a_json_error_document_with_both_fields_passes():
    fails, warns, seen = judge_error_report(error_post(
        b'{"errorMessage": "boom", "errorType": "ValueError"}', **{"Content-Type": "application/json"}))
    assert (fails, warns) == ([], [])
    assert "errorType ValueError" in seen and "optional" in seen


def test_a_text_error_body_fails_and_its_content_type_warns():
    fails, warns, _ = judge_error_report(error_post(b"handler failed", **{"Content-Type": "text/plain"}))
    assert fails == ["body is not JSON: 'handler failed'"]
    assert warns == ["Content-Type is text/plain, not application/json"]


@pytest.mark.parametrize("body,missing", [(b'{"errorType": "X"}', "errorMessage"), (b'{"errorMessage": "m"}', "errorType"),
                                          (b'["errorMessage", "errorType"]', "errorMessage and errorType")])
def test_json_without_error_message_or_type_fails(body, missing):
    fails, _, _ = judge_error_report(error_post(body, **{"Content-Type": "application/json"}))
    assert len(fails) == 1 and fails[0].startswith(f"JSON without {missing}:")


def test_init_error_without_the_error_type_header_warns_and_needs_no_content_type():
    post = error_post(b'{"errorMessage": "m", "errorType": "Runtime.ImportModuleError"}',
                      path="/2018-06-01/runtime/init/error")
    fails, warns, _ = judge_error_report(post)
    assert fails == [] and warns == ["no Lambda-Runtime-Function-Error-Type header (Lambda then records Runtime.Unknown)"]


def test_an_error_type_header_lambda_would_not_keep_warns():
    post = error_post(b'{"errorMessage": "m", "errorType": "E"}', **{"content-type": "application/json",
                                                                      "lambda-runtime-function-error-type": "Unhandled"})
    _, warns, _ = judge_error_report(post)
    assert warns == ["Lambda-Runtime-Function-Error-Type: 'Unhandled' is recorded as Runtime.Unknown by Lambda"]


@pytest.mark.parametrize("method,path,status,words", [
    ("GET", "/2019-01-01/runtime/invocation/next", 404, "wrong API version 2019-01-01, the Runtime API is 2018-06-01"),
    ("GET", "/2018-06-01/runtime/next", 404, "no such path"),
    ("POST", "/2018-06-01/runtime/invocation/next", 405, "wrong method"),
])
def test_a_stray_call_says_what_is_wrong_with_it(method, path, status, words):
    assert describe_stray({"method": method, "path": path, "status": status}) == f"{method} {path} ({status}): {words}"


def test_only_and_skip_choose_scenarios_and_unknown_names_are_refused():
    names = [s.name for s in SCENARIOS]
    assert select(names, ["keeps-serving", "asks-for-work"], None) == ["asks-for-work", "keeps-serving"]
    assert "shuts-down" not in select(names, None, ["shuts-down"])
    with pytest.raises(ValueError, match="no scenario named 'nope'; the scenarios are: asks-for-work"):
        select(names, ["nope"], None)


def test_every_scenario_says_what_it_expects_and_how_to_fix_it():
    assert len({s.name for s in SCENARIOS}) == len(SCENARIOS) >= 11
    for s in SCENARIOS:
        assert s.expected and s.hint, s.name


def test_a_bare_bootstrap_becomes_a_provided_function_alone_in_its_folder(tmp_path):
    script = tmp_path / "my runtime.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    target = load_target(script)
    try:
        fn = target.function
        assert (fn.name, fn.runtime, fn.handler, fn.memory_mb, fn.timeout_s) == ("my-runtime", "provided",
                                                                                 "function.handler", 128, 3)
        assert sorted(p.name for p in fn.code_dir.iterdir()) == ["bootstrap"]
        assert fn.code_dir.stat().st_mode & 0o755 == 0o755, "the sandbox user must read /var/task"
    finally:
        target.cleanup()
    assert not fn.code_dir.exists()
    other = load_target(script, "other.handler")
    other.cleanup()
    assert other.function.handler == "other.handler"


def test_a_bootstrap_that_is_not_executable_is_refused_with_the_fix(tmp_path):
    script = tmp_path / "bootstrap"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(ConfigError, match="not executable; run 'chmod \\+x"):
        load_target(script)


def test_events_with_their_expectations_are_read(tmp_path):
    (tmp_path / "function.toml").write_text('runtime = "python3.11"\nhandler = "app.handler"\n')
    events = tmp_path / "events"
    events.mkdir()
    (events / "a.json").write_text('{"k": 1}')
    (events / "a.expected.json").write_text('{"ok": true}')
    (events / "b.json").write_text("{}")
    (events / "b.error.json").write_text('{"errorType": "ValueError"}')
    (events / "c.json").write_text("{}")
    got = {e.name: e for e in load_target(tmp_path).events}
    assert sorted(got) == ["a", "b", "c"]
    assert got["a"].has_expected and got["a"].expected == {"ok": True} and got["a"].payload == b'{"k": 1}'
    assert got["b"].error_type == "ValueError" and not got["b"].has_expected
    assert not got["c"].has_expected and got["c"].error_type is None
    (events / "c.error.json").write_text('"ValueError"')
    with pytest.raises(ConfigError, match="c.error.json: expected a JSON object with an errorType"):
        load_target(tmp_path)


def sample_report() -> Report:
    return Report(target="examples/x (python3.11, app.handler, 128 MB, 3 s)", function="x", runtime="python3.11",
                  duration_s=9.5, results=[
                      ScenarioResult("asks-for-work", "pass", "GET next", "GET next after 80 ms", "", 0.5),
                      ScenarioResult("answers-its-id", "fail", "one result", "answered it twice", "post once", 0.6),
                      ScenarioResult("lives-within-sandbox", "warn", "init <= 1 s", "init took 1200 ms", "load less", 2.0),
                      ScenarioResult("user-events", "skip", "events", "no events", "", 0.0)])


def test_the_table_has_a_row_per_scenario_and_a_summary():
    text = reports.table(sample_report())
    assert text.splitlines()[2].split() == ["SCENARIO", "VERDICT", "EXPECTED", "SEEN", "HINT"]
    assert any(l.startswith("answers-its-id") and " FAIL " in l and "post once" in l for l in text.splitlines())
    assert text.rstrip().endswith("4 scenario(s) in 9.5 s: 1 pass, 1 fail, 1 warn, 1 skip")


def test_json_and_junit_carry_every_verdict():
    doc = json.loads(reports.as_json(sample_report()))
    assert doc["passed"] is False and doc["counts"] == {"pass": 1, "fail": 1, "warn": 1, "skip": 1}
    suite = ET.fromstring(reports.junit_xml(sample_report()).split("?>", 1)[1]).find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "1")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["answers-its-id"].find("failure").get("message") == "answered it twice"
    assert cases["user-events"].find("skipped") is not None
    assert "warning: init took 1200 ms" in cases["lives-within-sandbox"].find("system-out").text


async def test_the_runtime_api_records_calls_only_for_an_observer():
    from runtime_host.api.http_body import empty_body
    from runtime_host.api.http_server import Request

    def ping() -> Request:
        return Request("GET", "/2018-06-01/ping", "", {}, empty_body(), "172.28.128.5")

    recorded = []
    sandboxes = SimpleNamespace(sandbox_at=lambda ip: None)
    plain = RuntimeApi(sandboxes)
    assert (await plain.serve(ping())).status == 200 and plain.observer is None
    observed = RuntimeApi(sandboxes, SimpleNamespace(record=recorded.append))
    assert (await observed.serve(ping())).status == 200
    assert (await observed.serve(Request("POST", "/2018-06-01/ping", "", {}, empty_body(), "172.28.128.5"))).status == 405
    assert [(c["method"], c["path"], c["status"]) for c in recorded] == [
        ("GET", "/2018-06-01/ping", 200), ("POST", "/2018-06-01/ping", 405)]
