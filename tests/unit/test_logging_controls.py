"""Lambda's advanced logging controls (docs/spec-additions.md §4), without a
container engine: `logging = {...}` in function.toml, the variables a
sandbox gets, LoggingConfig in GetFunctionConfiguration, and a JSON-format
function's log tail over the fake backend."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from runtime_host.core.config import ConfigError, LoggingConfig, load_function
from runtime_host.core.environment import sandbox_env
from tests.unit.fakehost import function, invoke_api

PYTHON = 'runtime = "python3.11"\nhandler = "app.handler"\n'
BASE = "/2015-03-31/functions"


def load(tmp_path: Path, toml: str):
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "function.toml").write_text(PYTHON + toml, encoding="utf-8")
    return load_function(folder)


def refusal(tmp_path: Path, toml: str) -> str:
    with pytest.raises(ConfigError) as exc_info:
        load(tmp_path, toml)
    return str(exc_info.value)


# --- function.toml ------------------------------------------------------------------

def test_without_a_logging_table_the_format_is_text_with_no_levels(tmp_path):
    assert load(tmp_path, "").logging == LoggingConfig(format="Text", application_level=None, system_level=None)


def test_json_format_without_levels_takes_info_for_both(tmp_path):
    fn = load(tmp_path, 'logging = { format = "JSON" }\n')
    assert fn.logging == LoggingConfig(format="JSON", application_level="INFO", system_level="INFO")


def test_a_json_logging_config_built_without_levels_takes_info_for_both():
    assert LoggingConfig("JSON") == LoggingConfig("JSON", "INFO", "INFO")


def test_json_format_takes_the_levels_given(tmp_path):
    fn = load(tmp_path, 'logging = { format = "JSON", application_level = "TRACE", system_level = "WARN" }\n')
    assert (fn.logging.application_level, fn.logging.system_level) == ("TRACE", "WARN")


def test_logging_as_a_table_section_is_read_too(tmp_path):
    fn = load(tmp_path, '[logging]\nformat = "JSON"\napplication_level = "ERROR"\n')
    assert fn.logging.application_level == "ERROR"


def test_unknown_format_is_refused_naming_the_field_and_the_formats(tmp_path):
    message = refusal(tmp_path, 'logging = { format = "json" }\n')
    assert "'logging.format' = 'json'" in message and "JSON, Text" in message


@pytest.mark.parametrize("field,value,allowed", [
    ("application_level", "WARNING", "TRACE, DEBUG, INFO, WARN, ERROR, FATAL"),
    ("system_level", "ERROR", "DEBUG, INFO, WARN"),
])
def test_unknown_level_is_refused_naming_the_field_and_the_levels(tmp_path, field, value, allowed):
    message = refusal(tmp_path, f'logging = {{ format = "JSON", {field} = "{value}" }}\n')
    assert f"'logging.{field}' = '{value}'" in message and allowed in message


@pytest.mark.parametrize("toml", [
    'logging = { application_level = "WARN" }\n',
    'logging = { format = "Text", system_level = "DEBUG" }\n',
])
def test_a_level_with_text_format_is_refused_as_lambda_refuses_it(tmp_path, toml):
    message = refusal(tmp_path, toml)
    assert "'logging." in message and 'format = "JSON"' in message


def test_unknown_logging_field_is_refused_listing_the_known_ones(tmp_path):
    message = refusal(tmp_path, 'logging = { format = "JSON", level = "INFO" }\n')
    assert "'logging.level'" in message and "format, application_level, system_level" in message


def test_logging_that_is_not_a_table_is_refused(tmp_path):
    assert "'logging' = 'JSON'" in refusal(tmp_path, 'logging = "JSON"\n')


# --- the sandbox's variables ---------------------------------------------------------

def env_of(fn) -> dict[str, str]:
    return sandbox_env(fn, region="us-east-1", runtime_api="127.0.0.1:9001")


def test_text_format_sets_the_format_variable_and_no_level():
    env = env_of(function())
    assert env["AWS_LAMBDA_LOG_FORMAT"] == "Text" and "AWS_LAMBDA_LOG_LEVEL" not in env


def test_json_format_sets_the_format_and_the_application_level():
    env = env_of(function(logging=LoggingConfig("JSON", "WARN", "DEBUG")))
    assert (env["AWS_LAMBDA_LOG_FORMAT"], env["AWS_LAMBDA_LOG_LEVEL"]) == ("JSON", "WARN")


def test_the_functions_own_log_variables_win_as_rapid_lets_them():
    fn = function(logging=LoggingConfig("JSON", "WARN", "INFO"), environment={"AWS_LAMBDA_LOG_LEVEL": "DEBUG"})
    assert env_of(fn)["AWS_LAMBDA_LOG_LEVEL"] == "DEBUG"


# --- GetFunctionConfiguration ----------------------------------------------------------

async def test_configuration_shows_text_format_and_the_log_group_only():
    async with invoke_api(function()) as (_, http), http.get(f"{BASE}/fn/configuration") as r:
        assert (await r.json())["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": "/aws/lambda/fn"}


async def test_configuration_shows_json_format_with_both_levels():
    async with invoke_api(function(logging=LoggingConfig("JSON", "WARN", "DEBUG"))) as (_, http), \
            http.get(f"{BASE}/fn") as r:
        assert (await r.json())["Configuration"]["LoggingConfig"] == {
            "LogFormat": "JSON", "ApplicationLogLevel": "WARN", "SystemLogLevel": "DEBUG",
            "LogGroup": "/aws/lambda/fn"}


# --- a JSON-format function's log, over the fake backend ------------------------------

async def tail_of(fn, event: dict) -> list[str]:
    async with invoke_api(fn) as (host, http):
        async with http.post(f"{BASE}/fn/invocations", data=json.dumps(event),
                             headers={"X-Amz-Log-Type": "Tail"}) as r:
            assert r.status == 200
            tail = base64.b64decode(r.headers["X-Amz-Log-Result"]).decode()
        log = host.log_path("fn").read_text()
    assert log.endswith(tail)                  # the log file has what the tail has
    return tail.splitlines()


async def test_json_function_tail_has_platform_records_instead_of_start_end_report():
    lines = await tail_of(function(logging=LoggingConfig("JSON", "INFO", "INFO")), {"print": "hi"})
    assert "hi" in lines
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert [r["type"] for r in records] == ["platform.start", "platform.report"]
    assert records[0]["record"]["requestId"] == records[1]["record"]["requestId"]
    assert set(records[1]["record"]["metrics"]) >= {"durationMs", "billedDurationMs", "memorySizeMB",
                                                    "maxMemoryUsedMB"}
    assert not any(line.startswith(("START ", "END ", "REPORT ")) for line in lines)


async def test_json_function_at_system_level_warn_has_no_platform_records():
    lines = await tail_of(function(logging=LoggingConfig("JSON", "INFO", "WARN")), {"print": "hi"})
    assert lines == ["hi"]


async def test_text_function_tail_is_unchanged():
    lines = await tail_of(function(), {"print": "hi"})
    assert lines[0].startswith("START RequestId: ") and lines[-2].startswith("END RequestId: ")
    assert lines[-1].startswith("REPORT RequestId: ")
