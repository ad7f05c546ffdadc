"""The report behind `runtime-host billing`: what the ledger says was spent.

Owns: reading `--since` (a duration ago or an ISO 8601 time), turning ledger
records into one summary row per function plus a TOTAL row, and rendering
those rows as a table, JSON or CSV.
Must not: write to the ledger, or recompute what an invocation is billed;
billed_ms, gb_s and cost_usd are summed exactly as the ledger recorded them
(billing.py computed them when the invocation finished).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sqlite3
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from runtime_host.store.ledger import LEDGER_FILE, OUTCOMES, LedgerError, Record, read_records

EXIT_OK, EXIT_USAGE = 0, 2
DEFAULT_STATE_DIR = ".runtime-host"
FORMATS = ("table", "json", "csv")
TOTAL = "TOTAL"
ERROR_OUTCOMES = tuple(outcome for outcome in OUTCOMES if outcome != "success")

# The keys of every summary row, in the order the JSON and CSV show them.
ROW_KEYS = (
    "function",
    "invocations",
    "errors",                   # every outcome but success: the sum of the next ones
    *ERROR_OUTCOMES,            # function_error, timeout, oom, crash
    "cold_starts",
    "p50_duration_ms",          # nearest rank over duration_ms (INIT not included)
    "p99_duration_ms",
    "billed_s",
    "gb_s",
    "cost_usd",
    "avg_max_memory_used_mb",
    "memory_mb",                # the function's memory size (its newest record's); None on TOTAL
)

# --- --since ---------------------------------------------------------------------
SECONDS_PER_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+)([smhd])")
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}"
                       r"([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}(:?\d{2})?)?)?")
SINCE_FORMS = ("a duration ago: 90s, 30m, 2h, 7d; or an ISO 8601 time: 2026-11-23, 2026-11-23T13:00, "
               "2026-11-23T13:00:00Z, 2026-11-23T13:00:00+01:00 (no offset means UTC)")


def parse_since(text: str, now_epoch: float) -> float:
    """The epoch second `text` names: `now_epoch` minus a duration, or an absolute time."""
    stripped = text.strip()
    duration = _DURATION.fullmatch(stripped)
    if duration:
        return now_epoch - int(duration[1]) * SECONDS_PER_UNIT[duration[2]]
    if _ISO_TIME.fullmatch(stripped):
        try:
            moment = datetime.fromisoformat(stripped[:-1] + "+00:00" if stripped[-1] in "Zz" else stripped)
        except ValueError as exc:          # matches the shape but is no real time, e.g. month 13
            raise ValueError(f"{text!r} is not a time ({exc}); expected {SINCE_FORMS}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    raise ValueError(f"{text!r} is not a time; expected {SINCE_FORMS}")


# --- summary -----------------------------------------------------------------------
def _nearest_rank(sorted_values: list[float], percent: float) -> float:
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _row(function: str, records: list[Record], memory_mb: int | None) -> dict:
    durations_ms = sorted(r.duration_ms for r in records)
    row = {
        "function": function,
        "invocations": len(records),
        "errors": sum(r.outcome != "success" for r in records),
        **{outcome: sum(r.outcome == outcome for r in records) for outcome in ERROR_OUTCOMES},
        "cold_starts": sum(r.cold for r in records),
        "p50_duration_ms": _nearest_rank(durations_ms, 50),
        "p99_duration_ms": _nearest_rank(durations_ms, 99),
        "billed_s": sum(r.billed_ms for r in records) / 1000,
        "gb_s": math.fsum(r.gb_s for r in records),
        "cost_usd": math.fsum(r.cost_usd for r in records),
        "avg_max_memory_used_mb": round(sum(r.max_memory_used_mb for r in records) / len(records), 1),
        "memory_mb": memory_mb,
    }
    return row


def summarize(records: list[Record]) -> list[dict]:
    """One row per function, sorted by name, then the TOTAL row; no rows for no records."""
    if not records:
        return []
    by_function: dict[str, list[Record]] = {}
    for record in sorted(records, key=lambda r: r.started_at):
        by_function.setdefault(record.function, []).append(record)
    rows = [_row(name, by_function[name], by_function[name][-1].memory_mb) for name in sorted(by_function)]
    rows.append(_row(TOTAL, list(records), None))
    return rows


# --- rendering ---------------------------------------------------------------------
SIGNIFICANT_DIGITS = 3          # tiny costs show as $0.0000123, never $0.00
MAX_DECIMALS = 10


def _decimals_for(values: list[float], least: int) -> int:
    """Enough decimals that the smallest non-zero value shows SIGNIFICANT_DIGITS digits."""
    decimals = least
    for value in values:
        if value:
            needed = SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(value)))
            decimals = max(decimals, min(needed, MAX_DECIMALS))
    return decimals


def _memory(row: dict) -> str:
    used = f"{row['avg_max_memory_used_mb']:,.1f}"
    return used if row["memory_mb"] is None else f"{used}/{row['memory_mb']:,}"


def _count(key: str):
    return lambda row, d: f"{row[key]:,}"


# (title, the cell of a row given `d`, the column's decimals where ADAPTIVE_DECIMALS sets them)
TABLE_COLUMNS = (
    ("FUNCTION", lambda row, d: row["function"]),
    ("INVOKES", _count("invocations")),
    ("ERRORS", _count("errors")),
    *((outcome.replace("function_error", "fn_error").upper(), _count(outcome)) for outcome in ERROR_OUTCOMES),
    ("COLD", _count("cold_starts")),
    ("P50 MS", lambda row, d: f"{row['p50_duration_ms']:,.2f}"),
    ("P99 MS", lambda row, d: f"{row['p99_duration_ms']:,.2f}"),
    ("BILLED S", lambda row, d: f"{row['billed_s']:,.3f}"),
    ("GB-S", lambda row, d: f"{row['gb_s']:,.{d}f}"),
    ("COST", lambda row, d: f"${row['cost_usd']:,.{d}f}"),
    ("MEM USED/SIZE MB", lambda row, d: _memory(row)),
)
ADAPTIVE_DECIMALS = {"GB-S": ("gb_s", 2), "COST": ("cost_usd", 2)}   # title: (key, at least)
COLUMN_GAP = "  "


def _table(rows: list[dict]) -> str:
    decimals = {title: _decimals_for([row[key] for row in rows], least)
                for title, (key, least) in ADAPTIVE_DECIMALS.items()}
    cells = [[cell(row, decimals.get(title, 0)) for title, cell in TABLE_COLUMNS] for row in rows]
    titles = [title for title, _ in TABLE_COLUMNS]
    widths = [max(len(title), *(len(line[i]) for line in cells)) for i, title in enumerate(titles)]

    def line(values: list[str]) -> str:     # the function name is text (left); every other column a number
        return COLUMN_GAP.join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))

    body = [line(values) for values in cells]
    rule = "-" * len(body[0])
    return "\n".join([line(titles), *body[:-1], rule, body[-1]])


def _csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=ROW_KEYS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().rstrip("\n")


def render(rows: list[dict], fmt: str) -> str:
    """The rows (as from summarize, TOTAL last) as a table, JSON or CSV; no trailing newline."""
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        return _csv(rows)
    if fmt == "table":
        return _table(rows) if rows else "(no invocations)"
    raise ValueError(f"report format {fmt!r} is not known; expected one of {', '.join(FORMATS)}")


# --- the command -------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--function", default=None, help="only this function (default: every function)")
    parser.add_argument("--since", default=None,
                        help="only invocations started since then: a duration ago (90s, 30m, 2h, 7d) or an "
                             "ISO 8601 time (2026-11-23, 2026-11-23T13:00, 2026-11-23T13:00:00Z; no offset "
                             "means UTC) (default: every invocation recorded)")
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="table to read, json or csv for other programs (default: table)")
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                        help=f"the state directory holding the billing ledger (default: {DEFAULT_STATE_DIR})")


def _nothing_matches(state_dir: Path, args: argparse.Namespace) -> str:
    where = f" for function {args.function!r}" if args.function else ""
    when = f" since {args.since}" if args.since else ""
    return f"no invocations recorded{where}{when} in {state_dir / LEDGER_FILE}"


def main(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    try:
        since_epoch = parse_since(args.since, time.time()) if args.since else None
    except ValueError as exc:
        print(f"runtime-host: --since {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        records = read_records(state_dir, function=args.function, since_epoch=since_epoch)
    except LedgerError as exc:
        print(f"runtime-host: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except sqlite3.Error as exc:            # e.g. the file is not a database; read_records lets that through
        print(f"runtime-host: cannot read the billing ledger {state_dir / LEDGER_FILE}: {exc}; "
              "move it away to start a new one", file=sys.stderr)
        return EXIT_USAGE
    if not records:
        message = _nothing_matches(state_dir, args)
        if args.format == "table":
            print(message)
        else:       # stdout stays a valid (empty) document; the sentence goes to stderr
            print(render([], args.format))
            print(f"runtime-host: {message}", file=sys.stderr)
        return EXIT_OK
    print(render(summarize(records), args.format))
    return EXIT_OK
