"""The Extensions API (2020-01-01), the Telemetry API (2022-07-01) and the
Logs API (2020-08-15), on the Runtime API's listener as on Lambda (spec §8).

Owns: their routes, reading their headers and bodies, and turning refusals
into RAPID's status codes and error documents.
Must not: keep state (the sandbox's SandboxExtensions and SandboxTelemetry
do) or decide when init or an invocation ends (the sandbox does).
"""
from __future__ import annotations

import json

from runtime_host.api.http_server import Reply, Request
from runtime_host.api.runtime_api import RuntimeApi, error_reply, read_body
from runtime_host.core.extensions import (ERR_MISSING_HEADER, EXTENSION_EXIT_ERROR, EXTENSION_INIT_ERROR,
                                          EXTENSIONS_API_VERSION, H_EXTENSION_ACCEPT_FEATURE,
                                          H_EXTENSION_ERROR_TYPE, H_EXTENSION_EVENT_ID, H_EXTENSION_ID,
                                          H_EXTENSION_NAME, ExtensionRefusal, check_identifier,
                                          parse_register_body)
from runtime_host.core.telemetry import LOGS_API_VERSION, TELEMETRY_API_VERSION
from runtime_host.scheduler.extensions import Extension
from runtime_host.scheduler.sandbox import Sandbox

BASE = f"/{EXTENSIONS_API_VERSION}/extension"
MAX_BODY_BYTES = 1024 * 1024


def _refused(exc: ExtensionRefusal) -> Reply:
    return error_reply(exc.status, exc.error_type, exc.message)


def _stranger(request: Request) -> Reply:
    return error_reply(403, "UnknownSandbox", f"{request.remote} is not a sandbox of this host")


class ExtensionsApi:
    def __init__(self, runtime_api: RuntimeApi):
        runtime_api.add_route("POST", f"{BASE}/register", self.register)
        runtime_api.add_route("GET", f"{BASE}/event/next", self.next)
        runtime_api.add_route("POST", f"{BASE}/init/error", self.init_error)
        runtime_api.add_route("POST", f"{BASE}/exit/error", self.exit_error)
        runtime_api.add_route("PUT", f"/{TELEMETRY_API_VERSION}/telemetry", self.subscribe_telemetry)
        runtime_api.add_route("PUT", f"/{LOGS_API_VERSION}/logs", self.subscribe_logs)

    async def register(self, request: Request, sandbox: Sandbox | None, _: str) -> Reply:
        if sandbox is None:
            return _stranger(request)
        body, _ = await read_body(request, MAX_BODY_BYTES)
        try:
            events = parse_register_body(body)
            features = request.headers.get(H_EXTENSION_ACCEPT_FEATURE, "")
            ext, info = sandbox.extensions.register(request.headers.get(H_EXTENSION_NAME, ""), events,
                                                    "accountId" in features.replace(" ", "").split(","))
        except ExtensionRefusal as exc:
            return _refused(exc)
        return Reply(200, json.dumps(info).encode(), "application/json", {H_EXTENSION_ID: ext.id})

    async def next(self, request: Request, sandbox: Sandbox | None, _: str) -> Reply:
        if sandbox is None:
            return _stranger(request)
        try:
            ext = sandbox.extensions.find(check_identifier(request.headers.get(H_EXTENSION_ID)))
            event = await sandbox.extension_next(ext)
        except ExtensionRefusal as exc:
            return _refused(exc)
        headers = {H_EXTENSION_EVENT_ID: event.pop("_event_id")} if "_event_id" in event else {}
        return Reply(200, json.dumps(event).encode(), "application/json", headers)

    async def init_error(self, request: Request, sandbox: Sandbox | None, _: str) -> Reply:
        return await self._error(request, sandbox, EXTENSION_INIT_ERROR)

    async def exit_error(self, request: Request, sandbox: Sandbox | None, _: str) -> Reply:
        return await self._error(request, sandbox, EXTENSION_EXIT_ERROR)

    @staticmethod
    async def _caller(request: Request, sandbox: Sandbox) -> tuple[bytes, Extension]:
        """The body, and the extension the identifier header names; raises ExtensionRefusal."""
        body, _ = await read_body(request, MAX_BODY_BYTES)
        return body, sandbox.extensions.find(check_identifier(request.headers.get(H_EXTENSION_ID)))

    async def _error(self, request: Request, sandbox: Sandbox | None, failure_type: str) -> Reply:
        if sandbox is None:
            return _stranger(request)
        try:
            body, ext = await self._caller(request, sandbox)
            error_type = request.headers.get(H_EXTENSION_ERROR_TYPE)
            if not error_type:
                raise ExtensionRefusal(403, ERR_MISSING_HEADER, f"Missing {H_EXTENSION_ERROR_TYPE} header")
        except ExtensionRefusal as exc:
            return _refused(exc)
        detail = f"extension {ext.name} reported {error_type}"
        if body:
            detail += f": {body[:1000].decode('utf-8', 'replace')}"
        sandbox.extensions.fail(failure_type, detail)
        return Reply(202, b'{"status":"OK"}\n')

    async def subscribe_telemetry(self, request: Request, sandbox: Sandbox | None, _: str) -> Reply:
        return await self._subscribe(request, sandbox, "telemetry")

    async def subscribe_logs(self, request: Request, sandbox: Sandbox | None, _: str) -> Reply:
        return await self._subscribe(request, sandbox, "logs")

    async def _subscribe(self, request: Request, sandbox: Sandbox | None, api: str) -> Reply:
        if sandbox is None:
            return _stranger(request)
        try:
            body, ext = await self._caller(request, sandbox)
            sandbox.telemetry.subscribe(ext.name, api, body)
        except ExtensionRefusal as exc:
            return _refused(exc)
        return Reply(200, b'"OK"', "application/json")

