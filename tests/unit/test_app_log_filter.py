"""Lambda's application log-level filter for JSON-format functions
(core/app_log_filter.py; docs/spec-additions.md §4)."""
from __future__ import annotations

import json

import pytest

from runtime_host.core.app_log_filter import AppLogFilter, app_log_filter, line_level
from runtime_host.core.config import LoggingConfig
from tests.unit.fakehost import fake_host, function, settle


@pytest.mark.parametrize("line, level", [
    (b'{"level": "debug", "msg": "x"}', "DEBUG"),           # the docs' own example: any case
    (b'{"timestamp": "t", "level": "WARNING", "message": "m"}', "WARN"),   # Python's names
    (b'{"level": "CRITICAL"}', "FATAL"),
    (b'{"log_level": "ERROR", "errorType": "E"}', "ERROR"),  # AWS's runtimes' error lines
    (b'{"level": "LOUD"}', "INFO"),                          # invalid: INFO
    (b'{"msg": "no level"}', "INFO"),
    (b"plain text from print()", "INFO"),
    (b'["level", "ERROR"]', "INFO"),
    (b"{not json", "INFO"),
    (b"[" * 10000, "INFO"),
])
def test_a_line_gets_its_own_level_or_info(line, level):
    assert line_level(line) == level


def test_only_json_functions_with_a_level_above_trace_are_filtered():
    assert app_log_filter(False, None) is None
    assert app_log_filter(True, "TRACE") is None
    assert app_log_filter(True, "WARN") is not None


def test_whole_lines_are_decided_a_line_split_over_chunks_waits_for_its_newline():
    f = AppLogFilter("WARN")
    assert f.feed(b"hello from print") == b""
    assert f.feed(b"\n") == b""                              # plain text: INFO, dropped
    assert f.feed(b'{"level": "ERROR", "m') == b""
    assert f.feed(b'essage": "bad"}\n{"level": "DEBUG"}\n') == b'{"level": "ERROR", "message": "bad"}\n'
    assert f.feed(b'{"level": "FATAL"}') == b""
    assert f.flush() == b'{"level": "FATAL"}'


async def test_a_warn_function_keeps_its_warnings_and_drops_print_lines_in_its_log_and_tail():
    fn = function(logging=LoggingConfig(format="JSON", application_level="WARN"))
    async with fake_host(fn) as host:
        warn = json.dumps({"level": "WARN", "message": "careful"})
        inv, outcome = await host.invoke(fn, json.dumps({"print": f"plain print\n{warn}"}).encode())
        await settle(host, until=lambda: inv.reported.done())
        log = host.log_path("fn").read_text()
    assert "careful" in log and "plain print" not in log
    assert "careful" in inv.log.decode() and "plain print" not in inv.log.decode()
