"""What a runtime said to the Runtime API, as the host's observer hook saw it.

Owns: keeping every call the hook records (runtime_api._observed:
a dict per request, completed in place when answered) and the sandbox each
came from, and reading them back in the protocol's terms: events delivered
(GET next answered 200, with the request id and deadline the host sent),
results posted (to which id, response or error, with what status), init
errors, and calls to paths or with methods the API does not have.
Must not: answer or alter anything; the host does that as always.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtime_host.core.protocol import H_DEADLINE_MS, H_REQUEST_ID, RUNTIME_API_VERSION

if TYPE_CHECKING:
    from runtime_host.host import Host
    from runtime_host.scheduler.sandbox import Sandbox

RUNTIME_PREFIX = f"/{RUNTIME_API_VERSION}/runtime"
NEXT_PATH = f"{RUNTIME_PREFIX}/invocation/next"
INIT_ERROR_PATH = f"{RUNTIME_PREFIX}/init/error"
RESULT_PATH = re.compile(rf"^{re.escape(RUNTIME_PREFIX)}/invocation/(?P<id>[^/]*)/(?P<kind>response|error)$")
VERSIONED_PATH = re.compile(r"^/(?P<version>\d{4}-\d{2}-\d{2})(?P<rest>/.*)?$")
HOST_OWN_PREFIX = "/runtime-host/"      # the host's own routes (not the Runtime API)


@dataclass(frozen=True)
class Delivery:
    """An event the host handed to the runtime (GET next answered 200)."""
    request_id: str
    deadline_ms: int
    at_epoch_ms: float


@dataclass(frozen=True)
class Result:
    """A POST to /invocation/{id}/response or /error."""
    request_id: str
    kind: str                  # "response" | "error"
    status: int | None
    at_epoch_ms: float
    call: dict


class ProtocolObserver:
    def __init__(self, host: "Host"):
        self.host = host
        self.calls: list[dict] = []
        self.sandboxes: dict[str, "Sandbox"] = {}

    # --- called by the hook, on the event loop -----------------------------
    def record(self, call: dict) -> None:
        self.calls.append(call)
        sandbox = self.host.sandbox_at(call["remote"] or "")
        if sandbox is not None:
            self.sandboxes[sandbox.id] = sandbox

    # --- read back --------------------------------------------------------------
    def of(self, function: str, sandbox_id: str | None = None) -> list[dict]:
        return [c for c in self.calls if c["function"] == function
                and (sandbox_id is None or c["sandbox"] == sandbox_id)]

    def deliveries(self, function: str, sandbox_id: str | None = None) -> list[Delivery]:
        out = []
        for c in self.of(function, sandbox_id):
            if c["method"] == "GET" and c["path"] == NEXT_PATH and c["status"] == 200:
                headers = c["response_headers"]
                out.append(Delivery(request_id=headers.get(H_REQUEST_ID, ""),
                                    deadline_ms=int(headers.get(H_DEADLINE_MS, "0")),
                                    at_epoch_ms=c["done_epoch_ms"] or c["at_epoch_ms"]))
        return out

    def results(self, function: str, sandbox_id: str | None = None) -> list[Result]:
        out = []
        for c in self.of(function, sandbox_id):
            match = RESULT_PATH.match(c["path"])
            if c["method"] == "POST" and match:
                out.append(Result(request_id=match["id"], kind=match["kind"], status=c["status"],
                                  at_epoch_ms=c["at_epoch_ms"], call=c))
        return out

    def init_errors(self, function: str) -> list[dict]:
        return [c for c in self.of(function) if c["method"] == "POST" and c["path"] == INIT_ERROR_PATH]

    def error_reports(self, function: str) -> list[dict]:
        """Every error document posted: init/error and invocation errors."""
        return [c for c in self.of(function) if c["method"] == "POST"
                and (c["path"] == INIT_ERROR_PATH or (RESULT_PATH.match(c["path"]) or {"kind": ""})["kind"] == "error")]

    def refused(self, function: str) -> list[dict]:
        """Calls the Runtime API refused (4xx/5xx) that no other scenario judges:
        not results (answers-its-id judges those), not unknown paths or
        methods (asks-for-work), not a poll ended because its sandbox was
        removed, not calls of a runtime after its own init/error."""
        out, after_init_error = [], set()
        for c in self.of(function):
            if c["method"] == "POST" and c["path"] == INIT_ERROR_PATH and c["status"] == 202:
                after_init_error.add(c["sandbox"])
            refused = c["status"] is not None and c["status"] >= 400 and c["status"] not in (404, 405)
            judged_elsewhere = (RESULT_PATH.match(c["path"]) or c["path"].startswith(HOST_OWN_PREFIX)
                                or c.get("ended_by") == "sandbox gone" or c["sandbox"] in after_init_error)
            if refused and not judged_elsewhere:
                out.append(c)
        return out

    def strays(self, function: str) -> list[dict]:
        """Calls the Runtime API has no route for (404) or not with that method (405)."""
        return [c for c in self.of(function) if c["status"] in (404, 405)
                and not c["path"].startswith(HOST_OWN_PREFIX)]


def describe_stray(call: dict) -> str:
    """What a call to a path the API does not have was probably meant to be."""
    where = f"{call['method']} {call['path']} ({call['status']})"
    match = VERSIONED_PATH.match(call["path"])
    if call["status"] == 405:
        return f"{where}: wrong method"
    if match and match["version"] != RUNTIME_API_VERSION and (match["rest"] or "").startswith("/runtime/"):
        return f"{where}: wrong API version {match['version']}, the Runtime API is {RUNTIME_API_VERSION}"
    return f"{where}: no such path"
