"""The billing ledger: one durable record per finished invocation.

Owns: the SQLite database (WAL) in the host's state directory, its schema,
and getting records onto disk before their callers are answered. Writes
happen on one writer thread that commits whatever has queued up in one
transaction (a group commit), then resolves each record's future on the
event loop; the Invoke API answers a caller only after its record's future
is done, so no answered invocation is ever unrecorded.

Durability: `synchronous=NORMAL` (default) survives the host being killed
(-9) at any moment: a committed transaction is in the WAL file, in the OS's
hands. `synchronous=FULL` (`--ledger-sync full`) also survives a power cut,
at the price of an fsync per group (about 0.35 ms here against 0.02 ms).

Must not: compute what is billed (billing.py does) or read sandbox state.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from dataclasses import astuple, dataclass, fields
from pathlib import Path

log = logging.getLogger("runtime_host.ledger")

LEDGER_FILE = "ledger.sqlite3"
SCHEMA_VERSION = 1
OUTCOMES = ("success", "function_error", "timeout", "oom", "crash")


@dataclass(frozen=True)
class Record:
    request_id: str
    function: str
    version: str
    started_at: float          # epoch seconds, when the host received the invocation
    duration_ms: float
    billed_ms: int
    init_ms: float | None
    memory_mb: int
    max_memory_used_mb: int
    cold: bool
    outcome: str               # one of OUTCOMES
    error_type: str | None
    architecture: str
    gb_s: float
    cost_usd: float


COLUMNS = [f.name for f in fields(Record)]
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS invocations (
    request_id TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    version TEXT NOT NULL,
    started_at REAL NOT NULL,
    duration_ms REAL NOT NULL,
    billed_ms INTEGER NOT NULL,
    init_ms REAL,
    memory_mb INTEGER NOT NULL,
    max_memory_used_mb INTEGER NOT NULL,
    cold INTEGER NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN {OUTCOMES!r}),
    error_type TEXT,
    architecture TEXT NOT NULL,
    gb_s REAL NOT NULL,
    cost_usd REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS invocations_by_function_time ON invocations (function, started_at);
PRAGMA user_version = {SCHEMA_VERSION};
"""
INSERT = f"INSERT INTO invocations ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"


class LedgerError(RuntimeError):
    """The ledger cannot be opened or written; the message says what to do."""


def connect(path: Path, sync: str = "NORMAL") -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={sync}")
        conn.executescript(SCHEMA)
    except sqlite3.DatabaseError as exc:
        raise LedgerError(f"cannot open the billing ledger {path}: {exc}; move it away to start a new one") from None
    return conn


class Ledger:
    def __init__(self, state_dir: Path, sync: str = "NORMAL"):
        if sync.upper() not in ("NORMAL", "FULL"):
            raise LedgerError(f"ledger sync {sync!r} is not allowed; expected normal or full")
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / LEDGER_FILE
        self._conn = connect(self.path, sync.upper())
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._write_forever, name="ledger-writer", daemon=True)
        self._thread.start()

    def record(self, record: Record) -> asyncio.Future[None]:
        """Queues a record; the future is done once it is committed."""
        future = self._loop.create_future()
        self._queue.put((record, future))
        return future

    def _write_forever(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while True:                      # group commit: everything queued meanwhile
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.append(more)
            error = None
            try:
                self._conn.execute("BEGIN")
                for record, _ in batch:
                    try:
                        self._conn.execute(INSERT, astuple(record))
                    except sqlite3.IntegrityError:
                        log.error("ledger already holds request %s; not recorded twice", record.request_id)
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                error = LedgerError(f"billing ledger {self.path} could not be written: {exc}")
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            self._loop.call_soon_threadsafe(self._resolve, [f for _, f in batch], error)

    @staticmethod
    def _resolve(futures: list[asyncio.Future], error: Exception | None) -> None:
        for future in futures:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
        self._conn.close()


def read_records(state_dir: Path, function: str | None = None, since_epoch: float | None = None) -> list[Record]:
    """Every record, oldest first, for `runtime-host billing` (no host needed)."""
    path = Path(state_dir) / LEDGER_FILE
    if not path.exists():
        raise LedgerError(f"no billing ledger at {path}; it is created by 'runtime-host serve' or 'run' "
                          "with --state-dir pointing there")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read the billing ledger {path}: {exc}") from None
    try:
        query = f"SELECT {', '.join(COLUMNS)} FROM invocations WHERE 1=1"
        args: list = []
        if function:
            query += " AND function = ?"
            args.append(function)
        if since_epoch is not None:
            query += " AND started_at >= ?"
            args.append(since_epoch)
        rows = conn.execute(query + " ORDER BY started_at", args).fetchall()
    except sqlite3.DatabaseError as exc:
        raise LedgerError(f"cannot read the billing ledger {path}: {exc}; move it away to start a new one") from None
    finally:
        conn.close()
    return [Record(*row[:9], bool(row[9]), *row[10:]) for row in rows]
