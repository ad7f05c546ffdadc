"""The AWS Lambda Invoke API (2015-03-31), enough for the AWS CLI and boto3.

Owns: Invoke (RequestResponse, Event, DryRun; log tail; function errors),
ListFunctions, GetFunction and GetFunctionConfiguration, and the error
responses as AWS shapes them (JSON with Type and message, the error name in
x-amzn-ErrorType; spec §6).
Served by http_server.py, the same lean server as the Runtime API (every
route is in _route below); see that module for why not aiohttp's web layer.
Must not: run invocations itself (its Invoker does: the host, passed in) or
keep sandbox state.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, Protocol
from urllib.parse import parse_qs, unquote

from runtime_host.api.console.console import CONSOLE_PATH, Console
from runtime_host.api.http_server import Reply, Request, start_server
from runtime_host.api.metrics import METRICS_PATH, HostMetrics
from runtime_host.api.runtime_api import read_limited
from runtime_host.core.config import FunctionConfig
from runtime_host.core.invocation import Invocation, Outcome
from runtime_host.core.logformat import tail
from runtime_host.core.protocol import (ACCOUNT_ID, ERR_INVALID_PARAMETER_VALUE, ERR_INVALID_REQUEST_CONTENT,
                                        ERR_REQUEST_TOO_LARGE, ERR_RESOURCE_CONFLICT, ERR_RESOURCE_NOT_FOUND, ERR_SERVICE,
                                        ERR_TOO_MANY_REQUESTS, H_AMZN_ERROR_TYPE, H_AMZN_REQUEST_ID, H_AMZN_TRACE_ID,
                                        H_CALLER_CLIENT_CONTEXT, H_EXECUTED_VERSION, H_FUNCTION_ERROR,
                                        H_INVOCATION_TYPE, H_LOG_RESULT, H_LOG_TYPE, INVOKE_API_VERSION,
                                        INVOKE_WITH_RESPONSE_STREAM_API_VERSION, LATEST,
                                        MAX_ASYNC_REQUEST_BYTES, MAX_CLIENT_CONTEXT_BASE64_BYTES,
                                        MAX_SYNC_REQUEST_BYTES, THROTTLE_REASON_RESERVED)
from runtime_host.core.async_invoke import AsyncConfig, AsyncConfigError, api_shape, merge_api_config
from runtime_host.core.streaming import StreamEnd, invoke_complete, payload_chunk
from runtime_host.scheduler.context import SandboxStartFailed, Stopping, Throttled
from runtime_host.store.versions import Alias


def logging_config(fn: FunctionConfig) -> dict:
    """LoggingConfig as GetFunctionConfiguration shows it: levels only in JSON
    format, where Lambda has them (docs/spec-additions.md §4)."""
    conf = {"LogFormat": fn.logging.format}
    if fn.logging.is_json:
        conf["ApplicationLogLevel"] = fn.logging.application_level
        conf["SystemLogLevel"] = fn.logging.system_level
    conf["LogGroup"] = f"/aws/lambda/{fn.name}"
    return conf


class Invoker(Protocol):
    """What the Invoke API asks of the host (Host implements it)."""
    region: str
    functions: dict[str, FunctionConfig]
    metrics: HostMetrics                     # GET /metrics (api/metrics.py)

    @property
    def stopping(self) -> bool: ...
    def resolve(self, name: str) -> FunctionConfig | None: ...
    async def invoke(self, fn: FunctionConfig, payload: bytes, *, qualifier: str | None = None,
                     client_context: str | None = None, trace_id: str | None = None,
                     streaming_caller: bool = False) -> tuple[Invocation, Outcome]: ...
    def track(self, coro) -> asyncio.Task: ...
    async def invoke_async(self, fn: FunctionConfig, payload: bytes, *, qualifier: str | None = None,
                           trace_id: str | None = None) -> str: ...
    def event_invoke_config(self, fn: FunctionConfig) -> tuple | None: ...
    async def set_event_invoke_config(self, fn: FunctionConfig, config) -> None: ...
    def describe_host(self) -> dict: ...
    def describe_sandboxes(self) -> list[dict]: ...

log = logging.getLogger("runtime_host.api.invoke_api")

INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")
STREAM_INVOCATION_TYPES = ("RequestResponse", "DryRun")       # InvokeWithResponseStream has no Event
# A caller's kept-alive connection with no request this long is closed, and a
# request whose body stops arriving this long gets 408 (nginx's defaults are
# 75 s and 60 s; botocore reopens a closed keep-alive connection by itself).
IDLE_TIMEOUT_S = 60.0
BODY_TIMEOUT_S = 30.0
HOST_SANDBOXES_PATH = "/runtime-host/sandboxes"
LOG_TYPES = ("None", "Tail")


BASE = f"/{INVOKE_API_VERSION}/functions"
STREAM_BASE = f"/{INVOKE_WITH_RESPONSE_STREAM_API_VERSION}/functions"
STREAM_ACTION = "response-streaming-invocations"
EVENT_CONFIG_BASE = "/2019-09-25/functions"          # Put/Get/Update/DeleteFunctionEventInvokeConfig


def json_reply(doc: dict, status: int = 200, headers: dict | None = None) -> Reply:
    return Reply(status, json.dumps(doc).encode(), "application/json",
                 {H_AMZN_REQUEST_ID: str(uuid.uuid4()), **(headers or {})})


def aws_error(status: int, code: str, message: str, *, kind: str = "User",
              extra: dict | None = None, headers: dict | None = None) -> Reply:
    return json_reply({"Type": kind, "message": message, **(extra or {})}, status,
                      {H_AMZN_ERROR_TYPE: code, **(headers or {})})


# What a bug in a handler answers (logged with its traceback by http_server).
INTERNAL_ERROR = Reply(500, b'{"Type": "Service", "message": "runtime-host failed to handle the request; '
                            b'its log has the traceback"}', "application/json",
                       {H_AMZN_ERROR_TYPE: ERR_SERVICE})


@dataclass(frozen=True, slots=True)
class Call:
    """An invoke request the API accepted."""
    fn: FunctionConfig
    qualifier: str | None
    payload: bytes
    client_context: str | None
    invocation_type: str
    log_type: str
    trace_id: str | None


async def buffered(inv: Invocation, outcome: Outcome) -> Outcome:
    """A streamed outcome read whole, for a caller of the buffered Invoke."""
    body = b"".join([data async for data in outcome.stream.chunks()])
    end = outcome.stream.end
    if inv.failure is not None:
        return inv.failure
    if end.error_code is not None:
        return Outcome(json.dumps({"errorMessage": end.error_details, "errorType": end.error_code}).encode(),
                       error_type=end.error_code, status="error")
    return Outcome(body, content_type=outcome.stream.content_type)


async def events(inv: Invocation, outcome: Outcome, with_tail: bool) -> AsyncIterator[bytes]:
    """The event stream of one InvokeWithResponseStream answer."""
    stream = outcome.stream
    try:
        if stream is None:                         # a buffered response: one chunk
            if outcome.is_error:
                end = StreamEnd(*error_code_and_message(outcome))
            else:
                end = StreamEnd()
                if outcome.body:
                    yield payload_chunk(outcome.body)
        else:
            async for data in stream.chunks():
                yield payload_chunk(data)
            end = stream.end
        log_result = None
        if with_tail:
            await asyncio.shield(inv.reported)
            log_result = base64.b64encode(tail(inv.log)).decode()
        yield invoke_complete(end, log_result)
    finally:
        if stream is not None and stream.end is None:
            stream.detach()                        # the caller left; the function goes on (spec §2.2)


async def _json_body(request: Request) -> tuple[dict, Reply | None]:
    body, _ = await read_limited(request.content, 65536)
    try:
        doc = json.loads(body or b"{}")
    except ValueError as exc:
        return {}, aws_error(400, ERR_INVALID_REQUEST_CONTENT, f"Could not parse request body into json: {exc}")
    except RecursionError:          # json's parser recurses per nesting level: 100,000 '[' would be a 500
        return {}, aws_error(400, ERR_INVALID_REQUEST_CONTENT, "Could not parse request body into json: nested too deeply")
    if not isinstance(doc, dict):
        return {}, aws_error(400, ERR_INVALID_REQUEST_CONTENT, "Could not parse request body into json: expected an object")
    return doc, None


def error_code_and_message(outcome: Outcome) -> tuple[str, str]:
    """InvokeComplete's ErrorCode and ErrorDetails for an error response:
    the error document's errorType (the name the function gave its error;
    the platform's own for a timeout or crash) and its errorMessage."""
    try:
        doc = json.loads(outcome.body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return outcome.error_type, outcome.body.decode("utf-8", "replace")
    return str(doc.get("errorType") or outcome.error_type), str(doc.get("errorMessage", ""))


def _refuse_non_numeric_number(token: str):
    """json.loads takes NaN, Infinity and -Infinity; JSON (RFC 8259) has
    none of them, and Lambda's parser (Jackson, ALLOW_NON_NUMERIC_NUMBERS
    off) refuses a payload holding one with InvalidRequestContentException,
    its message beginning as this one does."""
    raise ValueError(f"Non-standard token '{token}': JSON has no NaN, Infinity or -Infinity")


def parse_function_name(raw: str) -> tuple[str, str | None]:
    """name, name:qualifier, full ARN or partial ARN -> (name, qualifier)."""
    parts = raw.split(":")
    if raw.startswith("arn:"):               # arn:aws:lambda:region:account:function:name[:qualifier]
        parts = parts[6:]
    elif len(parts) >= 3 and parts[1] == "function":   # account:function:name[:qualifier]
        parts = parts[2:]
    name = parts[0] if parts else ""
    qualifier = parts[1] if len(parts) > 1 else None
    return name, qualifier


Handler = Callable[[Request, str], Awaitable[Reply]]


class InvokeApi:
    def __init__(self, host: Invoker):
        self.host = host
        self.console = Console(host, self._configuration)    # the web console at /console (api/console/)
        # CreateFunction, UpdateFunctionCode, DeleteFunction (imported here: it uses this module's shapes).
        from runtime_host.api.function_admin import FunctionAdmin
        self.admin = FunctionAdmin(self)

    async def start(self, address: str, port: int, *, idle_timeout_s: float = IDLE_TIMEOUT_S,
                    body_timeout_s: float = BODY_TIMEOUT_S):
        return await start_server(self.serve, host=address, port=port, name="Invoke API",
                                  internal_error=INTERNAL_ERROR, idle_timeout_s=idle_timeout_s,
                                  body_timeout_s=body_timeout_s)

    def _route(self, path: str) -> tuple[dict[str, Handler] | None, str]:
        """ROUTES: the whole Invoke API surface -> (method -> handler, function name)."""
        if path == HOST_SANDBOXES_PATH:            # not AWS: the host's own view, for `runtime-host ps`
            return {"GET": self.sandboxes}, ""
        if path == METRICS_PATH:                   # not AWS: Prometheus scrapes here (api/metrics.py)
            return {"GET": self.metrics}, ""
        if path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/"):   # not AWS: the web console
            return self.console.route(path)
        if path in (BASE, BASE + "/"):
            return {"GET": self.list_functions, "POST": self.admin.create_function}, ""
        if path.startswith(STREAM_BASE + "/"):
            name, _, action = path[len(STREAM_BASE) + 1:].partition("/")
            if name and action == STREAM_ACTION:
                return {"POST": self.invoke_with_response_stream}, unquote(name)
            return None, ""
        if path.startswith(EVENT_CONFIG_BASE + "/"):
            name, _, action = path[len(EVENT_CONFIG_BASE) + 1:].partition("/")
            if name and action == "event-invoke-config":
                return {"GET": self.get_event_invoke_config, "PUT": self.put_event_invoke_config,
                        "POST": self.update_event_invoke_config, "DELETE": self.delete_event_invoke_config}, unquote(name)
            return None, ""
        if not path.startswith(BASE + "/"):
            return None, ""
        name, _, action = path[len(BASE) + 1:].partition("/")
        if action.startswith("aliases/") and len(action) > len("aliases/"):
            action = "aliases/*"                   # the handler reads the alias's name from the path
        handlers = {"": {"GET": self.get_function, "DELETE": self.admin.delete_function},
                    "invocations": {"POST": self.invoke}, "code": {"PUT": self.admin.update_function_code},
                    "configuration": {"GET": self.get_function_configuration},
                    "versions": {"GET": self.list_versions, "POST": self.publish_version},
                    "aliases": {"GET": self.list_aliases, "POST": self.create_alias},
                    "aliases/*": {"GET": self.get_alias, "PUT": self.update_alias,
                                  "DELETE": self.delete_alias}}.get(action)
        # boto3 and the AWS CLI percent-encode the ':' of ARNs and qualifiers.
        return (handlers, unquote(name)) if handlers and name else (None, "")

    async def serve(self, request: Request) -> Reply:
        methods, name = self._route(request.path)
        if methods is None:
            return aws_error(404, "UnknownOperationException",
                             f"Unknown operation {request.method} {request.path}; this host serves Invoke, "
                             f"ListFunctions, GetFunction and GetFunctionConfiguration under {BASE}")
        handler = methods.get(request.method)
        if handler is None:
            allowed = ", ".join(sorted(methods))
            return aws_error(405, "MethodNotAllowedException",
                             f"{request.method} is not allowed on {request.path}; use {allowed}",
                             headers={"Allow": allowed})
        return await handler(request, name)

    async def metrics(self, request: Request, _: str) -> Reply:
        return await self.host.metrics.reply()

    async def sandboxes(self, request: Request, _: str) -> Reply:
        return json_reply({"host": self.host.describe_host(), "sandboxes": self.host.describe_sandboxes()})

    def _not_found(self, raw: str, qualifier: str | None = None) -> Reply:
        arn = f"arn:aws:lambda:{self.host.region}:{ACCOUNT_ID}:function:{raw}"
        if qualifier:
            arn += f":{qualifier}"
        return aws_error(404, ERR_RESOURCE_NOT_FOUND, f"Function not found: {arn}")

    def _lookup(self, request: Request, raw: str) -> tuple[FunctionConfig | None, str | None, Reply | None]:
        name, qualifier = parse_function_name(raw)
        query_qualifier = parse_qs(request.query).get("Qualifier", [None])[0]
        if query_qualifier is not None:
            if qualifier is not None and qualifier != query_qualifier:
                return None, None, aws_error(400, ERR_INVALID_PARAMETER_VALUE,
                                             "The derived qualifier from the function name does not match the specified qualifier.")
            qualifier = query_qualifier
        fn = self.host.resolve(name)
        if fn is None:
            return None, None, self._not_found(name, qualifier)
        if qualifier is not None and qualifier != LATEST:
            chosen = self.host.qualified(fn, qualifier)   # a version, or what an alias routes to
            if chosen is None:
                return None, None, self._not_found(name, qualifier)
            fn = chosen
        return fn, qualifier, None

    # --- Invoke and InvokeWithResponseStream ----------------------------------------
    async def _accept(self, request: Request, raw_name: str, invocation_types: tuple[str, ...]
                      ) -> "Call | Reply":
        """What both invoke operations check before running anything: the
        function, the headers, the payload. A Reply is a refusal."""
        fn, qualifier, refusal = self._lookup(request, raw_name)
        if refusal is not None:
            return refusal
        invocation_type = request.headers.get(H_INVOCATION_TYPE, "RequestResponse")
        if invocation_type not in invocation_types:
            return aws_error(400, ERR_INVALID_PARAMETER_VALUE,
                             f"Invalid invocation type {invocation_type!r}; expected one of {', '.join(invocation_types)}")
        log_type = request.headers.get(H_LOG_TYPE, "None")
        if log_type not in LOG_TYPES:
            return aws_error(400, ERR_INVALID_PARAMETER_VALUE,
                             f"Invalid log type {log_type!r}; expected None or Tail")
        limit = MAX_ASYNC_REQUEST_BYTES if invocation_type == "Event" else MAX_SYNC_REQUEST_BYTES
        payload, size = await read_limited(request.content, limit)
        if size > limit:
            return aws_error(413, ERR_REQUEST_TOO_LARGE,
                             f"Request must be smaller than {limit} bytes for the InvokeFunction operation")
        if not payload.strip():
            payload = b"{}"      # an invoke without a payload hands the function {}
        try:
            json.loads(payload, parse_constant=_refuse_non_numeric_number)
        except (ValueError, UnicodeDecodeError) as exc:
            return aws_error(400, ERR_INVALID_REQUEST_CONTENT,
                             f"Could not parse request body into json: {exc}")
        except RecursionError:
            return aws_error(400, ERR_INVALID_REQUEST_CONTENT,
                             "Could not parse request body into json: nested too deeply")
        client_context = None
        raw_context = request.headers.get(H_CALLER_CLIENT_CONTEXT)
        if raw_context and invocation_type == "RequestResponse":
            try:
                if len(raw_context) > MAX_CLIENT_CONTEXT_BASE64_BYTES:
                    raise ValueError("too long")
                client_context = base64.b64decode(raw_context, validate=True).decode()
                json.loads(client_context)
            except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
                return aws_error(400, ERR_INVALID_REQUEST_CONTENT,
                                 f"Client context must be base64-encoded JSON of at most "
                                 f"{MAX_CLIENT_CONTEXT_BASE64_BYTES} bytes")
        if self.host.stopping:
            return aws_error(503, ERR_SERVICE, "runtime-host is shutting down; no new invocations are accepted",
                             kind="Service")
        if fn.reserved_concurrency == 0:
            self.host.metrics.refused_at_once(fn.name, fn.version)   # no pool counts this one (api/metrics.py)
            return self._throttled(fn)
        if invocation_type == "DryRun":
            return Reply(204, b"", None, {H_AMZN_REQUEST_ID: str(uuid.uuid4())})
        return Call(fn, qualifier, payload, client_context, invocation_type, log_type,
                    request.headers.get(H_AMZN_TRACE_ID))

    async def _run(self, call: "Call", streaming_caller: bool = False) -> tuple[Invocation | None, Outcome | Reply]:
        try:
            inv, outcome = await self.host.invoke(call.fn, call.payload, qualifier=call.qualifier,
                                                  client_context=call.client_context, trace_id=call.trace_id,
                                                  streaming_caller=streaming_caller)
        except Throttled:
            return None, self._throttled(call.fn)
        except SandboxStartFailed as exc:
            return None, aws_error(500, ERR_SERVICE, f"Could not start a sandbox for {call.fn.name}: {exc}",
                                   kind="Service")
        except Stopping as exc:
            return None, aws_error(503, ERR_SERVICE, str(exc), kind="Service")
        return inv, outcome

    async def invoke(self, request: Request, raw_name: str) -> Reply:
        call = await self._accept(request, raw_name, INVOCATION_TYPES)
        if isinstance(call, Reply):
            return call
        if call.invocation_type == "Event":
            # Committed to the durable queue before the 202 (scheduler/async_delivery.py);
            # the id is the one the function, its log and the ledger will show.
            try:
                request_id = await self.host.invoke_async(call.fn, call.payload, qualifier=call.qualifier,
                                                          trace_id=call.trace_id)
            except SandboxStartFailed as exc:       # StateDiskFull: not queued
                return aws_error(500, ERR_SERVICE, f"Could not queue the event for {call.fn.name}: {exc}",
                                 kind="Service")
            return Reply(202, b"", None, {H_AMZN_REQUEST_ID: request_id})
        inv, outcome = await self._run(call)
        if isinstance(outcome, Reply):
            return outcome
        if outcome.stream is not None:
            # A streaming runtime, a buffered caller: the whole body at the end,
            # within the buffered limit (the stream was capped at it; spec §2.2).
            outcome = await buffered(inv, outcome)
        headers = {H_AMZN_REQUEST_ID: inv.request_id, H_EXECUTED_VERSION: call.fn.version}
        if outcome.is_error:
            headers[H_FUNCTION_ERROR] = "Unhandled"
        if call.log_type == "Tail":
            # The tail ends with the REPORT line, so it waits for the invocation's end.
            await asyncio.shield(inv.reported)
            headers[H_LOG_RESULT] = base64.b64encode(tail(inv.log)).decode()
        return Reply(200, outcome.body, outcome.content_type, headers)

    async def invoke_with_response_stream(self, request: Request, raw_name: str) -> Reply:
        """InvokeWithResponseStream (spec §2.2, §6.4): 200 at once, then the
        response as PayloadChunk events as the runtime sends it, then
        InvokeComplete (its error, and the log tail for Tail)."""
        call = await self._accept(request, raw_name, STREAM_INVOCATION_TYPES)
        if isinstance(call, Reply):
            return call
        inv, outcome = await self._run(call, streaming_caller=True)
        if isinstance(outcome, Reply):
            return outcome
        content_type = outcome.stream.content_type if outcome.stream is not None else outcome.content_type
        headers = {H_AMZN_REQUEST_ID: inv.request_id, H_EXECUTED_VERSION: call.fn.version}
        return Reply(200, b"", content_type, headers, stream=events(inv, outcome, call.log_type == "Tail"))

    def _throttled(self, fn: FunctionConfig) -> Reply:
        return aws_error(429, ERR_TOO_MANY_REQUESTS, "Rate Exceeded.",
                         extra={"Reason": THROTTLE_REASON_RESERVED},
                         headers={"Retry-After": "1"})

    # --- event-invoke configuration (docs/spec-additions.md §7) -----------------------
    async def get_event_invoke_config(self, request: Request, raw_name: str) -> Reply:
        fn, _, refusal = self._lookup(request, raw_name)
        if refusal is not None:
            return refusal
        stored = self.host.event_invoke_config(fn)
        if stored is None:
            return aws_error(404, ERR_RESOURCE_NOT_FOUND,
                             f"The function {fn.arn(self.host.region)} doesn't have an EventInvokeConfig")
        return json_reply(api_shape(fn.arn(self.host.region, LATEST), *stored))

    async def put_event_invoke_config(self, request: Request, raw_name: str) -> Reply:
        return await self._set_event_invoke_config(request, raw_name, replace=True)

    async def update_event_invoke_config(self, request: Request, raw_name: str) -> Reply:
        return await self._set_event_invoke_config(request, raw_name, replace=False)

    async def _set_event_invoke_config(self, request: Request, raw_name: str, replace: bool) -> Reply:
        fn, _, refusal = self._lookup(request, raw_name)
        if refusal is not None:
            return refusal
        doc, refusal = await _json_body(request)
        if refusal is not None:
            return refusal
        stored = self.host.event_invoke_config(fn)
        base = AsyncConfig() if replace or stored is None else stored[0]
        try:
            config = merge_api_config(base, doc)
        except AsyncConfigError as exc:
            return aws_error(400, ERR_INVALID_PARAMETER_VALUE, str(exc))
        await self.host.set_event_invoke_config(fn, config)
        return json_reply(api_shape(fn.arn(self.host.region, LATEST), *self.host.event_invoke_config(fn)))

    async def delete_event_invoke_config(self, request: Request, raw_name: str) -> Reply:
        fn, _, refusal = self._lookup(request, raw_name)
        if refusal is not None:
            return refusal
        await self.host.set_event_invoke_config(fn, None)
        return Reply(204, b"", None, {H_AMZN_REQUEST_ID: str(uuid.uuid4())})

    # --- versions and aliases (store/versions.py) ------------------------------------
    def _unqualified(self, request: Request, raw_name: str) -> tuple[FunctionConfig | None, Reply | None]:
        name, _ = parse_function_name(raw_name)
        fn = self.host.resolve(name)
        return (fn, None) if fn is not None else (None, self._not_found(name))

    async def publish_version(self, request: Request, raw_name: str) -> Reply:
        fn, refusal = self._unqualified(request, raw_name)
        if refusal is not None:
            return refusal
        doc, refusal = await _json_body(request)
        if refusal is not None:
            return refusal
        version, created = await self.host.publish_version(fn, str(doc.get("Description", "")))
        return json_reply(await self._configuration(version), 201 if created else 200)

    async def list_versions(self, request: Request, raw_name: str) -> Reply:
        fn, refusal = self._unqualified(request, raw_name)
        if refusal is not None:
            return refusal
        published = [self.host.version_of(fn, v.version) for v in self.host.versions.versions(fn.name)]
        return json_reply({"Versions": [await self._configuration(f) for f in (fn, *published)]})

    def _alias_reply(self, fn: FunctionConfig, alias: Alias, status: int = 200) -> Reply:
        doc = {"AliasArn": fn.arn(self.host.region, alias.name), "Name": alias.name,
               "FunctionVersion": alias.function_version, "Description": alias.description,
               "RevisionId": alias.revision_id}
        if alias.weights:
            doc["RoutingConfig"] = {"AdditionalVersionWeights": alias.weights}
        return json_reply(doc, status)

    def _check_alias(self, fn: FunctionConfig, alias: Alias) -> Reply | None:
        """AWS's refusals for an alias's version and weights."""
        if alias.function_version != LATEST and self.host.version_of(fn, alias.function_version) is None:
            return self._not_found(fn.name, alias.function_version)
        if len(alias.weights) > 1:
            return aws_error(400, ERR_INVALID_PARAMETER_VALUE,
                             "RoutingConfig.AdditionalVersionWeights takes at most one version")
        for version, weight in alias.weights.items():
            if alias.function_version == LATEST or version == LATEST:
                return aws_error(400, ERR_INVALID_PARAMETER_VALUE,
                                 "RoutingConfig cannot route to or from $LATEST; publish a version first")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
                return aws_error(400, ERR_INVALID_PARAMETER_VALUE,
                                 f"the weight of version {version} must be a number from 0.0 to 1.0; got {weight!r}")
            if version == alias.function_version:
                return aws_error(400, ERR_INVALID_PARAMETER_VALUE,
                                 f"version {version} is the alias's own version; route to another one")
            if self.host.version_of(fn, version) is None:
                return self._not_found(fn.name, version)
        return None

    async def create_alias(self, request: Request, raw_name: str) -> Reply:
        fn, refusal = self._unqualified(request, raw_name)
        if refusal is not None:
            return refusal
        doc, refusal = await _json_body(request)
        if refusal is not None:
            return refusal
        name = str(doc.get("Name", ""))
        if not re.fullmatch(r"(?!^[0-9]+$)([a-zA-Z0-9-_]+)", name) or len(name) > 128:
            return aws_error(400, ERR_INVALID_PARAMETER_VALUE,
                             f"alias name {name!r}: 1-128 letters, digits, '-' and '_', not all digits")
        aliases = self.host.versions.aliases(fn.name)
        if name in aliases:
            return aws_error(409, ERR_RESOURCE_CONFLICT, f"Alias already exists: {fn.arn(self.host.region, name)}")
        alias = Alias(name, str(doc.get("FunctionVersion", "")), str(doc.get("Description", "")),
                      dict((doc.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}),
                      str(uuid.uuid4()))
        if (refusal := self._check_alias(fn, alias)) is not None:
            return refusal
        aliases[name] = alias
        self.host.versions.save_aliases(fn.name, aliases)
        return self._alias_reply(fn, alias, 201)

    def _named_alias(self, request: Request, fn: FunctionConfig) -> tuple[dict, Alias | None, Reply | None]:
        name = unquote(request.path.rsplit("/aliases/", 1)[1])
        aliases = self.host.versions.aliases(fn.name)
        if name not in aliases:
            return aliases, None, aws_error(404, ERR_RESOURCE_NOT_FOUND,
                                            f"Alias not found: {fn.arn(self.host.region, name)}")
        return aliases, aliases[name], None

    async def get_alias(self, request: Request, raw_name: str) -> Reply:
        fn, refusal = self._unqualified(request, raw_name)
        if refusal is not None:
            return refusal
        _, alias, refusal = self._named_alias(request, fn)
        return refusal or self._alias_reply(fn, alias)

    async def update_alias(self, request: Request, raw_name: str) -> Reply:
        fn, refusal = self._unqualified(request, raw_name)
        if refusal is not None:
            return refusal
        aliases, alias, refusal = self._named_alias(request, fn)
        if refusal is not None:
            return refusal
        doc, refusal = await _json_body(request)
        if refusal is not None:
            return refusal
        updated = Alias(alias.name, str(doc.get("FunctionVersion", alias.function_version)),
                        str(doc.get("Description", alias.description)),
                        dict((doc["RoutingConfig"] or {}).get("AdditionalVersionWeights") or {})
                        if "RoutingConfig" in doc else alias.weights, str(uuid.uuid4()))
        if (refusal := self._check_alias(fn, updated)) is not None:
            return refusal
        aliases[alias.name] = updated
        self.host.versions.save_aliases(fn.name, aliases)
        return self._alias_reply(fn, updated)

    async def delete_alias(self, request: Request, raw_name: str) -> Reply:
        fn, refusal = self._unqualified(request, raw_name)
        if refusal is not None:
            return refusal
        aliases, alias, refusal = self._named_alias(request, fn)
        if refusal is not None:
            return refusal
        del aliases[alias.name]
        self.host.versions.save_aliases(fn.name, aliases)
        return Reply(204, b"", None, {H_AMZN_REQUEST_ID: str(uuid.uuid4())})

    async def list_aliases(self, request: Request, raw_name: str) -> Reply:
        fn, refusal = self._unqualified(request, raw_name)
        if refusal is not None:
            return refusal
        aliases = sorted(self.host.versions.aliases(fn.name).values(), key=lambda a: a.name)
        return json_reply({"Aliases": [json.loads(self._alias_reply(fn, a).body) for a in aliases]})

    # --- List / Get -------------------------------------------------------------
    def configuration(self, fn: FunctionConfig) -> dict:
        code_hash = hashlib.sha256()
        size = 0
        for p in sorted(fn.code_dir.rglob("*")) if not fn.is_image else []:
            if p.is_file():
                size += p.stat().st_size
                code_hash.update(p.name.encode())
        conf = {
            "FunctionName": fn.name,
            "FunctionArn": fn.arn(self.host.region, None if fn.version == LATEST else fn.version),
            "Role": f"arn:aws:iam::{ACCOUNT_ID}:role/lambda-role",
            "Handler": fn.handler,
            "CodeSize": size,
            "Description": fn.description,
            "Timeout": fn.timeout_s,
            "MemorySize": fn.memory_mb,
            "LastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(fn.code_dir.stat().st_mtime)),
            "CodeSha256": base64.b64encode(code_hash.digest()).decode(),
            "Version": fn.version,
            "Environment": {"Variables": dict(fn.environment)},
            "TracingConfig": {"Mode": "PassThrough"},
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Image" if fn.is_image else "Zip",
            "Architectures": [fn.architecture],
            "EphemeralStorage": {"Size": fn.ephemeral_storage_mb},
            "LoggingConfig": logging_config(fn),
        }
        if not fn.is_image:
            conf["Runtime"] = fn.lambda_runtime
        return conf

    async def _configuration(self, fn: FunctionConfig) -> dict:
        # configuration() walks the code folder (its size and hash): not on the loop.
        return await asyncio.get_running_loop().run_in_executor(None, self.configuration, fn)

    async def list_functions(self, request: Request, _: str) -> Reply:
        functions = [await self._configuration(fn) for fn in sorted(self.host.functions.values(), key=lambda f: f.name)]
        return json_reply({"Functions": functions})

    async def get_function(self, request: Request, raw_name: str) -> Reply:
        fn, _, refusal = self._lookup(request, raw_name)
        if refusal is not None:
            return refusal
        body = {"Configuration": await self._configuration(fn),
                "Code": {"RepositoryType": "S3", "Location": fn.code_dir.as_uri()},
                "Concurrency": {"ReservedConcurrentExecutions": fn.reserved_concurrency}}
        return json_reply(body)

    async def get_function_configuration(self, request: Request, raw_name: str) -> Reply:
        fn, _, refusal = self._lookup(request, raw_name)
        if refusal is not None:
            return refusal
        return json_reply(await self._configuration(fn))
