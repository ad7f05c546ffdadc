"""The billing ledger: one durable record per finished invocation.

Owns: the SQLite database (WAL) in the host's state directory, its schema,
its journal, and getting records onto disk before their callers are
answered. The Invoke API answers a caller only after its record's future is
done, so no answered invocation is ever unrecorded.

Why a journal (synchronous=NORMAL, the default). A record's future is on the
path of every warm invocation (about 0.68 ms in all). Committing it to
SQLite on the event loop, as this module did, cost about 0.04 ms (p50,
bench/ledger.py normal_x1); handing it to a thread and being woken back
costs more (about 0.08 ms, measured the same way). So the loop does neither: it appends the record as one line of
JSON (keys: COLUMNS) to the current segment `ledger.journal.<seq>` next to
the database, in one os.write to an O_APPEND file, resolves the future at
once and leaves the record for the writer thread without waking it: about
0.007 ms (p50, same bench). Every 0.1 s the writer commits what it was
left in one transaction (a group commit, INSERT OR IGNORE), then deletes the segments
wholly committed: the loop starts a new segment every SEGMENT_RECORDS
records and the queue is first in, first out, so every segment older than
the newest committed record's is in SQLite. A commit that fails keeps its
records (and so their segments) and is retried. A clean close() leaves no
segment behind. At start the segments a host left (it did not stop
cleanly) are replayed into SQLite, oldest first, in one transaction with
INSERT OR IGNORE (a record committed before the host died is not counted
twice), then deleted. Until then `read_records` reads them too. If a
journal write fails (disk full...), that record goes through the writer
thread instead, its future done once it is committed, as in FULL.

Only one host at a time keeps the journal of a state directory: it holds an
exclusive flock on `ledger.lock`, which the kernel releases when the host
dies, even by kill -9. Only that host replays and deletes segments, so a
second host on the same directory (`runtime-host run` beside `serve`) never
takes a live host's segments: it commits every record through its writer
thread instead (slower, as durable).

WAL checkpoints (the slow part) are only ever run by the writer thread, when
it is idle, never on the loop.

Durability:
- NORMAL survives the host being killed (-9) at any moment. A record's
  future is done only once its whole line has been written to a segment,
  and a segment is deleted only after every record in it is committed; so
  an answered record is always a complete line in a segment or a committed
  row in the WAL, both in the OS's page cache, which a dead process does
  not take with it, and the next start replays what is only in the journal.
  A line cut short (no newline, or not JSON) is a write the host died in:
  its future was never done, its caller never answered; replay skips it
  with a warning naming the file and line. NORMAL does not survive a power
  cut or a kernel crash: neither the journal nor the WAL is fsynced.
- FULL (`--ledger-sync full`) also survives a power cut: no journal; every
  record goes through the writer thread, which commits with an fsync
  before the future is done (about 0.4 ms, p50, bench/ledger.py full_x1).
  A FULL host still replays a journal a NORMAL one left.

A full disk: refusal() says, before an invocation runs, that it must not
(under MIN_FREE_BYTES free on the state directory's disk), so that no
invocation runs whose record might not be kept; the scheduler raises
StateDiskFull, a 500 ServiceException naming the directory.

Must not: compute what is billed (billing.py does) or read sandbox state.
"""
from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import operator
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass, fields
from pathlib import Path

log = logging.getLogger("runtime_host.store.ledger")

LEDGER_FILE = "ledger.sqlite3"
JOURNAL_PREFIX = "ledger.journal."   # + the segment's seq, zero-padded: ledger.journal.0000000001
JOURNAL_LOCK = "ledger.lock"         # flocked by the one host that keeps the journal
SEGMENT_RECORDS = 4096               # the loop starts a new journal segment after this many records
CHECKPOINT_IDLE_S = 1.0      # the writer checkpoints the WAL (or retries a failed commit) after this long idle
JOURNALED_COMMIT_DELAY_S = 0.1   # journaled records are already safe: the writer commits them this often
SCHEMA_VERSION = 1
OUTCOMES = ("success", "function_error", "timeout", "oom", "crash")
# Below this much free space on the state directory's disk no new invocation
# runs (refusal()): its record and its log lines might not get there. A record
# is about 400 bytes; 1 MiB leaves room for those already running.
MIN_FREE_BYTES = 1024 * 1024


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
INSERT_OR_IGNORE = INSERT.replace("INSERT", "INSERT OR IGNORE", 1)

_values = operator.attrgetter(*COLUMNS)     # a Record's values, in COLUMNS order
_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


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


# --- the journal on disk ----------------------------------------------------
def journal_line(record: Record) -> bytes:
    """One line of JSON, keys = COLUMNS (vars() of the dataclass, in field order)."""
    return (_encode(vars(record)) + "\n").encode()


