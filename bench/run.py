"""`make bench`: every benchmark, one table, and the figures as JSON under
bench/results/ with the machine and the date. Speed is only ever compared
with a reference measured in the same run (ratios), never asserted.

    python bench/run.py [--smoke] [--only warm,...]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ledger  # noqa: E402
import warm  # noqa: E402
from common import REPO, machine  # noqa: E402

BENCHMARKS = {"warm": warm, "ledger": ledger}


def fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def print_warm(r: dict) -> None:
    floor = r["floor_loopback_aiohttp"]
    print("\nWarm invoke latency (ms), 100-byte event, python (bench-python), sequential, one keep-alive connection")
    print(f"{'':34} {'p50':>8} {'p90':>8} {'p99':>8} {'freezes/inv':>12} {'p50 / floor':>12}")
    rows = [("floor: bare aiohttp on loopback", floor)] + [
        (f"ours, {k.replace('_', ' ')}", r[k]) for k in
        ("freeze_on_back_to_back", "freeze_off_back_to_back", "freeze_on_idle_gap", "freeze_off_idle_gap")]
    for label, s in rows:
        print(f"{label:34} {s['p50']:8.3f} {s['p90']:8.3f} {s['p99']:8.3f} "
              f"{fmt(s.get('freezes_per_invocation', '-')):>12} {s['p50'] / floor['p50']:11.2f}x")
    print(f"freeze+thaw cost at p50: back to back {r['freeze_thaw_cost_p50_ms_back_to_back']:+.3f} ms, "
          f"with an idle gap (every call thaws) {r['freeze_thaw_cost_p50_ms_idle_gap']:+.3f} ms (target: <= 0.3 ms)")


def print_ledger(r: dict) -> None:
    print("\nBilling ledger: record handed to the writer -> commit confirmed on the loop (ms)")
    print(f"{'':24} {'p50':>8} {'p90':>8} {'p99':>8} {'records/s':>10}")
    for key in ("normal_x1", "normal_x32", "full_x1", "full_x32"):
        sync, conc = key.split("_x")
        s = r[key]
        print(f"{f'sync={sync}, {conc} at once':24} {s['p50']:8.3f} {s['p90']:8.3f} {s['p99']:8.3f} {s['records_per_s']:10.0f}")


PRINTERS = {"warm": print_warm, "ledger": print_ledger}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few seconds: checks every figure is produced")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated: " + ", ".join(BENCHMARKS))
    parser.add_argument("--out", default=None, help="JSON file (default: bench/results/<date>.json)")
    args = parser.parse_args()
    results = {"machine": machine(), "smoke": args.smoke}
    for name in args.only.split(","):
        started = time.monotonic()
        results[name] = BENCHMARKS[name].run(**({"n": 30, "warmup": 10} if args.smoke else {}))
        results[name]["wall_s"] = round(time.monotonic() - started, 1)
        PRINTERS[name](results[name])
    m = results["machine"]
    print(f"\nmachine: {m['cores']} cores, kernel {m['kernel']}, Docker {m['docker']}, cgroup {m['cgroup']}, {m['date']}")
    out = Path(args.out) if args.out else REPO / "bench" / "results" / (
        ("smoke-" if args.smoke else "") + time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
