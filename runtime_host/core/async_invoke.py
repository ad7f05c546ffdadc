"""Asynchronous invocation's rules (spec §7, docs/spec-additions.md §7),
without an event loop: retries, their backoff, event age, destinations and
the record a destination receives.

Lambda's defaults: 2 retries of a function error, the first after about
1 minute and the second about 2 minutes later; throttles and system errors
are retried with backoff from 1 s up to 5 minutes for up to the event's
maximum age (6 hours); then the event goes to the on-failure destination.
A success goes to the on-success destination.
Must not: queue or run anything (store/event_queue.py, scheduler/async_delivery.py).
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

MAX_RETRY_ATTEMPTS = (0, 2, 2)               # (minimum, maximum, default)
MAX_EVENT_AGE_S = (60, 21600, 21600)
FUNCTION_ERROR_BACKOFF_S = (60.0, 120.0)     # before retry 1, before retry 2
THROTTLE_BACKOFF_S = (1.0, 300.0)            # first wait, the most it doubles to

SUCCESS, RETRIES_EXHAUSTED, EVENT_AGE_EXCEEDED = "Success", "RetriesExhausted", "EventAgeExceeded"

_FUNCTION_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:function:([A-Za-z0-9_-]+)(:[A-Za-z0-9$_-]+)?$")


class AsyncConfigError(ValueError):
    """A bad event-invoke configuration; the message names the field and what is allowed."""


@dataclass(frozen=True)
class Destination:
    kind: str            # "function" | "folder"
    target: str          # a function name, or a folder's absolute path

    def describe(self) -> str:
        return f"{self.kind}:{self.target}"


@dataclass(frozen=True)
class AsyncConfig:
    maximum_retry_attempts: int = MAX_RETRY_ATTEMPTS[2]
    maximum_event_age_s: int = MAX_EVENT_AGE_S[2]
    on_success: Destination | None = None
    on_failure: Destination | None = None


def parse_destination(value: str, relative_to=None) -> Destination:
    """A Lambda function ARN (what AWS takes), `function:<name>`, or
    `folder:<path>` (not AWS: each record written there as a JSON file)."""
    if not isinstance(value, str) or not value:
        raise AsyncConfigError(f"destination {value!r}: expected a Lambda function ARN, function:<name> or folder:<path>")
    if match := _FUNCTION_ARN.match(value):
        return Destination("function", match.group(1))
    kind, _, target = value.partition(":")
    if kind == "function" and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", target):
        return Destination("function", target)
    if kind == "folder" and target:
        path = Path(target)
        if not path.is_absolute() and relative_to is not None:
            path = Path(relative_to) / path
        return Destination("folder", str(path.resolve()))
    raise AsyncConfigError(f"destination {value!r}: expected a Lambda function ARN "
                           "(arn:aws:lambda:REGION:ACCOUNT:function:NAME), function:<name> or folder:<path>; "
                           "SQS, SNS and EventBridge destinations are not served here")


def check_range(name: str, value, bounds: tuple[int, int, int]) -> int:
    low, high, _ = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise AsyncConfigError(f"{name} must be a whole number from {low} to {high}; got {value!r}")
    return value


def retry_delay_s(attempts: int, scale: float = 1.0) -> float:
    """The wait before the next try after `attempts` function errors."""
    return FUNCTION_ERROR_BACKOFF_S[min(attempts, len(FUNCTION_ERROR_BACKOFF_S)) - 1] * scale


def throttle_delay_s(throttles: int, scale: float = 1.0) -> float:
    first, most = THROTTLE_BACKOFF_S
    return min(most, first * 2 ** max(0, throttles - 1)) * scale


def destination_record(*, request_id: str, function_arn: str, condition: str, invoke_count: int,
                       payload: bytes, status_code: int | None, function_error: str | None,
                       response: bytes | None, executed_version: str = "$LATEST") -> dict:
    """What an on-success or on-failure destination receives (Lambda's shape,
    docs/spec-additions.md §7)."""
    def as_json(data: bytes | None):
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return data.decode("utf-8", "replace")
    response_context = {"statusCode": status_code, "executedVersion": executed_version}
    if function_error:
        response_context["functionError"] = function_error
    now = time.time()
    return {
        "version": "1.0",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z",
        "requestContext": {"requestId": request_id, "functionArn": function_arn, "condition": condition,
                           "approximateInvokeCount": invoke_count},
        "requestPayload": as_json(payload),
        "responseContext": response_context,
        "responsePayload": as_json(response),
    }


def merge_api_config(base: AsyncConfig, doc: dict) -> AsyncConfig:
    """PutFunctionEventInvokeConfig's body over `base` (Update keeps what it does not name)."""
    retries = doc.get("MaximumRetryAttempts", base.maximum_retry_attempts)
    age = doc.get("MaximumEventAgeInSeconds", base.maximum_event_age_s)
    destinations = doc.get("DestinationConfig") or {}
    if not isinstance(destinations, dict):
        raise AsyncConfigError("DestinationConfig must be an object with OnSuccess and/or OnFailure")

    def destination(key: str, current: Destination | None) -> Destination | None:
        if key not in destinations:
            return current
        value = (destinations[key] or {}).get("Destination")
        return parse_destination(value) if value else None
    return AsyncConfig(maximum_retry_attempts=check_range("MaximumRetryAttempts", retries, MAX_RETRY_ATTEMPTS),
                       maximum_event_age_s=check_range("MaximumEventAgeInSeconds", age, MAX_EVENT_AGE_S),
                       on_success=destination("OnSuccess", base.on_success),
                       on_failure=destination("OnFailure", base.on_failure))


def to_stored(config: AsyncConfig) -> dict:
    return {"maximum_retry_attempts": config.maximum_retry_attempts, "maximum_event_age_s": config.maximum_event_age_s,
            "on_success": config.on_success.describe() if config.on_success else None,
            "on_failure": config.on_failure.describe() if config.on_failure else None}


def from_stored(doc: dict) -> AsyncConfig:
    return AsyncConfig(doc["maximum_retry_attempts"], doc["maximum_event_age_s"],
                       parse_destination(doc["on_success"]) if doc.get("on_success") else None,
                       parse_destination(doc["on_failure"]) if doc.get("on_failure") else None)


def api_shape(function_arn: str, config: AsyncConfig, last_modified: float) -> dict:
    """GetFunctionEventInvokeConfig's answer."""
    destinations = {}
    if config.on_success is not None:
        destinations["OnSuccess"] = {"Destination": _as_arn(config.on_success, function_arn)}
    if config.on_failure is not None:
        destinations["OnFailure"] = {"Destination": _as_arn(config.on_failure, function_arn)}
    return {"LastModified": last_modified, "FunctionArn": function_arn,
            "MaximumRetryAttempts": config.maximum_retry_attempts,
            "MaximumEventAgeInSeconds": config.maximum_event_age_s, "DestinationConfig": destinations}


def _as_arn(destination: Destination, function_arn: str) -> str:
    if destination.kind == "function":
        prefix = function_arn.split(":function:")[0]
        return f"{prefix}:function:{destination.target}"
    return destination.describe()
