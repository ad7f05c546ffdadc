"""The platform's lines in a function's log: Lambda's text format (spec §5.3)
and, for a function whose `logging.format` is JSON, its JSON records
(docs/spec-additions.md §4).

Owns: START, END, REPORT's place in the log, the timeout line, the UTC
timestamp Lambda prints, the JSON platform records (`{"time", "type",
"record"}`) that replace them in JSON format, which of those a function's
system log level keeps, and the log tail `X-Amz-Log-Result` carries.
Must not: write anything anywhere (store/logs.py keeps the files), or measure
anything (callers pass the figures in).
"""
from __future__ import annotations

import json
import time

from runtime_host.core.billing import billed_duration_ms
from runtime_host.core.config import LoggingConfig
from runtime_host.core.protocol import LATEST, LOG_TAIL_BYTES

# --- text format (spec §5.3) -------------------------------------------------


def start_line(request_id: str, version: str = LATEST) -> bytes:
    return f"START RequestId: {request_id} Version: {version}\n".encode()


def end_line(request_id: str) -> bytes:
    return f"END RequestId: {request_id}\n".encode()


def timeout_line(request_id: str, timeout_s: float) -> bytes:
    return f"{utc_timestamp()} {request_id} {timeout_message(timeout_s)}\n".encode()


def timeout_message(timeout_s: float) -> str:
    return f"Task timed out after {float(timeout_s):.2f} seconds"


def tail(log: bytes | bytearray, limit: int = LOG_TAIL_BYTES) -> bytes:
    """The last `limit` bytes of an invocation's log, as X-Amz-Log-Result carries them."""
    return bytes(log[-limit:])


def utc_timestamp(epoch_s: float | None = None) -> str:
    """ISO 8601 in UTC with milliseconds and Z: 2024-01-31T12:00:00.123Z."""
    t = time.time() if epoch_s is None else epoch_s
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


# --- JSON format (docs/spec-additions.md §4) ---------------------------------

PLATFORM_START = "platform.start"
PLATFORM_RUNTIME_DONE = "platform.runtimeDone"
PLATFORM_REPORT = "platform.report"

# The system log levels, least severe first; a record is kept when its level
# is at or above the function's system_level.
LEVEL_RANK = {"DEBUG": 0, "INFO": 1, "WARN": 2, "ERROR": 3}
# The level of each line the platform writes: start and report at INFO (the
# default keeps them), runtimeDone (where text has END) at DEBUG, the
# timeout line at ERROR (every system level keeps it).
RECORD_LEVEL = {PLATFORM_START: "INFO", PLATFORM_RUNTIME_DONE: "DEBUG", PLATFORM_REPORT: "INFO"}
TIMEOUT_LEVEL = "ERROR"


def keeps(logging: LoggingConfig, level: str) -> bool:
    """Whether a JSON-format function's system log level lets a record of `level` through."""
    return LEVEL_RANK[level] >= LEVEL_RANK[logging.system_level]


def platform_event(event_type: str, record, epoch_s: float | None = None) -> dict:
    """{"time": ..., "type": ..., "record": ...}: the Telemetry API's event shape, also a JSON log line's."""
    return {"time": utc_timestamp(epoch_s), "type": event_type, "record": record}


def platform_record(event_type: str, record: dict, epoch_s: float | None = None) -> bytes:
    """One log line of a platform event."""
    return (json.dumps(platform_event(event_type, record, epoch_s), separators=(",", ":")) + "\n").encode()


def start_record(request_id: str, version: str = LATEST) -> dict:
    return {"requestId": request_id, "version": version}


def runtime_done_record(request_id: str, status: str, duration_ms: float, error_type: str | None = None) -> dict:
    record = {"requestId": request_id, "status": status, "metrics": {"durationMs": round(duration_ms, 3)}}
    if error_type and status != "success":
        record["errorType"] = error_type
    return record


def report_record(request_id: str, status: str, duration_ms: float, memory_mb: int, max_memory_used_mb: int,
                  init_duration_ms: float | None = None, error_type: str | None = None) -> dict:
    """platform.report's record (spec §5.4), the figures of the REPORT line."""
    metrics = {"durationMs": round(duration_ms, 3),
               "billedDurationMs": billed_duration_ms(duration_ms, init_duration_ms),
               "memorySizeMB": memory_mb, "maxMemoryUsedMB": max_memory_used_mb}
    if init_duration_ms is not None:
        metrics["initDurationMs"] = round(init_duration_ms, 3)
    record = {"requestId": request_id, "status": status, "metrics": metrics}
    if error_type and status != "success":
        record["errorType"] = error_type
    return record


def timeout_json_line(request_id: str, timeout_s: float, epoch_s: float | None = None) -> bytes:
    """The timeout line as a JSON log line (docs/spec-additions.md §4: our choice of shape)."""
    line = {"timestamp": utc_timestamp(epoch_s), "level": TIMEOUT_LEVEL, "requestId": request_id,
            "message": timeout_message(timeout_s)}
    return (json.dumps(line, separators=(",", ":")) + "\n").encode()


# --- what the scheduler writes, in the function's format -----------------------


def start_lines(logging: LoggingConfig, request_id: str, version: str = LATEST) -> bytes:
    """START, or platform.start; b"" when the system log level drops it."""
    if not logging.is_json:
        return start_line(request_id, version)
    if not keeps(logging, RECORD_LEVEL[PLATFORM_START]):
        return b""
    return platform_record(PLATFORM_START, start_record(request_id, version))


def end_lines(logging: LoggingConfig, request_id: str, report: str, *, status: str, duration_ms: float,
              memory_mb: int, max_memory_used_mb: int, init_duration_ms: float | None = None,
              error_type: str | None = None) -> bytes:
    """END and the REPORT line (`report`, from core/billing), or in JSON format
    platform.runtimeDone and platform.report as the system log level keeps them."""
    if not logging.is_json:
        return end_line(request_id) + (report + "\n").encode()
    lines = b""
    if keeps(logging, RECORD_LEVEL[PLATFORM_RUNTIME_DONE]):
        lines += platform_record(PLATFORM_RUNTIME_DONE,
                                 runtime_done_record(request_id, status, duration_ms, error_type))
    if keeps(logging, RECORD_LEVEL[PLATFORM_REPORT]):
        lines += platform_record(PLATFORM_REPORT, report_record(
            request_id, status, duration_ms, memory_mb, max_memory_used_mb, init_duration_ms, error_type))
    return lines


def timeout_lines(logging: LoggingConfig, request_id: str, timeout_s: float) -> bytes:
    """The timeout line, in the function's format (kept at every system log level)."""
    if not logging.is_json:
        return timeout_line(request_id, timeout_s)
    return timeout_json_line(request_id, timeout_s)
