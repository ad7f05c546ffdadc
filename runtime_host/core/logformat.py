"""The platform's lines in a function's log, in Lambda's text format (spec §5.3).

Owns: START, END, the timeout line, the UTC timestamp Lambda prints, and the
log tail `X-Amz-Log-Result` carries.
Must not: write anything anywhere (store/logs.py keeps the files).
"""
from __future__ import annotations

import time

from runtime_host.core.protocol import LATEST, LOG_TAIL_BYTES


def start_line(request_id: str, version: str = LATEST) -> bytes:
    return f"START RequestId: {request_id} Version: {version}\n".encode()


def end_line(request_id: str) -> bytes:
    return f"END RequestId: {request_id}\n".encode()


def timeout_line(request_id: str, timeout_s: float) -> bytes:
    return f"{utc_timestamp()} {request_id} {timeout_message(timeout_s)}\n".encode()


def timeout_message(timeout_s: float) -> str:
    return f"Task timed out after {float(timeout_s):.2f} seconds"


def tail(log: bytes | bytearray, limit: int = LOG_TAIL_BYTES) -> bytes:
    """The last `limit` bytes of an invocation's log, as X-Amz-Log-Result carries them."""
    return bytes(log[-limit:])


def utc_timestamp() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"
