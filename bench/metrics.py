"""What watching the host costs the invoke path: warm invoke latency of the
python example (bench-python, 100-byte event, one keep-alive connection) on
one host, in turns without and with a scraper polling GET /metrics every
SCRAPE_INTERVAL_S (as Prometheus would, only more often than its 15 s
default), paired turn by turn so that the machine's drift falls on both.

Also, in this process: what the invoke path pays per invocation for the
metrics (HostMetrics.observe of one billing record) and for the events file
beside each function's log (LogSink.write of a START line with its stream
and request id, against the plain log alone), in microseconds."""
from __future__ import annotations

import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from common import BENCH_FUNCTIONS as FUNCTIONS
from common import EVENT_100_BYTES, Caller, Host, invoke_path, percentiles

FUNCTION = "bench-python"
SCRAPE_INTERVAL_S = 1.0
BLOCK = 2000                  # calls per turn: a few seconds, several scrapes in each "with" turn
ROUNDS = 5


class Scraper:
    """GET /metrics every interval until stopped; keeps each scrape's time and size."""

    def __init__(self, port: int, interval_s: float = SCRAPE_INTERVAL_S):
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.interval_s = interval_s
        self.ms: list[float] = []
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            with urllib.request.urlopen(self.url, timeout=30) as r:
                self.bytes = len(r.read())
            self.ms.append((time.perf_counter() - started) * 1000)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "Scraper":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def measure(port: int, n: int, warmup: int, block: int) -> dict:
    """Turns of `block` calls, alternately without and with the scraper."""
    samples = {"no_scraper": [], "scraper_1s": []}
    turn_p50s = {"no_scraper": [], "scraper_1s": []}
    scrapes: list[float] = []
    size = 0
    caller = Caller(port, invoke_path(FUNCTION))
    try:
        for _ in range(warmup):
            status, body, _ = caller.call(EVENT_100_BYTES)
            assert status == 200, (status, body[:200])
        done = 0
        while done < n:
            turn_size = min(block, n - done)
            for label in samples:
                scraper = Scraper(port) if label == "scraper_1s" else None
                if scraper is not None:
                    scraper.__enter__()
                turn = []
                try:
                    for _ in range(turn_size):
                        status, body, ms = caller.call(EVENT_100_BYTES)
                        assert status == 200, (status, body[:200])
                        turn.append(ms)
                finally:
                    if scraper is not None:
                        scraper.__exit__()
                        scrapes.extend(scraper.ms)
                        size = scraper.bytes
                samples[label].extend(turn)
                turn_p50s[label].append(round(percentiles(turn)["p50"], 4))
            done += turn_size
    finally:
        caller.close()
    out = {label: {**percentiles(s), "turn_p50s": turn_p50s[label]} for label, s in samples.items()}
    diffs = sorted(w - o for w, o in zip(turn_p50s["scraper_1s"], turn_p50s["no_scraper"]))
    out["p50_diff_ms"] = out["scraper_1s"]["p50"] - out["no_scraper"]["p50"]
    out["turn_p50_diff_ms"] = {"median": statistics.median(diffs), "min": diffs[0], "max": diffs[-1],
                               "turns": len(diffs)}
    out["scrape_ms"] = percentiles(scrapes) if scrapes else None
    out["scrapes"] = len(scrapes)
    out["scrape_bytes"] = size
    return out


def observe_cost_us(n: int = 100_000) -> float:
    """HostMetrics.observe of one (warm, successful) record: µs per call."""
    from runtime_host.api.metrics import HostMetrics
    from runtime_host.store.ledger import Record

    metrics = HostMetrics(scheduler=None)
    record = Record(request_id="r", function="fn", version="$LATEST", started_at=time.time(), duration_ms=1.2,
                    billed_ms=2, init_ms=None, memory_mb=128, max_memory_used_mb=40, cold=False, outcome="success",
                    error_type=None, architecture="x86_64", gb_s=0.00025, cost_usd=0.0000002)
    metrics.observe(record)
    started = time.perf_counter()
    for _ in range(n):
        metrics.observe(record)
    return (time.perf_counter() - started) / n * 1e6


def log_write_cost_us(n: int = 50_000) -> dict:
    """LogSink.write of a START line: with its stream and request id (the
    events file too) and, for reference, the plain log's write alone."""
    from runtime_host.store.logs import LogSink

    line = b"START RequestId: 0123456789abcdef0123456789abcdef Version: $LATEST\n"
    stream = "2026/12/07/[$LATEST]" + "0" * 32
    with tempfile.TemporaryDirectory() as tmp:
        sink = LogSink(Path(tmp), echo=None)
        sink.write("fn", line, stream=stream, request_id="r")
        started = time.perf_counter()
        for _ in range(n):
            sink.write("fn", line, stream=stream, request_id="r")
        with_events = (time.perf_counter() - started) / n * 1e6
        plain = open(Path(tmp) / "plain.log", "ab", buffering=0)
        started = time.perf_counter()
        for _ in range(n):
            plain.write(line)
        alone = (time.perf_counter() - started) / n * 1e6
        plain.close()
        sink.close()
    return {"with_events_file_us": with_events, "plain_log_write_us": alone}


def run(n: int = 10000, warmup: int = 500, smoke: bool = False) -> dict:
    block = min(BLOCK, n)
    with Host(FUNCTIONS) as host:
        results = measure(host.port, block * (ROUNDS if n >= BLOCK else 2), warmup, block)
    results["block"] = block
    results["scrape_interval_s"] = SCRAPE_INTERVAL_S
    results["observe_us"] = observe_cost_us(10_000 if smoke else 100_000)
    results["log_write"] = log_write_cost_us(5_000 if smoke else 50_000)
    return results
