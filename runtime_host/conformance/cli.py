"""`runtime-host conformance PATH`: arguments, output, exit status.

Exit status: 0 when no scenario failed (warnings and skips allowed), 1 when
one did, 2 for a usage error (bad PATH, unknown scenario), 3 when the host
cannot start (no Docker engine, an image that cannot be built).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runtime_host.core.config import ConfigError
from runtime_host.event_loop import run_on_uvloop
from runtime_host.core.protocol import INIT_TIMEOUT_S
from runtime_host.conformance import report as reports
from runtime_host.conformance.target import DEFAULT_HANDLER, load_target

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_HOST = 0, 1, 2, 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    from runtime_host.conformance.scenarios import SCENARIOS

    names = ", ".join(s.name for s in SCENARIOS)
    p.add_argument("path", metavar="PATH", help="a function folder (holding function.toml) or a bootstrap executable")
    p.add_argument("--handler", dest="function_handler", default=None,
                   help=f"_HANDLER for a bare bootstrap (default: {DEFAULT_HANDLER}); for a folder, overrides "
                        "function.toml")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--junit", metavar="FILE", help="also write the results as JUnit XML to FILE")
    p.add_argument("--only", metavar="NAME", action="append",
                   help=f"run only this scenario (repeatable, or comma-separated); scenarios: {names}")
    p.add_argument("--skip", metavar="NAME", action="append", help="do not run this scenario (repeatable)")
    p.add_argument("--init-timeout-s", type=float, default=INIT_TIMEOUT_S,
                   help="the init limit asks-for-work allows (default: 10, as Lambda)")
    p.add_argument("--state-dir", default=None,
                   help="keep the run's logs and ledger here (default: a temporary folder, removed afterwards)")


def _names(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def main(args: argparse.Namespace) -> int:
    from runtime_host.host import HostError
    from runtime_host.conformance.runner import run_conformance, select
    from runtime_host.conformance.scenarios import SCENARIOS

    try:
        select([s.name for s in SCENARIOS], _names(args.only), _names(args.skip))
        target = load_target(args.path, args.function_handler)
    except (ConfigError, ValueError) as exc:
        print(f"runtime-host: {exc}", file=sys.stderr)
        return EXIT_USAGE

    def progress(line: str) -> None:
        print(f"images: {line}", file=sys.stderr, flush=True)

    def on_result(r) -> None:
        print(f"conformance: {r.name}: {r.verdict} ({r.duration_s:.1f} s)", file=sys.stderr, flush=True)

    print(f"conformance: {target.describe()}", file=sys.stderr, flush=True)
    try:
        report = run_on_uvloop(run_conformance(
            target, only=_names(args.only), skip=_names(args.skip), init_timeout_s=args.init_timeout_s,
            state_dir=Path(args.state_dir) if args.state_dir else None, image_progress=progress,
            on_result=on_result))
    except HostError as exc:
        print(f"runtime-host: {exc}", file=sys.stderr)
        return EXIT_HOST
    finally:
        target.cleanup()
    sys.stdout.write(reports.as_json(report) if args.json else reports.table(report))
    if args.junit:
        Path(args.junit).write_text(reports.junit_xml(report), encoding="utf-8")
    return EXIT_FAILED if report.failed else EXIT_OK
