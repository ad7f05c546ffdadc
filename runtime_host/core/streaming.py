"""Response streaming's rules and wire format, without an event loop.

Owns: Lambda's limits on a streamed response (spec §2.2: 200 MB; the first
6 MiB as fast as they come, then at most 2 MiB/s, as RAPID's token bucket
shapes it), the trailers a runtime reports a mid-stream failure in, the
InvokeComplete a caller gets at the end, and the AWS event stream framing of
InvokeWithResponseStream (`application/vnd.amazon.eventstream`).
Must not: wait or hold bytes (scheduler/stream.py does).
"""
from __future__ import annotations

import base64
import binascii
import json
import struct
import zlib
from dataclasses import dataclass

from runtime_host.core.protocol import FUNCTION_RESPONSE_TOO_LARGE

# spec §2.2. Docs: "The maximum response payload size is 200 MB"
# (configuration-response-streaming.html); RAPID's bandwidth limiter:
# bucket capacity 6 MiB, full at start, refilled at 2 MiB/s
# (internal/lambda/core/bandwidthlimiter, directinvoke.go defaults).
STREAM_MAX_BYTES = 200 * 1024 * 1024
STREAM_BURST_BYTES = 6 * 1024 * 1024
STREAM_RATE_BYTES_PER_S = 2 * 1024 * 1024

H_ERROR_TYPE_TRAILER = "Lambda-Runtime-Function-Error-Type"
H_ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"
# spec §1.7: a streamed body that ends before its last chunk (the runtime
# closed the connection mid-stream).
RUNTIME_TRUNCATED_RESPONSE = "Runtime.TruncatedResponse"
EVENTSTREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"


class TokenBucket:
    """RAPID's shaping: `burst` tokens at the start, `rate` more a second, one
    token a byte. `delay(n, now)` takes n tokens and says how long to wait
    before sending them (0 while the burst lasts)."""

    def __init__(self, rate: float = STREAM_RATE_BYTES_PER_S, burst: float = STREAM_BURST_BYTES):
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.at: float | None = None

    def delay(self, n: int, now: float) -> float:
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass(frozen=True)
class StreamEnd:
    """How a stream ended: None error_code for success. `error_details` is
    what InvokeComplete's ErrorDetails carries."""
    error_code: str | None = None
    error_details: str | None = None


def trailer_error(error_type: str | None, error_body_b64: str | None) -> StreamEnd:
    """The end a runtime's trailers declare (spec §2.1). The body is the
    base64 of a JSON error document; the caller's ErrorDetails is its
    errorMessage where it has one, else the decoded text as sent."""
    if not error_type:
        return StreamEnd()
    details = ""
    if error_body_b64:
        try:
            text = base64.b64decode(error_body_b64, validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            text = error_body_b64
        try:
            doc = json.loads(text)
            details = doc.get("errorMessage", text) if isinstance(doc, dict) else text
        except ValueError:
            details = text
    return StreamEnd(error_type, str(details))


def too_large(size: int, limit: int) -> StreamEnd:
    # RAPID's message for an oversized response (interop.ErrorResponseTooLarge).
    return StreamEnd(FUNCTION_RESPONSE_TOO_LARGE,
                     f"Response payload size ({size} bytes) exceeded maximum allowed payload size ({limit} bytes).")


# --- the AWS event stream (a binary framing of events over one HTTP body) ----------
# Message: total length (4) | headers length (4) | CRC32 of those 8 bytes (4) |
# headers | payload | CRC32 of all before it (4); a header: name length (1),
# name, type 7 = string, value length (2), value. botocore's
# botocore/eventstream.py parses it; the Lambda model (service-2.json) names
# the events PayloadChunk (payload = the bytes) and InvokeComplete (JSON).
_STRING = 7


def _header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return struct.pack("!B", len(n)) + n + struct.pack("!BH", _STRING, len(v)) + v


def event_message(event_type: str, payload: bytes, content_type: str) -> bytes:
    headers = (_header(":event-type", event_type) + _header(":content-type", content_type)
               + _header(":message-type", "event"))
    total = 12 + len(headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(headers))
    prelude += struct.pack("!I", zlib.crc32(prelude))
    message = prelude + headers + payload
    return message + struct.pack("!I", zlib.crc32(message))


def payload_chunk(data: bytes) -> bytes:
    return event_message("PayloadChunk", data, "application/octet-stream")


def invoke_complete(end: StreamEnd, log_result: str | None = None) -> bytes:
    doc = {}
    if end.error_code is not None:
        doc["ErrorCode"] = end.error_code
        doc["ErrorDetails"] = end.error_details or ""
    if log_result is not None:
        doc["LogResult"] = log_result
    return event_message("InvokeComplete", json.dumps(doc).encode(), "application/json")
