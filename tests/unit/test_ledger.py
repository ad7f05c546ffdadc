"""The billing ledger's journal: a record whose future is done survives the
host being killed, is read back by `read_records` before the writer thread
commits it, and is committed exactly once. Real files in tmp_path; the
journal lines the tests write are encoded here, not by the module, so the
format itself is checked; a "kill" is a real SIGKILL of a child process."""
from __future__ import annotations

import asyncio
import json
import logging
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from runtime_host.store.ledger import (COLUMNS, INSERT, JOURNAL_PREFIX, LEDGER_FILE, Ledger, LedgerError, Record, connect,
                                 read_records)

REPO = Path(__file__).resolve().parents[2]
_request_ids = iter(range(10**9))


def record(function: str = "hello", started_at: float = 1_700_000_000.0, **changes) -> Record:
    r = Record(request_id=f"req-{next(_request_ids)}", function=function, version="$LATEST",
               started_at=started_at, duration_ms=12.5, billed_ms=13, init_ms=None, memory_mb=128,
               max_memory_used_mb=40, cold=False, outcome="success", error_type=None, architecture="x86_64",
               gb_s=0.001625, cost_usd=2.7e-8)
    return replace(r, **changes)


def line(r: Record) -> str:
    return json.dumps(asdict(r)) + "\n"


def write_segment(state_dir: Path, seq: int, text: str) -> Path:
    path = state_dir / f"{JOURNAL_PREFIX}{seq:010d}"
    path.write_text(text)
    return path


def journal(state_dir: Path) -> list[Path]:
    return sorted(state_dir.glob(JOURNAL_PREFIX + "*"))


def rows(state_dir: Path) -> list[str]:
    """The request ids committed to SQLite, in insertion order."""
    conn = sqlite3.connect(state_dir / LEDGER_FILE)
    try:
        return [r[0] for r in conn.execute("SELECT request_id FROM invocations ORDER BY rowid")]
    finally:
        conn.close()


def commit_directly(state_dir: Path, records: list[Record]) -> None:
    conn = connect(state_dir / LEDGER_FILE)
    try:
        for r in records:
            conn.execute(INSERT, [getattr(r, c) for c in COLUMNS])
    finally:
        conn.close()


async def eventually(check, what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.01)


