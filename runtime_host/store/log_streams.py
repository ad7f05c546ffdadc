"""Function output as CloudWatch keeps it: events, each with its time, log stream and invocation.

Owns: the events file beside each function's plain log
(<state>/logs/<function>.events, one JSON array a line:
[epoch seconds, stream, request id or null, message]), encoding a line into it
(LogSink calls `encode_lines`), and reading it back in order, once
(`read_events`) or as it grows (`follow_events`).
Must not: decide which sandbox or invocation a line belongs to (the sandbox
and the pool do), or write the plain <function>.log (store/logs.py does).

A stream is a sandbox's, named as Lambda names it (core/environment.py,
`log_stream_name`: `YYYY/MM/DD/[version]<32 hex>`, docs/spec-additions.md
§11). The file is appended by the host's one event loop, a whole line per
write, so its order is the order the host received the lines in; a reader
that finds a last line without its newline (a write in progress) leaves it
for its next read.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

LOG_DIR_NAME = "logs"        # under the state directory: <function>.log and <function>.events
EVENTS_SUFFIX = ".events"
FOLLOW_POLL_S = 0.2          # how often follow_events looks for new lines (a stat, in a thread)
_READ_CHUNK_BYTES = 1 << 20

# The C string encoder under json.dumps, without json.dumps's own overhead:
# a line is encoded on the invoke path (START, output, END, REPORT).
_quote = json.encoder.encode_basestring


@dataclass(frozen=True)
class LogEvent:
    timestamp: float          # epoch seconds when the host received the line
    stream: str               # Lambda's log stream name of the sandbox, e.g. "2026/12/07/[$LATEST]0123...abcd"
    message: str              # one line, without its trailing newline
    request_id: str | None    # the invocation it belongs to, when known


def events_path(log_dir: Path, function: str) -> Path:
    """Where a function's events are kept, beside its <function>.log."""
    return log_dir / f"{function}{EVENTS_SUFFIX}"


def encode_lines(timestamp: float, stream: str, request_id: str | None, text: str) -> bytes:
    """The events file's lines for text (one or more lines, its last newline optional)."""
    if text.endswith("\n"):
        text = text[:-1]
    head = f"[{timestamp:.6f},{_quote(stream)},{'null' if request_id is None else _quote(request_id)},"
    if "\n" not in text:
        return f"{head}{_quote(text)}]\n".encode()
    return "".join([f"{head}{_quote(line)}]\n" for line in text.split("\n")]).encode()


def _decode(line: bytes) -> LogEvent | None:
    try:
        timestamp, stream, request_id, message = json.loads(line)
        return LogEvent(float(timestamp), stream, message, request_id)
    except (ValueError, TypeError):
        return None           # a damaged line (the disk filled mid-write) is skipped, not fatal


def _matches(event: LogEvent, since_epoch: float | None, request_id: str | None) -> bool:
    return ((since_epoch is None or event.timestamp >= since_epoch)
            and (request_id is None or event.request_id == request_id))


def _read_from(path: Path, offset: int, max_bytes: int | None = None) -> tuple[list[bytes], int]:
    """The whole lines after offset (about max_bytes of them at most), and
    the offset after them."""
    lines, size = [], 0
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            for line in f:
                if not line.endswith(b"\n"):
                    break                 # being written: the next read has it whole
                lines.append(line)
                size += len(line)
                if max_bytes is not None and size >= max_bytes:
                    break
    except FileNotFoundError:
        pass
    return lines, offset + size


def read_events(state_dir: Path, function: str, *, since_epoch: float | None = None,
                request_id: str | None = None, limit: int | None = None) -> list[LogEvent]:
    """The function's events so far, oldest first (blocking: call it in a
    thread from async code). With limit, the newest `limit` of those that
    match. A function that never wrote a line has none."""
    lines, _ = _read_from(_path(state_dir, function), 0)
    events = []
    for line in lines:
        event = _decode(line)
        if event is not None and _matches(event, since_epoch, request_id):
            events.append(event)
    if limit is not None:
        events = events[-limit:] if limit > 0 else []
    return events


async def follow_events(state_dir: Path, function: str, *, since_epoch: float | None = None,
                        request_id: str | None = None) -> AsyncIterator[LogEvent]:
    """The function's events so far, then each new one as it is written;
    never ends (the caller cancels it). Polls every FOLLOW_POLL_S: a stat of
    the file on the loop is a few microseconds, a read goes to a thread."""
    path = _path(state_dir, function)
    offset = 0
    while True:
        size = _size(path)
        if size < offset:
            offset = 0        # the file was removed and begun again (a new state directory)
        if size > offset:
            lines, offset = await asyncio.to_thread(_read_from, path, offset, _READ_CHUNK_BYTES)
            for line in lines:
                event = _decode(line)
                if event is not None and _matches(event, since_epoch, request_id):
                    yield event
            if lines:
                continue      # more may be waiting beyond this chunk
        await asyncio.sleep(FOLLOW_POLL_S)


def _path(state_dir: Path, function: str) -> Path:
    return events_path(Path(state_dir) / LOG_DIR_NAME, function)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
