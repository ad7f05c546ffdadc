"""What the billing ledger costs an invocation: the time from handing a
record to the writer thread to its commit being confirmed on the event loop
(what a caller's answer waits for), one at a time and 32 at once (group
commit), for synchronous=NORMAL and FULL."""
from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from common import percentiles

from runtime_host.ledger import Ledger, Record


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
            started = time.perf_counter()
            await ledger.record(_record())
            samples.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        for _ in range(max(1, n // concurrency)):
            await asyncio.gather(*(one() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        ledger.close()
    stats = percentiles(samples)
    stats["records_per_s"] = len(samples) / wall
    return stats


def run(n: int = 2000, warmup: int = 0) -> dict:
    return {f"{sync.lower()}_x{c}": asyncio.run(_measure(sync, n, c))
            for sync in ("NORMAL", "FULL") for c in (1, 32)}