def run_and_kill(state_dir: Path, body: str) -> list[str]:
    """Runs `body` (an async function's lines, `ledger` open on state_dir) in a
    child process that then SIGKILLs itself; returns what it printed."""
    script = textwrap.dedent("""
        import asyncio, os, signal, sys
        from pathlib import Path
        from runtime_host.store.ledger import Ledger, Record

        def record(i):
            return Record(request_id=f"killed-{i}", function="hello", version="$LATEST", started_at=1.0 + i,
                          duration_ms=1.0, billed_ms=1, init_ms=None, memory_mb=128, max_memory_used_mb=40,
                          cold=False, outcome="success", error_type=None, architecture="x86_64", gb_s=0.0001,
                          cost_usd=2e-9)

        async def main():
            ledger = Ledger(Path(sys.argv[1]), segment_records=50)
        BODY
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
    """).replace("BODY\n", textwrap.indent(textwrap.dedent(body), " " * 4))
    child = subprocess.run([sys.executable, "-c", script, str(state_dir)], cwd=REPO, capture_output=True,
                           text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    return child.stdout.split()


# --- answered at once, read back at once -------------------------------------------
async def test_normal_record_is_done_at_once_and_read_back_before_any_commit(tmp_path):
    ledger = Ledger(tmp_path)            # writer thread not started: nothing reaches SQLite
    r = record()
    future = ledger.record(r)
    assert future.done() and future.result() is None
    assert read_records(tmp_path) == [r]
    assert rows(tmp_path) == []
    ledger.close()
    assert rows(tmp_path) == [r.request_id]


async def test_journal_line_is_one_json_object_keyed_by_the_columns(tmp_path):
    ledger = Ledger(tmp_path)
    records = [record(), record(cold=True, init_ms=101.5, outcome="crash", error_type="Runtime.ExitError")]
    for r in records:
        ledger.record(r)
    text = journal(tmp_path)[0].read_text()
    assert text.endswith("\n") and text.count("\n") == 2
    parsed = [json.loads(one) for one in text.splitlines()]
    assert [list(obj) for obj in parsed] == [COLUMNS, COLUMNS]
    assert [Record(**obj) for obj in parsed] == records
    ledger.close()


async def test_clean_close_commits_everything_and_leaves_no_journal(tmp_path):
    ledger = Ledger(tmp_path, segment_records=4)
    ledger.start(asyncio.get_running_loop())
    records = [record() for _ in range(10)]
    await asyncio.gather(*(ledger.record(r) for r in records))
    ledger.close()
    assert rows(tmp_path) == [r.request_id for r in records]
    assert journal(tmp_path) == []


# --- kill -9 -----------------------------------------------------------------------
def test_records_of_a_killed_host_are_replayed_once_and_their_journal_deleted(tmp_path):
    answered = run_and_kill(tmp_path, """
        for i in range(120):                   # three segments of 50; the writer never started
            await ledger.record(record(i))
            print(f"killed-{i}")
    """)
    assert len(answered) == 120
    assert rows(tmp_path) == [] and len(journal(tmp_path)) == 3
    ledger = Ledger(tmp_path)
    try:
        assert rows(tmp_path) == answered
        assert journal(tmp_path) == []
    finally:
        ledger.close()
    assert rows(tmp_path) == answered


def test_killed_while_the_writer_commits_every_answered_record_is_there_exactly_once(tmp_path):
    answered = run_and_kill(tmp_path, """
        ledger.start(asyncio.get_running_loop())
        for i in range(400):
            await ledger.record(record(i))
            print(f"killed-{i}")
            if i % 40 == 0:
                await asyncio.sleep(0.002)      # lets the writer commit some, not all
    """)
    Ledger(tmp_path).close()
    assert sorted(rows(tmp_path)) == sorted(answered) and len(answered) == 400
    assert journal(tmp_path) == []


# --- replay --------------------------------------------------------------------------
def test_torn_last_line_is_skipped_with_a_warning_and_the_others_kept(tmp_path, caplog):
    whole = [record(), record()]
    torn = line(record())[:-40]                # the host died in this write: no newline
    segment = write_segment(tmp_path, 1, line(whole[0]) + line(whole[1]) + torn)
    with caplog.at_level(logging.WARNING, logger="runtime_host.store.ledger"):
        Ledger(tmp_path).close()
    assert rows(tmp_path) == [r.request_id for r in whole]
    assert any(str(segment) in m and "line 3" in m and "incomplete" in m for m in caplog.messages)


def test_last_line_without_its_newline_is_skipped_even_if_it_is_valid_json(tmp_path):
    kept, cut = record(), record()
    write_segment(tmp_path, 1, line(kept) + line(cut).rstrip("\n"))
    Ledger(tmp_path).close()
    assert rows(tmp_path) == [kept.request_id]


def test_replay_of_records_already_committed_adds_only_the_new_ones(tmp_path, caplog):
    committed, new = [record(), record()], record()
    commit_directly(tmp_path, committed)
    write_segment(tmp_path, 7, "".join(line(r) for r in [*committed, new]))
    with caplog.at_level(logging.WARNING, logger="runtime_host.store.ledger"):
        Ledger(tmp_path).close()
    assert rows(tmp_path) == [r.request_id for r in [*committed, new]]
    assert journal(tmp_path) == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_segments_are_replayed_oldest_first(tmp_path):
    first, second, third = record(), record(), record()
    write_segment(tmp_path, 10, line(third))
    write_segment(tmp_path, 2, line(first))
    write_segment(tmp_path, 9, line(second))
    Ledger(tmp_path).close()
    assert rows(tmp_path) == [first.request_id, second.request_id, third.request_id]


def test_bad_lines_are_reported_and_skipped_not_fatal(tmp_path, caplog):
    good = [record(), record()]
    lacking = {k: v for k, v in asdict(record()).items() if k not in ("billed_ms", "cost_usd")}
    segment = write_segment(tmp_path, 1, line(good[0]) + json.dumps(lacking) + "\n" + "{not json\n"
                            + json.dumps([1, 2]) + "\n" + line(good[1]))
    with caplog.at_level(logging.WARNING, logger="runtime_host.store.ledger"):
        Ledger(tmp_path).close()
    assert rows(tmp_path) == [r.request_id for r in good]
    messages = [m for m in caplog.messages if str(segment) in m]
    assert any("line 2" in m and "billed_ms, cost_usd" in m for m in messages)
    assert any("line 3" in m and "not JSON" in m for m in messages)
    assert any("line 4" in m for m in messages)


def test_read_records_skips_bad_lines_too(tmp_path):
    Ledger(tmp_path).close()
    good = record()
    write_segment(tmp_path, 1, "{not json\n" + line(good) + '{"request_id": "x"}\n')
    assert read_records(tmp_path) == [good]


# --- while the host runs -----------------------------------------------------------
async def test_rotation_lets_the_writer_delete_committed_segments(tmp_path):
    ledger = Ledger(tmp_path, segment_records=3)
    ledger.start(asyncio.get_running_loop())
    try:
        records = [record() for _ in range(10)]
        for r in records:
            await ledger.record(r)
        await eventually(lambda: len(rows(tmp_path)) == 10 and len(journal(tmp_path)) == 1,
                         "all committed and every full segment deleted")
        (current,) = journal(tmp_path)
        assert [json.loads(text)["request_id"] for text in current.read_text().splitlines()] == \
            [records[-1].request_id]            # 10 records, 3 a segment: the fourth segment holds one
    finally:
        ledger.close()
    assert journal(tmp_path) == []


async def test_read_records_sees_journal_and_database_once_each_filtered_and_ordered(tmp_path):
    a = record("x", started_at=10.0)
    b = record("y", started_at=30.0)
    c = record("x", started_at=20.0)
    old = record("x", started_at=5.0)
    ledger = Ledger(tmp_path)                 # not started: what is recorded stays in the journal
    commit_directly(tmp_path, [a, b])
    for r in (b, c, old):                     # b: in both
        ledger.record(r)
    try:
        assert read_records(tmp_path) == [old, a, c, b]
        assert read_records(tmp_path, function="x", since_epoch=10.0) == [a, c]
        assert read_records(tmp_path, function="y") == [b]
    finally:
        ledger.close()


async def test_read_records_writes_and_deletes_nothing(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.record(record())
    write_segment(tmp_path, 99, line(record()) + '{"torn": ')
    before = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    try:
        assert len(read_records(tmp_path)) == 2
        assert {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.iterdir()} == before
    finally:
        ledger.close()


async def test_a_second_ledger_on_a_live_state_dir_leaves_its_journal_alone(tmp_path):
    live = Ledger(tmp_path)
    kept = record()
    live.record(kept)
    (segment,) = journal(tmp_path)
    second = Ledger(tmp_path)                 # does not replay nor delete the live one's segment
    second.start(asyncio.get_running_loop())
    try:
        assert segment.exists() and rows(tmp_path) == []
        mine = record()
        future = second.record(mine)
        assert not future.done()              # no journal: through the writer thread
        await future
        assert rows(tmp_path) == [mine.request_id] and journal(tmp_path) == [segment]
    finally:
        second.close()
        live.close()
    assert sorted(rows(tmp_path)) == sorted([mine.request_id, kept.request_id])
    assert journal(tmp_path) == []


async def test_duplicate_request_is_logged_and_recorded_once(tmp_path, caplog):
    ledger = Ledger(tmp_path)
    ledger.start(asyncio.get_running_loop())
    r = record()
    with caplog.at_level(logging.ERROR, logger="runtime_host.store.ledger"):
        await ledger.record(r)
        await ledger.record(r)
        ledger.close()
    assert rows(tmp_path) == [r.request_id]
    assert any(r.request_id in m and "already holds" in m for m in caplog.messages)


# --- failures ----------------------------------------------------------------------
def refuse_inserts(state_dir: Path) -> None:
    conn = sqlite3.connect(state_dir / LEDGER_FILE)
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON invocations BEGIN SELECT RAISE(ABORT, 'refused'); END")
    conn.close()


def accept_inserts(state_dir: Path) -> None:
    conn = sqlite3.connect(state_dir / LEDGER_FILE, timeout=5)
    conn.execute("DROP TRIGGER refuse")
    conn.close()


async def test_failed_commit_keeps_the_segments_and_is_retried(tmp_path, caplog):
    ledger = Ledger(tmp_path, segment_records=1)
    ledger.start(asyncio.get_running_loop())
    refuse_inserts(tmp_path)
    try:
        first, second = record(), record()
        with caplog.at_level(logging.ERROR, logger="runtime_host.store.ledger"):
            await ledger.record(first)
            await eventually(lambda: any("could not be written" in m for m in caplog.messages), "the failure")
            await ledger.record(second)
            await asyncio.sleep(0.05)
        assert rows(tmp_path) == [] and len(journal(tmp_path)) == 2
        assert read_records(tmp_path) == [first, second]
        accept_inserts(tmp_path)
        third = record()
        await ledger.record(third)
        await eventually(lambda: len(rows(tmp_path)) == 3, "the retried records committed")
        assert rows(tmp_path) == [first.request_id, second.request_id, third.request_id]
        await eventually(lambda: len(journal(tmp_path)) == 1, "the committed segments deleted")
    finally:
        ledger.close()
    assert journal(tmp_path) == []


async def test_journal_write_failure_falls_back_to_the_writer_thread(tmp_path, caplog):
    ledger = Ledger(tmp_path)
    ledger.start(asyncio.get_running_loop())
    blocker = tmp_path / f"{JOURNAL_PREFIX}{1:010d}"
    blocker.mkdir()                           # the first segment cannot be opened for writing
    try:
        r = record()
        with caplog.at_level(logging.WARNING, logger="runtime_host.store.ledger"):
            future = ledger.record(r)
        assert not future.done()
        await future
        assert rows(tmp_path) == [r.request_id]
        assert any("cannot append to the ledger journal" in m for m in caplog.messages)
    finally:
        ledger.close()
        blocker.rmdir()


async def test_when_journal_and_database_both_fail_the_caller_gets_a_ledger_error(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.start(asyncio.get_running_loop())
    blocker = tmp_path / f"{JOURNAL_PREFIX}{1:010d}"
    blocker.mkdir()
    refuse_inserts(tmp_path)
    try:
        with pytest.raises(LedgerError) as caught:
            await ledger.record(record())
        assert str(tmp_path / LEDGER_FILE) in str(caught.value) and "free space" in str(caught.value)
    finally:
        ledger.close()
        blocker.rmdir()


# --- FULL --------------------------------------------------------------------------
async def test_full_mode_commits_through_the_writer_thread_without_a_journal(tmp_path):
    ledger = Ledger(tmp_path, "full")
    ledger.start(asyncio.get_running_loop())
    try:
        r = record()
        future = ledger.record(r)
        assert not future.done()               # done only once committed (with an fsync)
        await future
        assert rows(tmp_path) == [r.request_id]
        assert journal(tmp_path) == []
    finally:
        ledger.close()


def test_full_mode_still_replays_a_journal_left_behind(tmp_path):
    left = record()
    write_segment(tmp_path, 1, line(left))
    Ledger(tmp_path, "full").close()
    assert rows(tmp_path) == [left.request_id] and journal(tmp_path) == []


async def test_full_mode_leaves_the_journal_to_a_normal_host_beside_it(tmp_path):
    full = Ledger(tmp_path, "full")
    normal = Ledger(tmp_path)
    try:
        assert normal.record(record()).done()  # it keeps the journal: answered at once
    finally:
        normal.close()
        full.close()


async def test_record_the_schema_refuses_is_logged_not_fatal(tmp_path, caplog):
    ledger = Ledger(tmp_path)
    ledger.start(asyncio.get_running_loop())
    bad, good = record(outcome="exploded"), record()
    with caplog.at_level(logging.ERROR, logger="runtime_host.store.ledger"):
        await ledger.record(bad)
        await ledger.record(good)
        ledger.close()
    assert rows(tmp_path) == [good.request_id]
    assert any(bad.request_id in m and "'exploded'" in m for m in caplog.messages)
