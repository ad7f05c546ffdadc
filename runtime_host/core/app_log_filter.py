"""Lambda's application log-level filter (docs/spec-additions.md §4, "Lines
without a level"): for a function in JSON log format, each line the
function's code writes is given a level, its own "level" (or "log_level",
as AWS's runtimes spell their error lines) when it is a JSON object with a
valid one, INFO otherwise, and only lines at the configured application
level or above reach the log. A Python print() of plain text is INFO, so
`application_level = "WARN"` drops it, as Lambda does.

Owns: naming a line's level and keeping whole lines while deciding (output
comes in chunks that need not end at a newline: a print() can send its text
and its newline apart). Pure: bytes in, bytes out; the sandbox feeds it the
runtime's output and flushes it when an invocation ends.
"""
from __future__ import annotations

import json

from runtime_host.core.config import APPLICATION_LOG_LEVELS

# Application levels, least to most severe (API_LoggingConfig), and the
# names runtimes write that mean the same (Python's logging names).
APP_LEVELS = APPLICATION_LOG_LEVELS
_RANK = {name: rank for rank, name in enumerate(APP_LEVELS)}
_RANK.update({"WARNING": _RANK["WARN"], "CRITICAL": _RANK["FATAL"]})
LEVEL_KEYS = ("level", "log_level")
MAX_HELD_BYTES = 256 * 1024          # a line longer than this is decided on without its newline


def line_level(line: bytes) -> str:
    """The level Lambda gives one line (without its newline)."""
    text = line.strip()
    if text[:1] == b"{":
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            return "INFO"
        if isinstance(doc, dict):
            for key in LEVEL_KEYS:
                value = doc.get(key)
                if isinstance(value, str) and value.upper() in _RANK:
                    name = value.upper()
                    return {"WARNING": "WARN", "CRITICAL": "FATAL"}.get(name, name)
    return "INFO"


class AppLogFilter:
    """Lets through the lines at `threshold` or above; holds an unfinished
    line until its newline (or flush)."""

    def __init__(self, threshold: str):
        self.rank = _RANK[threshold]
        self._held = b""

    def keeps(self, line: bytes) -> bool:
        return _RANK[line_level(line)] >= self.rank

    def feed(self, data: bytes) -> bytes:
        """What of data (with what was held) is written: whole lines kept."""
        data = self._held + data
        end = data.rfind(b"\n") + 1
        if len(data) - end > MAX_HELD_BYTES:
            end = len(data)
        self._held = data[end:]
        return self._decide(data[:end])

    def flush(self) -> bytes:
        """The held line, decided on now (the invocation it belongs to ended)."""
        held, self._held = self._held, b""
        return self._decide(held)

    def _decide(self, data: bytes) -> bytes:
        if not data:
            return b""
        lines = data.splitlines(keepends=True)
        return b"".join(line for line in lines if self.keeps(line))


def app_log_filter(log_format_is_json: bool, application_level: str | None) -> AppLogFilter | None:
    """The filter a function's output goes through, or None where nothing can be dropped."""
    if not log_format_is_json or application_level is None or _RANK[application_level] == 0:
        return None
    return AppLogFilter(application_level)
