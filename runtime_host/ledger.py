"""The billing ledger: one durable record per finished invocation.

Owns: the SQLite database (WAL) in the host's state directory, its schema,
and getting records onto disk before their callers are answered. The
Invoke API answers a caller only after its record's future is done, so no
answered invocation is ever unrecorded.

Two ways in, one connection guarded by one lock:
- when nothing is being written (the common case), the record is committed
  right there on the event loop: with synchronous=NORMAL a commit is an
  append to the WAL in the OS's page cache, about 0.02 ms, less than handing
  it to a thread and being woken back (about 0.19 ms here);
- when a commit is under way (a burst), records queue for the writer thread,
  which commits everything queued in one transaction (a group commit).
WAL checkpoints (the slow part) are only ever run by the writer thread, when
it is idle, never on the loop. With synchronous=FULL every record goes
through the thread, since an fsync must never block the loop.

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
from dataclasses import dataclass, fields
from pathlib import Path

log = logging.getLogger("runtime_host.ledger")

LEDGER_FILE = "ledger.sqlite3"
CHECKPOINT_IDLE_S = 1.0      # the writer checkpoints the WAL after this long without records
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
        self.sync = sync.upper()
        self._conn = connect(self.path, self.sync)
        self._conn.execute("PRAGMA wal_autocheckpoint=0")    # checkpoints: writer thread only
        self._lock = threading.Lock()
        self._since_checkpoint = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._write_forever, name="ledger-writer", daemon=True)
        self._thread.start()

    def record(self, record: Record) -> asyncio.Future[None]:
        """The future is done once the record is committed."""
        future = self._loop.create_future()
        if self.sync == "NORMAL" and self._queue.empty() and self._lock.acquire(blocking=False):
            try:
                self._commit([(record, future)])
            finally:
                self._lock.release()
            return future
        self._queue.put((record, future))
        return future

    def _commit(self, batch: list) -> None:
        """Inserts and commits a batch, then resolves its futures (called
        with the lock held, on the loop or on the writer thread)."""
        error = None
        try:
            self._conn.execute("BEGIN")
            for record, _ in batch:
                try:
                    self._conn.execute(INSERT, [getattr(record, c) for c in COLUMNS])
                except sqlite3.IntegrityError:
                    log.error("ledger already holds request %s; not recorded twice", record.request_id)
            self._conn.execute("COMMIT")
            self._since_checkpoint += len(batch)
        except sqlite3.Error as exc:
            error = LedgerError(f"billing ledger {self.path} could not be written: {exc}")
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        futures = [f for _, f in batch]
        if threading.current_thread() is self._thread:
            self._loop.call_soon_threadsafe(self._resolve, futures, error)
        else:
            self._resolve(futures, error)

    def _write_forever(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=CHECKPOINT_IDLE_S)
            except queue.Empty:
                self._checkpoint()
                continue
            if item is None:
                self._checkpoint()
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
            with self._lock:
                self._commit(batch)

    def _checkpoint(self) -> None:
        """Moves the WAL into the database file while nothing else is written."""
        if self._since_checkpoint == 0:
            return
        with self._lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self._since_checkpoint = 0
            except sqlite3.Error as exc:
                log.warning("ledger checkpoint failed (will retry): %s", exc)

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
