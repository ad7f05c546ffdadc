"""Lambda's advanced logging controls through boto3, on real sandboxes
(docs/spec-additions.md §4): a function with `logging = { format = "JSON",
application_level = "WARN" }` gets JSON platform records instead of
START/END/REPORT, and only its application lines from WARN up, as JSON."""
from __future__ import annotations

import base64
import json

import pytest

from tests.conftest import invoke

FUNCTIONS = [
    # (function, the level name its runtime writes for a warning, its WARN line)
    ("py-json-logs", "WARNING", "warn line for 7"),
    ("node-json-logs", "WARN", "warn line for 7"),
]


def tail_of(lambda_client, name: str) -> tuple[str, list[str]]:
    """(request id, lines of the log tail) of one invocation with LogType Tail."""
    resp, body = invoke(lambda_client, name, {"order": 7}, LogType="Tail")
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp and body == {"ok": True}
    request_id = resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    return request_id, base64.b64decode(resp["LogResult"]).decode().splitlines()


def json_objects(lines: list[str]) -> list[dict]:
    objects = []
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            objects.append(value)
    return objects


@pytest.mark.parametrize("name,_level,_message", FUNCTIONS)
def test_tail_has_json_platform_records_instead_of_start_end_report(lambda_client, name, _level, _message):
    request_id, lines = tail_of(lambda_client, name)
    records = [o for o in json_objects(lines) if "type" in o]
    assert [r["type"] for r in records] == ["platform.start", "platform.report"], lines
    start, report = records
    assert start["record"] == {"requestId": request_id, "version": "$LATEST"}
    assert report["record"]["requestId"] == request_id and report["record"]["status"] == "success"
    metrics = report["record"]["metrics"]
    assert metrics["memorySizeMB"] == 128 and metrics["billedDurationMs"] >= 1
    assert metrics["durationMs"] > 0 and metrics["maxMemoryUsedMB"] > 0
    assert lines[-1] == json.dumps(report, separators=(",", ":"))         # the tail ends with the report
    assert not any(line.startswith(("START RequestId", "END RequestId", "REPORT RequestId")) for line in lines)


@pytest.mark.parametrize("name,level,message", FUNCTIONS)
def test_tail_has_only_the_warn_application_line_as_json(lambda_client, name, level, message):
    request_id, lines = tail_of(lambda_client, name)
    app_lines = [o for o in json_objects(lines) if "level" in o]
    assert [(o["level"], o["message"], o["requestId"]) for o in app_lines] == [(level, message, request_id)], lines
    assert not any("below the level" in line for line in lines)


def test_python_json_line_names_its_logger(lambda_client):
    _, lines = tail_of(lambda_client, "py-json-logs")
    (line,) = [o for o in json_objects(lines) if "level" in o]
    assert line["logger"] == "orders"


@pytest.mark.parametrize("name", ["py-json-logs", "node-json-logs"])
def test_configuration_shows_the_logging_config(lambda_client, name):
    conf = lambda_client.get_function_configuration(FunctionName=name)
    assert conf["LoggingConfig"] == {"LogFormat": "JSON", "ApplicationLogLevel": "WARN", "SystemLogLevel": "INFO",
                                     "LogGroup": f"/aws/lambda/{name}"}


def test_a_text_function_keeps_start_end_report_and_shows_text_format(lambda_client):
    resp, _ = invoke(lambda_client, "hello-python", {}, LogType="Tail")
    tail = base64.b64decode(resp["LogResult"]).decode()
    assert "START RequestId: " in tail and "END RequestId: " in tail and "REPORT RequestId: " in tail
    conf = lambda_client.get_function_configuration(FunctionName="hello-python")
    assert conf["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": "/aws/lambda/hello-python"}


def test_a_print_line_is_info_and_below_the_warn_level_it_is_dropped(lambda_client, host):
    """Lambda gives a line that is not JSON with a valid "level" the level
    INFO, so at application_level WARN a print() reaches neither the Tail
    nor the log (docs/spec-additions.md §4, core/app_log_filter.py)."""
    request_id, lines = tail_of(lambda_client, "py-json-logs")
    assert not any("printed line" in line for line in lines), lines
    assert any("warn line for 7" in line for line in lines), lines
    log = host.log_of("py-json-logs")
    assert request_id in log and "printed line" not in log
