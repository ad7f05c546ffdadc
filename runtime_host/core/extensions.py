"""The Extensions API's facts and rules (spec §8.1, §3.1, §3.5), without an
event loop.

Owns: the API's paths, headers and error types, what a register body may
say, the environment an extension gets, the INVOKE and SHUTDOWN events, and
the shutdown deadlines.
Must not: wait or hold state for a sandbox (scheduler/extensions.py does).
"""
from __future__ import annotations

import json
import uuid

EXTENSIONS_API_VERSION = "2020-01-01"
EXTENSIONS_DIR = "/opt/extensions"
MAX_EXTENSIONS = 10                                    # §3.1

H_EXTENSION_NAME = "Lambda-Extension-Name"
H_EXTENSION_ID = "Lambda-Extension-Identifier"
H_EXTENSION_ACCEPT_FEATURE = "Lambda-Extension-Accept-Feature"
H_EXTENSION_ERROR_TYPE = "Lambda-Extension-Function-Error-Type"
H_EXTENSION_EVENT_ID = "Lambda-Extension-Event-Identifier"

INVOKE, SHUTDOWN = "INVOKE", "SHUTDOWN"
EVENT_TYPES = (INVOKE, SHUTDOWN)

# §8.1 RAPID's refusals (403 unless noted).
ERR_INVALID_NAME = "Extension.InvalidExtensionName"
ERR_INVALID_REQUEST_FORMAT = "InvalidRequestFormat"
ERR_INVALID_EVENT_TYPE = "Extension.InvalidEventType"
ERR_REGISTRATION_CLOSED = "Extension.RegistrationClosed"
ERR_INVALID_STATE = "Extension.InvalidExtensionState"
ERR_TOO_MANY = "Extension.TooManyExtensions"
ERR_MISSING_ID = "Extension.MissingExtensionIdentifier"
ERR_INVALID_ID = "Extension.InvalidExtensionIdentifier"
ERR_UNKNOWN_ID = "Extension.UnknownExtensionIdentifier"
ERR_MISSING_HEADER = "Extension.MissingHeader"

# §3.4 what an invocation or init fails with because of an extension.
EXTENSION_CRASH = "Extension.Crash"
EXTENSION_INIT_ERROR = "Extension.InitError"
EXTENSION_EXIT_ERROR = "Extension.ExitError"

# §3.5 shutdown reasons, as RAPID spells them.
SPINDOWN, TIMEOUT, FAILURE = "spindown", "timeout", "failure"

# §4.1: what an extension's environment lacks of the runtime's; RAPID also
# drops every key that starts with "_".
RUNTIME_ONLY_VARIABLES = frozenset({
    "AWS_EXECUTION_ENV", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_XRAY_CONTEXT_MISSING",
    "AWS_XRAY_DAEMON_ADDRESS", "LAMBDA_RUNTIME_DIR", "LAMBDA_TASK_ROOT"})


class ExtensionRefusal(Exception):
    """A call the Extensions API refuses: its status, error type and message."""

    def __init__(self, status: int, error_type: str, message: str):
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


def extension_env(runtime_env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in runtime_env.items() if k not in RUNTIME_ONLY_VARIABLES and not k.startswith("_")}


def parse_register_body(body: bytes) -> list[str]:
    """The events an extension registers for; raises ExtensionRefusal."""
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        raise ExtensionRefusal(403, ERR_INVALID_REQUEST_FORMAT, "register body is not JSON") from None
    if not isinstance(doc, dict):
        raise ExtensionRefusal(403, ERR_INVALID_REQUEST_FORMAT, "register body must be a JSON object")
    if "configurationKeys" in doc:
        raise ExtensionRefusal(403, ERR_INVALID_REQUEST_FORMAT, "configurationKeys is not supported")
    events = doc.get("events") or []
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ExtensionRefusal(403, ERR_INVALID_REQUEST_FORMAT, "events must be a list of strings")
    for event in events:
        if event not in EVENT_TYPES:
            raise ExtensionRefusal(403, ERR_INVALID_EVENT_TYPE,
                                   f"unknown event type {event!r}; an extension may register for INVOKE and SHUTDOWN")
    return list(dict.fromkeys(events))


def check_identifier(value: str | None) -> str:
    if not value:
        raise ExtensionRefusal(403, ERR_MISSING_ID, "Missing Lambda-Extension-Identifier header")
    try:
        uuid.UUID(value)
    except ValueError:
        raise ExtensionRefusal(403, ERR_INVALID_ID, "Invalid Lambda-Extension-Identifier") from None
    return value


def invoke_event(request_id: str, deadline_ms: int, invoked_arn: str, trace_id: str | None) -> dict:
    event = {"eventType": INVOKE, "deadlineMs": deadline_ms, "requestId": request_id,
             "invokedFunctionArn": invoked_arn}
    if trace_id:
        event["tracing"] = {"type": "X-Amzn-Trace-Id", "value": trace_id}
    return event


def shutdown_event(reason: str, deadline_ms: int) -> dict:
    return {"eventType": SHUTDOWN, "shutdownReason": reason, "deadlineMs": deadline_ms}


def shutdown_window_ms(external: int, internal: int) -> int:
    """§3.5: 0 ms without extensions, 500 ms with internal ones only, 2,000 ms with external ones."""
    if external:
        return 2000
    return 500 if internal else 0


def registration_line(name: str, events: frozenset[str] | list[str]) -> bytes:
    """The function log's line for a registration (spec §5.3, observed format)."""
    listed = ", ".join(e for e in EVENT_TYPES if e in events)
    return f"EXTENSION\tName: {name}\tState: Ready\tEvents: [{listed}]\n".encode()