def segment_path(state_dir: Path, seq: int) -> Path:
    return state_dir / f"{JOURNAL_PREFIX}{seq:010d}"


def segments(state_dir: Path) -> list[tuple[int, Path]]:
    """The journal segments in state_dir, oldest first."""
    found = []
    for path in state_dir.glob(JOURNAL_PREFIX + "*"):
        seq = path.name[len(JOURNAL_PREFIX):]
        if seq.isdigit():
            found.append((int(seq), path))
    return sorted(found)


def parse_segment(path: Path, data: bytes, live: bool = False) -> list[tuple]:
    """The rows (values in COLUMNS order) of a segment's complete, valid lines.
    Every other line is skipped with a warning naming the file and the line,
    except, when the segment may be `live` (being written), a last line
    without its newline: that write may be under way."""
    lines = data.split(b"\n")
    tail = lines.pop()          # what follows the last newline: empty unless a write was cut short
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            obj = json.loads(line)
        except ValueError:
            log.warning("ledger journal %s line %d is not JSON; skipped", path, number)
            continue
        if not isinstance(obj, dict):
            log.warning("ledger journal %s line %d is not a record; skipped", path, number)
            continue
        missing = [c for c in COLUMNS if c not in obj]
        if missing:
            log.warning("ledger journal %s line %d lacks %s; skipped", path, number, ", ".join(missing))
            continue
        row = tuple(obj[c] for c in COLUMNS)
        if not all(v is None or isinstance(v, (str, int, float)) for v in row):
            log.warning("ledger journal %s line %d holds a value that is not a string, number or null; skipped",
                        path, number)
            continue
        rows.append(row)
    if tail and not live:
        log.warning("ledger journal %s line %d is incomplete: its write was cut short (the host died, or the "
                    "disk was full) before that invocation was answered; skipped", path, len(lines) + 1)
    return rows


def _to_record(row: tuple) -> Record:
    return Record(*row[:9], bool(row[9]), *row[10:])


