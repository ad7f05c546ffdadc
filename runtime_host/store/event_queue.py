"""The durable queue of asynchronous (`Event`) invocations.

Owns: `events.sqlite` in the host's state directory: every accepted event
is committed there before its caller gets the 202, and leaves only when it
is done or dropped, so a host killed (-9) or stopped with events waiting
delivers them after its restart; an event being delivered when the host
died is delivered again (at least once, as Lambda promises). Also the
functions' event-invoke configurations set through the API.
SQLite runs in one thread of its own: nothing here blocks the event loop.
Must not: decide when to retry or where results go (scheduler/async_delivery.py).

Durability: WAL with synchronous=NORMAL survives the host process dying at
any moment (the commit is in the OS's page cache); not a power cut.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path

QUEUE_FILE = "events.sqlite"
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
DONE_KEPT = 1000            # finished events kept for `runtime-host events`, newest first


@dataclass
class QueuedEvent:
    request_id: str
    function: str
    payload: bytes
    qualifier: str | None = None
    trace_id: str | None = None
    received_at: float = 0.0          # epoch seconds
    attempts: int = 0                 # invocations that ran (a throttle is not one)
    next_attempt_at: float = 0.0      # epoch seconds
    state: str = QUEUED
    last_error: str | None = None
    finished_at: float | None = None


COLUMNS = tuple(f.name for f in fields(QueuedEvent))
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events (request_id TEXT PRIMARY KEY, function TEXT NOT NULL, payload BLOB NOT NULL, "
    "qualifier TEXT, trace_id TEXT, received_at REAL, attempts INTEGER, next_attempt_at REAL, state TEXT, "
    "last_error TEXT, finished_at REAL)",
    "CREATE INDEX IF NOT EXISTS events_due ON events (state, next_attempt_at)",
    "CREATE TABLE IF NOT EXISTS invoke_configs (function TEXT PRIMARY KEY, config TEXT NOT NULL)",
)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    for statement in SCHEMA:
        conn.execute(statement)
    return conn


def _row(row: tuple) -> QueuedEvent:
    return QueuedEvent(**dict(zip(COLUMNS, row)))


class EventQueue:
    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / QUEUE_FILE
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="event-queue")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def open(self) -> int:
        """Opens the queue; an event a dead host was delivering is queued again. Returns how many wait."""
        return await self._run(self._open)

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = _connect(self.path)
        self._conn.execute("UPDATE events SET state = ? WHERE state = ?", (QUEUED, RUNNING))
        return self._conn.execute("SELECT count(*) FROM events WHERE state = ?", (QUEUED,)).fetchone()[0]

    async def put(self, event: QueuedEvent) -> None:
        """Returns once the event is committed; raises OSError when it cannot be (disk full)."""
        try:
            await self._run(self._put, event)
        except sqlite3.Error as exc:
            raise OSError(f"the event queue {self.path} could not be written: {exc}") from None

    def _put(self, event: QueuedEvent) -> None:
        values = astuple_ordered(event)
        self._conn.execute(f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                           values)

    async def claim_due(self, now: float, limit: int) -> list[QueuedEvent]:
        """Up to `limit` events due by `now`, oldest first, marked running."""
        return await self._run(self._claim_due, now, limit)

    def _claim_due(self, now: float, limit: int) -> list[QueuedEvent]:
        rows = self._conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM events WHERE state = ? AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at, received_at LIMIT ?", (QUEUED, now, limit)).fetchall()
        events = [_row(r) for r in rows]
        if events:
            self._conn.executemany("UPDATE events SET state = ? WHERE request_id = ?",
                                   [(RUNNING, e.request_id) for e in events])
        for e in events:
            e.state = RUNNING
        return events

    async def next_due_at(self) -> float | None:
        return await self._run(lambda: self._conn.execute(
            "SELECT min(next_attempt_at) FROM events WHERE state = ?", (QUEUED,)).fetchone()[0])

    async def save(self, event: QueuedEvent) -> None:
        """Writes back an event's state, attempts, next attempt and error."""
        await self._run(self._save, event)

    def _save(self, event: QueuedEvent) -> None:
        self._conn.execute("UPDATE events SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?, "
                           "finished_at = ? WHERE request_id = ?",
                           (event.state, event.attempts, event.next_attempt_at, event.last_error, event.finished_at,
                            event.request_id))
        if event.state in (DONE, FAILED):
            self._conn.execute("DELETE FROM events WHERE state IN (?, ?) AND request_id NOT IN (SELECT request_id "
                               "FROM events WHERE state IN (?, ?) ORDER BY finished_at DESC LIMIT ?)",
                               (DONE, FAILED, DONE, FAILED, DONE_KEPT))

    # --- event-invoke configurations (PutFunctionEventInvokeConfig) -------------------
    async def get_config(self, function: str) -> dict | None:
        row = await self._run(lambda: self._conn.execute(
            "SELECT config FROM invoke_configs WHERE function = ?", (function,)).fetchone())
        return json.loads(row[0]) if row else None

    async def put_config(self, function: str, config: dict | None) -> None:
        def write() -> None:
            if config is None:
                self._conn.execute("DELETE FROM invoke_configs WHERE function = ?", (function,))
            else:
                self._conn.execute("INSERT OR REPLACE INTO invoke_configs (function, config) VALUES (?, ?)",
                                   (function, json.dumps(config)))
        await self._run(write)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self._thread.submit(close).result()
        self._thread.shutdown()


def astuple_ordered(event: QueuedEvent) -> tuple:
    values = asdict(event)
    return tuple(values[c] for c in COLUMNS)


def read_events(state_dir: Path) -> list[QueuedEvent]:
    """Every event the queue holds, for `runtime-host events` (no host needed)."""
    path = Path(state_dir) / QUEUE_FILE
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM events ORDER BY received_at").fetchall()
    finally:
        conn.close()
    return [_row(r) for r in rows]

