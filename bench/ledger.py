"""What the billing ledger costs an invocation: the time from handing a
record over (`Ledger.record`) to its future being done on the event loop,
which is what a caller's answer waits for, one at a time and 32 at once.

- synchronous=NORMAL: the future is done once the record's line is appended
  to the journal (one os.write, on the loop); the writer thread commits it to
  SQLite later, off the caller's path.
- synchronous=FULL: the record goes to the writer thread, which commits it
  with an fsync (32 at once: one group commit) and wakes the loop.

The record is built before the clock starts: only the ledger is measured.
`close_ms` is what closing the ledger then takes: committing what the writer
has not yet, the WAL checkpoint and deleting the journal."""
from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from common import percentiles

from runtime_host.store.ledger import Ledger, Record


def _record() -> Record:
    return Record(request_id=str(uuid.uuid4()), function="bench", version="$LATEST", started_at=time.time(),
                  duration_ms=1.23, billed_ms=2, init_ms=None, memory_mb=128, max_memory_used_mb=40, cold=False,
                  outcome="success", error_type=None, architecture="x86_64", gb_s=0.00025, cost_usd=2.04e-7)


async def _measure(sync: str, n: int, concurrency: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        ledger = Ledger(Path(d), sync)
        ledger.start(asyncio.get_running_loop())
        samples = []

        async def one() -> None:
            record = _record()
            started = time.perf_counter()
            await ledger.record(record)
            samples.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        for _ in range(max(1, n // concurrency)):
            await asyncio.gather(*(one() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        started = time.perf_counter()
        ledger.close()
        close_ms = (time.perf_counter() - started) * 1000
    stats = percentiles(samples)
    stats["records_per_s"] = len(samples) / wall
    stats["close_ms"] = close_ms
    return stats


def run(n: int = 2000, warmup: int = 0) -> dict:
    return {f"{sync.lower()}_x{c}": asyncio.run(_measure(sync, n, c))
            for sync in ("NORMAL", "FULL") for c in (1, 32)}