# --- the ledger ---------------------------------------------------------------
class Ledger:
    def __init__(self, state_dir: Path, sync: str = "NORMAL", segment_records: int = SEGMENT_RECORDS):
        if sync.upper() not in ("NORMAL", "FULL"):
            raise LedgerError(f"ledger sync {sync!r} is not allowed; expected normal or full")
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir
        self.path = state_dir / LEDGER_FILE
        self.sync = sync.upper()
        self.segment_records = segment_records
        self._conn = connect(self.path, self.sync)
        self._conn.execute("PRAGMA wal_autocheckpoint=0")    # checkpoints: writer thread only
        self._since_checkpoint = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()   # (record, future or None, seq or None), None: stop
        self._journaled: deque = deque()     # (record, None, seq), in journal order (loop -> writer)
        self._retry: list[tuple] = []        # journaled records whose commit failed (writer thread)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock_fd = self._lock_journal()
        self._journal = self.sync == "NORMAL" and self._lock_fd is not None
        self._seq = 0                        # the current segment (loop)
        if self._lock_fd is not None:
            self._seq = self._replay()
            if not self._journal:            # FULL writes no segments: another host may keep the journal
                self._unlock_journal()
        self._oldest_seq = self._seq + 1     # this run's oldest segment not yet deleted (writer thread)
        self._fd: int | None = None          # the current segment, opened by the first record (loop)
        self._segment_count = 0              # records in the current segment
        self._journal_failing = False

    def _lock_journal(self) -> int | None:
        """Takes the journal of this state directory, unless a live host has it."""
        path = self.state_dir / JOURNAL_LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise LedgerError(f"cannot open {path}: {exc}; the state directory must be writable") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            log.warning("another host (pid %s) keeps the ledger journal in %s; this one commits every record "
                        "through its writer thread", holder, self.state_dir)
            return None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def _unlock_journal(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)          # releases the flock
            self._lock_fd = None

    def _replay(self) -> int:
        """Commits what the segments left by a host that did not stop cleanly
        hold, deletes them, and returns the highest seq found (0: none)."""
        found = segments(self.state_dir)
        if not found:
            return 0
        rows = []
        for _, path in found:
            try:
                rows += parse_segment(path, path.read_bytes())
            except OSError as exc:
                raise LedgerError(f"cannot read the ledger journal {path}: {exc}; the state directory must "
                                  "be readable") from None
        try:
            self._conn.execute("BEGIN")
            inserted = self._conn.executemany(INSERT_OR_IGNORE, rows).rowcount if rows else 0
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise LedgerError(f"cannot replay the ledger journal ({found[0][1]} and the rest) into {self.path}: "
                              f"{exc}; the journal is kept: free space on that disk and start again") from None
        for _, path in found:
            path.unlink(missing_ok=True)
        log.warning("ledger: the last host did not stop cleanly; %d record(s) replayed from %d journal segment(s) "
                    "into %s (%d were already there)", inserted, len(found), self.path, len(rows) - inserted)
        return found[-1][0]

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._write_forever, name="ledger-writer", daemon=True)
        self._thread.start()

    # --- on the loop ----------------------------------------------------------
    def record(self, record: Record) -> asyncio.Future[None]:
        """The future is done once the record would survive the host being
        killed: in NORMAL, at once (its line is in the journal); else once
        the writer thread has committed it. Records handed over before
        start() wait in the queue for the writer."""
        future = (self._loop or asyncio.get_running_loop()).create_future()
        if self._journal:
            try:
                seq = self._append(journal_line(record))
            except OSError as exc:
                self._journal_failed(exc)
            else:
                future.set_result(None)
                self._journaled.append((record, None, seq))     # no wake-up: see _write_forever
                return future
        self._queue.put((record, future, None))
        return future

    def refusal(self) -> str | None:
        """Why a new invocation must not run now, or None. The host asks
        before each one (one statvfs, a few microseconds): an invocation that
        ran but could not be recorded would be answered with an error after
        the function had done its work, or, worse, not be billed."""
        try:
            stat = os.statvfs(self.state_dir)
        except OSError as exc:
            return f"cannot look at the state directory {self.state_dir} ({exc})"
        free = stat.f_bavail * stat.f_frsize
        if free < MIN_FREE_BYTES:
            return (f"the disk of the host's state directory {self.state_dir} is full ({free:,} bytes free, "
                    f"{MIN_FREE_BYTES:,} needed): no invocation runs until there is room for its billing "
                    "record and its log; free space on that disk")
        return None

    def _append(self, line: bytes) -> int:
        """Writes the line whole to the current segment; returns its seq."""
        if self._fd is None or self._segment_count >= self.segment_records:
            self._open_segment()
        written = 0
        try:
            while written < len(line):             # a short write is possible in theory (disk full)
                written += os.write(self._fd, line[written:])
        except OSError:
            if written:      # part of the line is in the segment: no other line may follow it there
                self._close_segment()
            raise
        self._segment_count += 1
        if self._journal_failing:
            self._journal_failing = False
            log.warning("ledger journal %s is written again", segment_path(self.state_dir, self._seq))
        return self._seq

    def _open_segment(self) -> None:
        self._close_segment()
        seq = self._seq + 1
        self._fd = os.open(segment_path(self.state_dir, seq),
                           os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._seq, self._segment_count = seq, 0

    def _close_segment(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def _journal_failed(self, exc: OSError) -> None:
        if not self._journal_failing:
            self._journal_failing = True
            log.warning("cannot append to the ledger journal in %s (%s); until it works again every record is "
                        "committed through the writer thread: free space on that disk", self.state_dir, exc)

    # --- on the writer thread -------------------------------------------------
    def _write_forever(self) -> None:
        """Commits what the loop hands over: a record someone waits on (in
        the queue) at once; journaled records (in `_journaled`, which does
        not wake this thread) every JOURNALED_COMMIT_DELAY_S. Waking the
        thread for each record cost the loop a GIL hand-over and a context
        switch (about 0.05 ms on the invocation's path, 2 cores)."""
        idle_since = time.monotonic()
        while True:
            try:
                item = self._queue.get(timeout=JOURNALED_COMMIT_DELAY_S)
            except queue.Empty:
                item = ()
            stopping = item is None
            batch = self._take_journaled()
            if item:
                batch.append(item)
            while not stopping:              # a group commit: everything else queued meanwhile
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                else:
                    batch.append(more)
            if stopping:
                batch += self._take_journaled()
            if batch or self._retry:
                self._commit(batch)
                idle_since = time.monotonic()
            if stopping:
                self._checkpoint()
                return
            if time.monotonic() - idle_since >= CHECKPOINT_IDLE_S:
                self._checkpoint()
                idle_since = time.monotonic()

    def _take_journaled(self) -> list[tuple]:
        batch = []
        while self._journaled:
            batch.append(self._journaled.popleft())
        return batch

    def _commit(self, batch: list[tuple]) -> None:
        """Inserts and commits the batch (after the journaled records whose
        commit failed before), resolves the futures of the records not
        journaled, and deletes the segments now wholly committed."""
        batch = self._retry + batch
        error = None
        try:
            self._conn.execute("BEGIN")
            for record, _, _ in batch:
                try:
                    inserted = self._conn.execute(INSERT_OR_IGNORE, _values(record)).rowcount
                except sqlite3.ProgrammingError as exc:     # a value SQLite cannot store: never will
                    log.error("ledger cannot store the record of request %s (%s); not recorded",
                              record.request_id, exc)
                    continue
                if inserted == 0:
                    self._refused(record)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            error = LedgerError(f"billing ledger {self.path} could not be written: {exc}; free space on that disk "
                                "and check that the file is writable")
        futures = [future for _, future, _ in batch if future is not None]
        if error is None:
            self._retry = []
            self._since_checkpoint += len(batch)
            newest = next((seq for _, _, seq in reversed(batch) if seq is not None), None)
            if newest is not None:
                self._delete_segments_below(newest)
        else:
            journaled = [item for item in batch if item[1] is None]     # answered already: retried, never lost
            if journaled and not self._retry:
                log.error("%s; the %d record(s) already answered stay in the journal and are retried",
                          error, len(journaled))
            self._retry = journaled
        if futures:
            if threading.current_thread() is self._thread:
                self._loop.call_soon_threadsafe(self._resolve, futures, error)
            else:
                self._resolve(futures, error)

    def _refused(self, record: Record) -> None:
        """A record INSERT OR IGNORE left out: a duplicate, or one the schema refuses."""
        held = self._conn.execute("SELECT 1 FROM invocations WHERE request_id = ?", (record.request_id,)).fetchone()
        if held:
            log.error("ledger already holds request %s; not recorded twice", record.request_id)
        else:
            log.error("ledger refused the record of request %s: outcome %r is not one of %s, or a required "
                      "value is missing; not recorded", record.request_id, record.outcome, ", ".join(OUTCOMES))

    def _delete_segments_below(self, seq: int) -> None:
        """Every segment older than `seq` has all its records committed (the
        queue is first in, first out)."""
        for old in range(self._oldest_seq, seq):
            try:
                segment_path(self.state_dir, old).unlink(missing_ok=True)
            except OSError as exc:
                log.warning("cannot delete the committed ledger journal segment %s (%s); the next start "
                            "replays it, harmlessly", segment_path(self.state_dir, old), exc)
        self._oldest_seq = max(self._oldest_seq, seq)

    def _checkpoint(self) -> None:
        """Moves the WAL into the database file while nothing else is written."""
        if self._since_checkpoint == 0:
            return
        try:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._since_checkpoint = 0
        except sqlite3.Error as exc:
            log.warning("ledger checkpoint failed (will retry): %s", exc)

    def _rollback(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    @staticmethod
    def _resolve(futures: list[asyncio.Future], error: Exception | None) -> None:
        for future in futures:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    # --- stopping -----------------------------------------------------------------
    def close(self) -> None:
        """Commits everything queued, checkpoints, and deletes this run's
        journal segments once all their records are committed."""
        self._queue.put(None)
        if self._thread is None:
            self._write_forever()            # never started: drain here
        else:
            self._thread.join(timeout=10)
        drained = self._thread is None or not self._thread.is_alive()
        self._close_segment()
        if drained and not self._retry:
            self._delete_segments_below(self._seq + 1)
        elif self._journal:
            log.warning("ledger: not every record could be committed to %s; they stay in the journal in %s "
                        "and the next start replays them", self.path, self.state_dir)
        self._conn.close()
        self._unlock_journal()


def read_records(state_dir: Path, function: str | None = None, since_epoch: float | None = None) -> list[Record]:
    """Every record, oldest first, for `runtime-host billing` (no host
    needed): the database's rows and the journal's lines not yet committed.
    Reads only: a host may be writing both meanwhile. The journal is read
    first: a segment is deleted only once its records are committed, so a
    record missing from the segments read was committed before the database
    is read."""
    state_dir = Path(state_dir)
    path = state_dir / LEDGER_FILE
    if not path.exists():
        raise LedgerError(f"no billing ledger at {path}; it is created by 'runtime-host serve' or 'run' "
                          "with --state-dir pointing there")
    journaled: dict[str, Record] = {}
    for _, segment in segments(state_dir):
        try:
            data = segment.read_bytes()
        except FileNotFoundError:           # committed and deleted since it was listed
            continue
        except OSError as exc:
            raise LedgerError(f"cannot read the ledger journal {segment}: {exc}") from None
        for row in parse_segment(segment, data, live=True):
            record = _to_record(row)
            if (not function or record.function == function) and \
                    (since_epoch is None or record.started_at >= since_epoch):
                journaled.setdefault(record.request_id, record)
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
    records = [_to_record(row) for row in rows]
    if journaled:
        committed = {r.request_id for r in records}
        records += [r for r in journaled.values() if r.request_id not in committed]
        records.sort(key=lambda r: r.started_at)
    return records
