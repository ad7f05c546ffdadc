"""`runtime-host billing`: --since, the per-function summary and its three
formats, read from a real ledger written in tmp_path (no Docker, no host)."""
from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import random
import time
from dataclasses import astuple
from datetime import datetime, timezone

import pytest

from runtime_host.store import ledger
from runtime_host.core.billing import billed_duration_ms, cost_usd, gb_seconds, load_prices
from runtime_host.store.billing_report import (ROW_KEYS, TOTAL, add_arguments, main, parse_since, render,
                                         summarize)
from runtime_host.store.ledger import LEDGER_FILE, Ledger, Record

NOW_EPOCH = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc).timestamp()
PRICE = load_prices()["x86_64"]
_request_ids = iter(range(10**9))


def record(function: str = "hello", duration_ms: float = 10.0, outcome: str = "success", cold: bool = False,
           started_at: float = NOW_EPOCH, memory_mb: int = 128, max_memory_used_mb: int = 50) -> Record:
    init_ms = 100.0 if cold else None
    billed_ms = billed_duration_ms(duration_ms, init_ms)
    return Record(request_id=f"req-{next(_request_ids)}", function=function, version="$LATEST",
                  started_at=started_at, duration_ms=duration_ms, billed_ms=billed_ms, init_ms=init_ms,
                  memory_mb=memory_mb, max_memory_used_mb=max_memory_used_mb, cold=cold, outcome=outcome,
                  error_type=None if outcome == "success" else "Runtime.Error", architecture="x86_64",
                  gb_s=gb_seconds(billed_ms, memory_mb), cost_usd=cost_usd(billed_ms, memory_mb, PRICE))


