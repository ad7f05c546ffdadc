"""Function output kept: per-function log files and the host's terminal.

Owns: the per-function log files under the state directory (the plain
<function>.log, and beside it the events file that keeps each line's time,
log stream and request id, in store/log_streams.py's format), the optional
echo to the host's own terminal, and keeping each line whole: output comes in
chunks that need not end at a newline, and several sources (sandboxes, their
extensions' processes) write to one function's file, so a source's unfinished
line waits here for its newline instead of being cut into by another's.
Must not: decide which invocation a byte belongs to (the sandbox does that),
or format platform lines (core/logformat.py does).

A source's unfinished line is written without its newline having come (then
with a newline added, so that nothing is lost and nothing else is joined to
it) when it reaches PARTIAL_LINE_MAX_BYTES (a runaway line holds no more
memory than that), PARTIAL_LINE_MAX_WAIT_S after it began (its source may
have ended: a sandbox's container gone, an extension's process exited), or
when the sink closes. Lines without a source (START, END, REPORT...) are
written at once: a last line a function leaves unfinished comes after its
END (the sink cannot tell which sandbox a platform line is about).

A write that fails (the disk full) loses those bytes, with one warning per
run of failures (counted in lost_bytes); it never raises into the sandbox
or invocation whose output it is (the ledger refuses new invocations while
the disk is full).
"""
from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, TextIO

from runtime_host.store.log_streams import encode_lines, events_path

log = logging.getLogger("runtime_host.store.logs")

PARTIAL_LINE_MAX_BYTES = 256 * 1024     # the most one source's unfinished line holds
PARTIAL_LINE_MAX_WAIT_S = 0.5


@dataclass(eq=False)
class _Partial:
    """A source's line so far, with no newline yet."""
    function: str
    text: bytearray
    stream: str | None = None
    request_id: str | None = None
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class LogSink:
    """Appends every function's output to <state>/logs/<function>.log and,
    when echo is on, to the host's terminal prefixed by the function name."""

    def __init__(self, log_dir: Path, echo: TextIO | None = sys.stderr):
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.echo = echo
        self._files: dict[str, object] = {}
        self._event_files: dict[str, object] = {}
        self._partial: dict[Hashable, _Partial] = {}     # source -> its unfinished line
        self.lost_bytes = 0              # output that could not be written (disk full)
        self._failing = False

    def write(self, function: str, data: bytes, source: Hashable | None = None, *,
              stream: str | None = None, request_id: str | None = None) -> None:
        """Appends data to the function's log. With a source (a sandbox, an
        extension's process), only whole lines are written; the rest of the
        chunk waits for the source's next one. Without one, data is written
        as it is (platform lines, whole by construction). stream (the
        sandbox's log stream) and request_id (the invocation, when known) go
        with each line into the events file."""
        if source is not None:
            end = data.rfind(b"\n") + 1
            if end != len(data) or self._partial:      # the hot path: a chunk of whole lines, nothing held
                data = self._whole_lines(function, source, data, end, stream, request_id)
                if not data:
                    return
        self._append(function, data, stream, request_id)

    def _whole_lines(self, function: str, source: Hashable, data: bytes, end: int,
                     stream: str | None, request_id: str | None) -> bytes:
        """What of data (and of the source's held line) can be written now;
        keeps the rest."""
        held = self._partial.get(source)
        if held is None and end == len(data):
            return data
        if end == 0:                                    # no newline: all of it waits
            if held is None:
                held = self._partial[source] = _Partial(function, bytearray(), stream, request_id)
                held.timer = _call_later(PARTIAL_LINE_MAX_WAIT_S, self._close_partial, source, held)
            held.text += data
            if len(held.text) >= PARTIAL_LINE_MAX_BYTES:
                return self._take(source, held)
            return b""
        lines = data[:end] if held is None else bytes(self._take(source, held, newline=False)) + data[:end]
        rest = data[end:]
        if rest:
            if len(rest) >= PARTIAL_LINE_MAX_BYTES:
                return lines + rest + b"\n"
            held = self._partial[source] = _Partial(function, bytearray(rest), stream, request_id)
            held.timer = _call_later(PARTIAL_LINE_MAX_WAIT_S, self._close_partial, source, held)
        return lines

    def _take(self, source: Hashable, held: _Partial, newline: bool = True) -> bytearray:
        """Lets go of a source's held line and returns it."""
        del self._partial[source]
        if held.timer is not None:
            held.timer.cancel()
        if newline:
            held.text += b"\n"
        return held.text

    def _close_partial(self, source: Hashable, held: _Partial) -> None:
        if self._partial.get(source) is held:
            self._append(held.function, self._take(source, held), held.stream, held.request_id)

    def _append(self, function: str, data: bytes, stream: str | None = None, request_id: str | None = None) -> None:
        text = data.decode("utf-8", "replace")
        try:
            f = self._files.get(function)
            if f is None:
                # Unbuffered append: a line is on disk before the host could die.
                f = self._files[function] = open(self.log_dir / f"{function}.log", "ab", buffering=0)
                self._event_files[function] = open(events_path(self.log_dir, function), "ab", buffering=0)
            f.write(data)
            # One write per chunk, whole lines: a reader never sees half of one
            # (store/log_streams.py). A line no sandbox was named for keeps an
            # empty stream rather than being lost.
            self._event_files[function].write(encode_lines(time.time(), stream or "", request_id, text))
        except OSError as exc:
            # A full disk (or a log file that cannot be written) costs these lines,
            # said once per run of failures; it must not fail the invocation whose
            # output it is (the ledger refuses new invocations while the disk is full).
            self.lost_bytes += len(data)
            if not self._failing:
                self._failing = True
                log.warning("cannot write the log of %s under %s (%s); its output is lost until that works "
                            "again: free space on that disk", function, self.log_dir, exc)
        else:
            if self._failing:
                self._failing = False
                log.warning("the logs under %s are written again (%d bytes of output were lost)",
                            self.log_dir, self.lost_bytes)
        if self.echo is not None:
            for line in text.splitlines():
                self.echo.write(f"{function} | {line}\n")
            self.echo.flush()

    def close(self) -> None:
        for source, held in list(self._partial.items()):
            self._append(held.function, self._take(source, held), held.stream, held.request_id)
        for f in (*self._files.values(), *self._event_files.values()):
            f.close()
        self._files.clear()
        self._event_files.clear()


def _call_later(delay_s: float, callback, *args) -> asyncio.TimerHandle | None:
    """A timer on the running loop; none outside one (then close() writes what is held)."""
    try:
        return asyncio.get_running_loop().call_later(delay_s, callback, *args)
    except RuntimeError:
        return None
