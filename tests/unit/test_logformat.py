"""The platform's log lines (spec §5.3) and their JSON records for a function
whose log format is JSON (docs/spec-additions.md §4): the shapes, and what
each system log level keeps."""
from __future__ import annotations

import json
import re

import pytest

from runtime_host.core import logformat
from runtime_host.core.config import LoggingConfig

TEXT = LoggingConfig()
ISO_MS_Z = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
REPORT = "REPORT RequestId: r1\tDuration: 15.74 ms\tBilled Duration: 16 ms\tMemory Size: 128 MB\tMax Memory Used: 56 MB\t"


def json_config(system_level: str = "INFO") -> LoggingConfig:
    return LoggingConfig(format="JSON", application_level="INFO", system_level=system_level)


def records(lines: bytes) -> list[dict]:
    return [json.loads(line) for line in lines.decode().splitlines()]


def end_lines(config: LoggingConfig, **figures) -> bytes:
    args = {"status": "success", "duration_ms": 15.74, "memory_mb": 128, "max_memory_used_mb": 56}
    args.update(figures)
    return logformat.end_lines(config, "r1", REPORT, **args)


# --- text format: exactly as before --------------------------------------------------

def test_text_format_start_is_the_start_line():
    assert logformat.start_lines(TEXT, "r1") == b"START RequestId: r1 Version: $LATEST\n"


def test_text_format_end_is_the_end_line_then_the_report_line():
    assert end_lines(TEXT) == b"END RequestId: r1\n" + REPORT.encode() + b"\n"


def test_text_format_timeout_line_is_time_request_id_and_message():
    line = logformat.timeout_lines(TEXT, "r1", 3).decode()
    assert re.fullmatch(ISO_MS_Z + r" r1 Task timed out after 3\.00 seconds\n", line), line


# --- JSON records ---------------------------------------------------------------------

def test_platform_record_is_time_type_and_record_on_one_line():
    line = logformat.platform_record("platform.start", {"requestId": "r1"}, epoch_s=1700000000.5)
    assert line == b'{"time":"2023-11-14T22:13:20.500Z","type":"platform.start","record":{"requestId":"r1"}}\n'


def test_utc_timestamp_has_milliseconds_and_z():
    assert logformat.utc_timestamp(0.007) == "1970-01-01T00:00:00.007Z"


def test_json_start_is_platform_start_with_request_id_and_version():
    (record,) = records(logformat.start_lines(json_config(), "r1"))
    assert re.fullmatch(ISO_MS_Z, record.pop("time"))
    assert record == {"type": "platform.start", "record": {"requestId": "r1", "version": "$LATEST"}}


def test_json_report_carries_the_metrics_of_the_report_line():
    (record,) = records(end_lines(json_config(), init_duration_ms=130.49))
    assert record["type"] == "platform.report"
    assert record["record"] == {"requestId": "r1", "status": "success", "metrics": {
        "durationMs": 15.74, "billedDurationMs": 147, "memorySizeMB": 128, "maxMemoryUsedMB": 56,
        "initDurationMs": 130.49}}


def test_json_report_without_a_cold_start_has_no_init_duration():
    (record,) = records(end_lines(json_config()))
    assert "initDurationMs" not in record["record"]["metrics"]
    assert record["record"]["metrics"]["billedDurationMs"] == 16


def test_json_report_of_a_failed_invoke_carries_status_and_error_type():
    (record,) = records(end_lines(json_config(), status="error", error_type="Runtime.ExitError"))
    assert record["record"]["status"] == "error" and record["record"]["errorType"] == "Runtime.ExitError"


def test_json_report_of_a_timeout_has_status_timeout():
    (record,) = records(end_lines(json_config(), status="timeout", error_type="Sandbox.Timedout"))
    assert record["record"]["status"] == "timeout"


def test_json_format_writes_no_end_or_report_text():
    lines = end_lines(json_config("DEBUG")).decode()
    assert "END RequestId" not in lines and "REPORT RequestId" not in lines


def test_json_timeout_line_is_an_error_line_with_the_request_id():
    (line,) = records(logformat.timeout_lines(json_config(), "r1", 3))
    assert re.fullmatch(ISO_MS_Z, line.pop("timestamp"))
    assert line == {"level": "ERROR", "requestId": "r1", "message": "Task timed out after 3.00 seconds"}


# --- what each system log level keeps ------------------------------------------------

def test_system_level_info_keeps_start_and_report_but_not_runtime_done():
    config = json_config("INFO")
    assert [r["type"] for r in records(logformat.start_lines(config, "r1") + end_lines(config))] == [
        "platform.start", "platform.report"]


def test_system_level_debug_adds_runtime_done_where_text_has_end():
    config = json_config("DEBUG")
    kept = records(logformat.start_lines(config, "r1") + end_lines(config, status="error", error_type="X.Y"))
    assert [r["type"] for r in kept] == ["platform.start", "platform.runtimeDone", "platform.report"]
    assert kept[1]["record"] == {"requestId": "r1", "status": "error", "errorType": "X.Y",
                                 "metrics": {"durationMs": 15.74}}


def test_system_level_warn_keeps_neither_start_nor_report():
    config = json_config("WARN")
    assert logformat.start_lines(config, "r1") == b""
    assert end_lines(config) == b""


@pytest.mark.parametrize("system_level", ["DEBUG", "INFO", "WARN"])
def test_every_system_level_keeps_the_timeout_line(system_level):
    assert logformat.timeout_lines(json_config(system_level), "r1", 3)
