"""Function output kept: per-function log files and the host's terminal.

Owns: the per-function log files under the state directory and the optional
echo to the host's own terminal.
Must not: decide which invocation a byte belongs to (the sandbox does that),
or format platform lines (core/logformat.py does).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO


class LogSink:
    """Appends every function's output to <state>/logs/<function>.log and,
    when echo is on, to the host's terminal prefixed by the function name."""

    def __init__(self, log_dir: Path, echo: TextIO | None = sys.stderr):
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.echo = echo
        self._files: dict[str, object] = {}

    def write(self, function: str, data: bytes) -> None:
        f = self._files.get(function)
        if f is None:
            # Unbuffered append: a line is on disk before the host could die.
            f = self._files[function] = open(self.log_dir / f"{function}.log", "ab", buffering=0)
        f.write(data)
        if self.echo is not None:
            text = data.decode("utf-8", "replace")
            for line in text.splitlines():
                self.echo.write(f"{function} | {line}\n")
            self.echo.flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
