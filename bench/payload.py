"""Payload: the round trip of large events (a JSON string of the given
size) through the host; the handler echoes the event back, so the bytes
cross the Invoke API and the Runtime API both ways."""
from __future__ import annotations

import json

from common import BENCH_FUNCTIONS, Caller, Host, invoke_path, percentiles

FUNCTION = "bench-python"
SIZES = (1_048_576, 6_000_000)


def event_of(size: int) -> bytes:
    body = json.dumps("x" * (size - 2)).encode()
    assert len(body) == size
    return body


def measure(port: int, path: str, size: int, n: int) -> dict:
    caller = Caller(port, path)
    body = event_of(size)
    samples = []
    for _ in range(n + 2):
        status, answer, ms = caller.call(body)
        assert status == 200 and len(answer) > size, (status, answer[:300])
        samples.append(ms)
    caller.close()
    return percentiles(samples[2:])


def run(n: int = 20, warmup: int = 0) -> dict:
    n = 2 if n < 100 else min(n, 20)         # smoke: two of each
    with Host(BENCH_FUNCTIONS) as host:
        return {f"ours_{size}": measure(host.port, invoke_path(FUNCTION), size, n) for size in SIZES}
