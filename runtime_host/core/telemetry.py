"""The Telemetry and Logs APIs' facts (spec §8.2, §8.3, §5.4), without an
event loop: what a subscription may ask for, and the records Lambda sends.

Owns: validating a subscription request, the event records
(`{"time", "type", "record"}`) of every platform event, and which events
each API and schema version carries.
Must not: buffer or send (scheduler/telemetry.py does).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from runtime_host.core.extensions import ERR_INVALID_REQUEST_FORMAT, ExtensionRefusal
from runtime_host.core.logformat import utc_timestamp

TELEMETRY_API_VERSION = "2022-07-01"
LOGS_API_VERSION = "2020-08-15"
TELEMETRY_SCHEMAS = ("2022-07-01", "2022-12-13", "2025-01-29")
LOGS_SCHEMAS = ("2020-08-15", "2021-03-18")
STREAM_TYPES = ("platform", "function", "extension")
SANDBOX_HOSTNAME = "sandbox.localdomain"
VALIDATION_ERROR = "ValidationError"

# §8.2 buffering: (minimum, maximum, default).
MAX_ITEMS = (1000, 10000, 10000)
MAX_BYTES = (262144, 1048576, 262144)
TIMEOUT_MS = (25, 30000, 1000)


@dataclass(frozen=True)
class SubscriptionRequest:
    api: str                   # "telemetry" | "logs"
    schema: str
    types: frozenset[str]
    max_items: int
    max_bytes: int
    timeout_ms: int
    host: str                  # as written in the URI (sandbox.localdomain, usually)
    port: int
    path: str
    protocol: str              # HTTP | TCP


def _invalid(message: str) -> ExtensionRefusal:
    return ExtensionRefusal(400, VALIDATION_ERROR, message)


def _bounded(buffering: dict, key: str, bounds: tuple[int, int, int]) -> int:
    low, high, default = bounds
    value = buffering.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _invalid(f"buffering.{key} must be an integer from {low} to {high}; got {value!r}")
    return value


def parse_subscription(api: str, body: bytes) -> SubscriptionRequest:
    """A PUT /2022-07-01/telemetry (api "telemetry") or /2020-08-15/logs body."""
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        raise ExtensionRefusal(400, ERR_INVALID_REQUEST_FORMAT, "subscription body is not JSON") from None
    if not isinstance(doc, dict):
        raise _invalid("subscription body must be a JSON object")
    schemas = TELEMETRY_SCHEMAS if api == "telemetry" else LOGS_SCHEMAS
    schema = doc.get("schemaVersion", schemas[0])
    if schema not in schemas:
        raise _invalid(f"schemaVersion must be one of {', '.join(schemas)}; got {schema!r}")
    types = doc.get("types")
    if not isinstance(types, list) or not types or any(t not in STREAM_TYPES for t in types):
        raise _invalid(f"types must be a non-empty list of {', '.join(STREAM_TYPES)}; got {types!r}")
    buffering = doc.get("buffering") or {}
    if not isinstance(buffering, dict):
        raise _invalid("buffering must be an object")
    destination = doc.get("destination")
    if not isinstance(destination, dict):
        raise _invalid("destination is required: {\"protocol\": \"HTTP\", \"URI\": \"http://sandbox.localdomain:PORT/path\"}")
    protocol = destination.get("protocol")
    if protocol == "HTTP":
        uri = destination.get("URI", "")
        parts = urlsplit(uri)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise _invalid(f"destination.URI must be http://sandbox.localdomain:PORT/path (HTTPS is not "
                           f"supported); got {uri!r}")
        host, port, path = parts.hostname, parts.port, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    elif protocol == "TCP":
        port = destination.get("port")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise _invalid(f"destination.port must be a TCP port; got {port!r}")
        host, path = SANDBOX_HOSTNAME, ""
    else:
        raise _invalid(f"destination.protocol must be HTTP or TCP; got {protocol!r}")
    return SubscriptionRequest(api, schema, frozenset(types), _bounded(buffering, "maxItems", MAX_ITEMS),
                               _bounded(buffering, "maxBytes", MAX_BYTES), _bounded(buffering, "timeoutMs", TIMEOUT_MS),
                               host, port, path, protocol)


def category(event_type: str) -> str:
    """platform | function | extension: the stream an event belongs to."""
    return event_type if event_type in ("function", "extension") else "platform"


# Which platform events each API sends (spec §8.2 for Telemetry; §8.3 for Logs).
LOGS_API_PLATFORM_EVENTS = frozenset({"platform.start", "platform.end", "platform.report", "platform.extension",
                                      "platform.logsSubscription", "platform.logsDropped", "platform.fault"})
LOGS_ONLY_EVENTS = frozenset({"platform.end", "platform.logsSubscription", "platform.fault"})


def carried_by(event_type: str, api: str, schema: str) -> bool:
    if api == "telemetry":
        return event_type not in LOGS_ONLY_EVENTS
    if event_type in ("function", "extension"):
        return True
    if event_type == "platform.runtimeDone":
        return schema == "2021-03-18"
    return event_type in LOGS_API_PLATFORM_EVENTS


def span(name: str, start_epoch_s: float, duration_ms: float) -> dict:
    return {"name": name, "start": utc_timestamp(start_epoch_s), "durationMs": round(max(0.0, duration_ms), 3)}


def subscription_line(name: str, types: list[str]) -> bytes:
    """The function log's line for a subscription (spec §5.3, observed format)."""
    listed = ", ".join(t.capitalize() for t in STREAM_TYPES if t in types)
    return f"TELEMETRY\tName: {name}\tState: Subscribed\tTypes: [{listed}]\n".encode()