def write_ledger(state_dir, records: list[Record]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    conn = ledger.connect(state_dir / LEDGER_FILE)
    try:
        for r in records:
            conn.execute(ledger.INSERT, astuple(r))
    finally:
        conn.close()


def args(state_dir, function=None, since=None, fmt="table") -> argparse.Namespace:
    return argparse.Namespace(function=function, since=since, format=fmt, state_dir=str(state_dir))


def row_of(rows: list[dict], function: str) -> dict:
    return next(row for row in rows if row["function"] == function)


# --- --since -----------------------------------------------------------------------
@pytest.mark.parametrize("text, seconds_ago", [("90s", 90), ("30m", 1800), ("2h", 7200), ("7d", 7 * 86400)])
def test_since_duration_is_counted_back_from_now(text, seconds_ago):
    assert parse_since(text, NOW_EPOCH) == NOW_EPOCH - seconds_ago


def test_since_date_alone_is_midnight_utc():
    assert parse_since("2026-11-23", NOW_EPOCH) == datetime(2026, 11, 23, tzinfo=timezone.utc).timestamp()


def test_since_time_without_offset_is_utc():
    assert parse_since("2026-11-23T13:00", NOW_EPOCH) == datetime(2026, 11, 23, 13, tzinfo=timezone.utc).timestamp()


def test_since_z_suffix_is_utc():
    assert parse_since("2026-11-23T13:00:00Z", NOW_EPOCH) == datetime(2026, 11, 23, 13, tzinfo=timezone.utc).timestamp()


def test_since_offset_is_honoured():
    assert parse_since("2026-11-23T14:00:00+01:00", NOW_EPOCH) == \
        datetime(2026, 11, 23, 13, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("text", ["yesterday", "5 minutes", "-2h", "2w", "1.5h", "", "23/11/2026",
                                  "2026-13-01", "2026-11-23x13:00"])
def test_since_in_another_form_is_refused_quoting_it_and_the_accepted_forms(text):
    with pytest.raises(ValueError) as caught:
        parse_since(text, NOW_EPOCH)
    assert repr(text) in str(caught.value)
    assert "30m" in str(caught.value) and "2026-11-23T13:00:00Z" in str(caught.value)


# --- the summary -------------------------------------------------------------------
def test_every_row_has_exactly_the_row_keys_in_order():
    rows = summarize([record("a"), record("b")])
    assert all(tuple(row) == ROW_KEYS for row in rows)


def test_one_row_per_function_sorted_by_name_then_total():
    rows = summarize([record("zeta"), record("alpha"), record("mid"), record("alpha")])
    assert [row["function"] for row in rows] == ["alpha", "mid", "zeta", TOTAL]


def test_no_records_make_no_rows():
    assert summarize([]) == []


def test_billed_seconds_gb_seconds_and_cost_are_the_ledger_figures_summed_per_function():
    records = [record("a", 15.74), record("a", 200.01, cold=True), record("b", 1.0, memory_mb=1024)]
    a = row_of(summarize(records), "a")
    assert a["billed_s"] == pytest.approx((16 + 301) / 1000)
    assert a["gb_s"] == pytest.approx(records[0].gb_s + records[1].gb_s)
    assert a["cost_usd"] == pytest.approx(records[0].cost_usd + records[1].cost_usd)
    assert a["invocations"] == 2


def test_errors_count_every_outcome_but_success_and_each_outcome_separately():
    outcomes = ["success", "success", "function_error", "function_error", "timeout", "oom", "crash"]
    row = row_of(summarize([record("a", outcome=o) for o in outcomes]), "a")
    assert (row["errors"], row["function_error"], row["timeout"], row["oom"], row["crash"]) == (5, 2, 1, 1, 1)


def test_cold_starts_are_counted():
    row = row_of(summarize([record(cold=True), record(), record(cold=True)]), "hello")
    assert row["cold_starts"] == 2


def test_duration_percentiles_are_nearest_rank():
    durations = [float(ms) for ms in range(1, 101)]
    random.Random(7).shuffle(durations)
    row = row_of(summarize([record(duration_ms=ms) for ms in durations]), "hello")
    assert (row["p50_duration_ms"], row["p99_duration_ms"]) == (50.0, 99.0)


def test_p99_of_few_invocations_is_the_slowest():
    row = row_of(summarize([record(duration_ms=ms) for ms in (3.0, 1.0, 9.5, 2.0)]), "hello")
    assert (row["p50_duration_ms"], row["p99_duration_ms"]) == (2.0, 9.5)


def test_memory_is_the_average_peak_and_the_function_memory_size():
    row = row_of(summarize([record(max_memory_used_mb=m, memory_mb=256) for m in (40, 50, 61)]), "hello")
    assert (row["avg_max_memory_used_mb"], row["memory_mb"]) == (50.3, 256)


def test_total_row_adds_up_every_function():
    records = [record("a", 10.0, outcome="timeout"), record("b", 20.0, cold=True), record("b", 30.0)]
    total = summarize(records)[-1]
    assert (total["invocations"], total["errors"], total["timeout"], total["cold_starts"]) == (3, 1, 1, 1)
    assert total["cost_usd"] == pytest.approx(sum(r.cost_usd for r in records))
    assert total["billed_s"] == pytest.approx(sum(r.billed_ms for r in records) / 1000)
    assert total["memory_mb"] is None


# --- formats -----------------------------------------------------------------------
def test_json_is_a_list_of_objects_with_numbers_as_numbers():
    rows = summarize([record("a"), record("b", outcome="oom")])
    parsed = json.loads(render(rows, "json"))
    assert [obj["function"] for obj in parsed] == ["a", "b", TOTAL]
    assert isinstance(parsed[-1]["invocations"], int) and isinstance(parsed[-1]["cost_usd"], float)
    assert parsed[-1]["errors"] == 1


def test_csv_has_the_header_and_a_line_per_row():
    rows = summarize([record("a"), record("b"), record("c")])
    lines = list(csv.reader(io.StringIO(render(rows, "csv"))))
    assert lines[0] == list(ROW_KEYS)
    assert len(lines) == 1 + 4
    assert lines[-1][0] == TOTAL


def test_table_columns_are_aligned_and_total_sits_under_a_rule():
    rows = summarize([record("a-long-function-name", 1234.5), *(record("b", 5.0) for _ in range(1500))])
    lines = render(rows, "table").splitlines()
    header, body, rule, total = lines[0], lines[1:-2], lines[-2], lines[-1]
    assert len({len(line) for line in lines}) == 1          # every line as wide: columns padded
    assert set(rule) == {"-"}
    assert total.startswith(TOTAL)
    cost_end = header.index("COST") + len("COST")            # numbers are right-aligned under their title
    invokes_end = header.index("INVOKES") + len("INVOKES")
    for line in [*body, total]:
        assert line[cost_end - 1].isdigit() and line[cost_end] == " "
        assert line[invokes_end - 1].isdigit()


def test_table_counts_have_thousands_separators_and_durations_two_decimals():
    rows = summarize([record("a", 5.0) for _ in range(1500)])
    table = render(rows, "table")
    assert "1,500" in table
    assert "5.00" in table


def test_table_shows_a_tiny_cost_with_significant_digits_not_zero():
    tiny = record("a", 1.0)                   # one 1 ms invoke at 128 MB: about $0.000000202
    table = render(summarize([tiny]), "table")
    assert "$0.00 " not in table and "$0.000000202" in table


def test_table_memory_column_shows_average_peak_over_size():
    table = render(summarize([record(max_memory_used_mb=56, memory_mb=128)]), "table")
    assert "56.0/128" in table


# --- the command -------------------------------------------------------------------
def test_function_filter_reports_only_that_function(tmp_path, capsys):
    write_ledger(tmp_path, [record("a"), record("b"), record("b")])
    assert main(args(tmp_path, function="b", fmt="json")) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["function"] for row in rows] == ["b", TOTAL]
    assert rows[-1]["invocations"] == 2


def test_relative_since_leaves_out_older_invocations(tmp_path, capsys):
    now = time.time()
    write_ledger(tmp_path, [record("a", started_at=now - 3 * 3600), record("a", started_at=now - 60),
                            record("b", started_at=now - 10)])
    assert main(args(tmp_path, since="2h", fmt="json")) == 0
    total = json.loads(capsys.readouterr().out)[-1]
    assert total["invocations"] == 2


def test_absolute_since_leaves_out_older_invocations(tmp_path, capsys):
    write_ledger(tmp_path, [record("a", started_at=NOW_EPOCH - 86400), record("a", started_at=NOW_EPOCH),
                            record("a", started_at=NOW_EPOCH + 1)])
    assert main(args(tmp_path, since="2026-11-23T12:00:00Z", fmt="json")) == 0
    assert json.loads(capsys.readouterr().out)[-1]["invocations"] == 2


def test_table_report_is_printed_to_stdout(tmp_path, capsys):
    write_ledger(tmp_path, [record("a"), record("b")])
    assert main(args(tmp_path)) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("FUNCTION") and out.splitlines()[-1].startswith(TOTAL)


async def test_report_reads_what_the_ledger_writer_committed(tmp_path, capsys):
    writer = Ledger(tmp_path)
    writer.start(asyncio.get_running_loop())
    try:
        await asyncio.gather(*(writer.record(record("a", float(ms))) for ms in range(1, 11)))
    finally:
        writer.close()
    assert main(args(tmp_path, fmt="csv")) == 0
    lines = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    total = dict(zip(lines[0], lines[-1]))
    assert (total["invocations"], total["p50_duration_ms"], total["p99_duration_ms"]) == ("10", "5.0", "10.0")


def test_missing_ledger_exits_2_naming_its_path(tmp_path, capsys):
    assert main(args(tmp_path / "nowhere")) == 2
    err = capsys.readouterr().err
    assert err.startswith("runtime-host: ") and str(tmp_path / "nowhere" / LEDGER_FILE) in err


def test_ledger_that_is_not_a_database_exits_2_naming_its_path(tmp_path, capsys):
    (tmp_path / LEDGER_FILE).write_bytes(b"this is not sqlite" * 100)
    assert main(args(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("runtime-host: ") and str(tmp_path / LEDGER_FILE) in err


def test_bad_since_exits_2_naming_the_text(tmp_path, capsys):
    write_ledger(tmp_path, [record()])
    assert main(args(tmp_path, since="last tuesday")) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("runtime-host: ") and "'last tuesday'" in captured.err
    assert captured.out == ""


def test_no_matching_invocations_say_so_and_exit_0(tmp_path, capsys):
    write_ledger(tmp_path, [record("a")])
    assert main(args(tmp_path, function="nosuch")) == 0
    out = capsys.readouterr().out
    assert "no invocations recorded for function 'nosuch'" in out


def test_no_matching_invocations_in_json_print_an_empty_list(tmp_path, capsys):
    write_ledger(tmp_path, [record("a")])
    assert main(args(tmp_path, function="nosuch", fmt="json")) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == []
    assert "no invocations recorded" in captured.err


def test_no_matching_invocations_in_csv_print_only_the_header(tmp_path, capsys):
    write_ledger(tmp_path, [record("a")])
    assert main(args(tmp_path, since="2099-01-01", fmt="csv")) == 0
    assert list(csv.reader(io.StringIO(capsys.readouterr().out))) == [list(ROW_KEYS)]


def test_arguments_default_to_a_table_of_everything_in_the_default_state_dir():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parsed = parser.parse_args([])
    assert (parsed.function, parsed.since, parsed.format, parsed.state_dir) == (None, None, "table", ".runtime-host")


def test_format_must_be_table_json_or_csv():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--format", "yaml"])
