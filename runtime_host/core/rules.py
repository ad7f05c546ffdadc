"""What the platform makes of what a runtime posts (spec §1.5, §1.8, §1.10).

Owns: the error type a runtime's error post is reported under, the document
the caller gets for it, the documents for a bad response mode and an
oversized response, and how an outcome is filed in the ledger.
Must not: read HTTP requests or know which sandbox posted (the Runtime API
reads the request and passes the values in).
"""
from __future__ import annotations

import json
import re

from runtime_host.core.invocation import Outcome
from runtime_host.core.protocol import (FUNCTION_RESPONSE_TOO_LARGE, FUNCTION_UNKNOWN, MAX_RESPONSE_BYTES,
                                        RUNTIME_INVALID_RESPONSE_MODE, RUNTIME_OUT_OF_MEMORY, RUNTIME_UNKNOWN,
                                        SANDBOX_TIMEDOUT)

ERROR_CAUSE_CONTENT_TYPE = "application/vnd.aws.lambda.error.cause+json"
VALID_ERROR_TYPE = re.compile(r"(Runtime|Function)\.[A-Z][a-zA-Z]+")
STREAMING_RESPONSE_MODE = "streaming"


def sanitize_error_type(value: str | None) -> str:
    """spec §1.8: RAPID's GetValidRuntimeOrFunctionErrorType."""
    value = value or ""
    if VALID_ERROR_TYPE.search(value):
        return value
    return FUNCTION_UNKNOWN if value.startswith("Function.") else RUNTIME_UNKNOWN


def runtime_error_outcome(header_type: str | None, content_type: str, body: bytes) -> Outcome:
    """What the caller gets for an error a runtime posted (spec §1.5): the
    body as sent, except the error-cause media type (reduced to
    errorMessage/errorType/stackTrace) and an empty body (built from the
    sanitised error type)."""
    error_type = sanitize_error_type(header_type)
    if content_type.split(";")[0].strip() == ERROR_CAUSE_CONTENT_TYPE:
        try:
            doc = json.loads(body)
            body = json.dumps({k: doc.get(k) for k in ("errorMessage", "errorType", "stackTrace")}).encode()
        except (ValueError, AttributeError):
            return Outcome(body=b'"Invalid error body"', content_type="application/octet-stream",
                           error_type=error_type, status="error")
    if not body:
        body = json.dumps({"errorMessage": "Unknown application error occurred", "errorType": error_type}).encode()
    if header_type is None:
        # Python, Node and Go do not send the header: the body's errorType names the error.
        try:
            error_type = json.loads(body).get("errorType") or error_type
        except (ValueError, AttributeError):
            pass
    return Outcome(body=body, content_type="application/json", error_type=error_type, status="error")


def response_mode_refused(mode: str | None) -> Outcome | None:
    """None for a response mode Lambda accepts (none, or streaming); else what the caller gets."""
    if mode is None or mode == STREAMING_RESPONSE_MODE:
        return None
    return Outcome(body=json.dumps({"errorType": RUNTIME_INVALID_RESPONSE_MODE,
                                    "errorMessage": f"Invalid function response mode: {mode!r}"}).encode(),
                   error_type=RUNTIME_INVALID_RESPONSE_MODE, status="error")


def response_too_large(size: int) -> Outcome:
    return Outcome(body=json.dumps({"errorMessage": f"Response payload size ({size} bytes) exceeded maximum "
                                    f"allowed payload size ({MAX_RESPONSE_BYTES} bytes).",
                                    "errorType": FUNCTION_RESPONSE_TOO_LARGE}).encode(),
                   error_type=FUNCTION_RESPONSE_TOO_LARGE, status="error")


def ledger_outcome(outcome: Outcome) -> str:
    """success | function_error | timeout | oom | crash, for the ledger."""
    if not outcome.is_error:
        return "success"
    if outcome.error_type == SANDBOX_TIMEDOUT:
        return "timeout"
    if outcome.error_type == RUNTIME_OUT_OF_MEMORY:
        return "oom"
    return "crash" if outcome.platform else "function_error"
