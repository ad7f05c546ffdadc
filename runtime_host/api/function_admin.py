"""CreateFunction, UpdateFunctionCode and DeleteFunction with a .zip, for the
Invoke API's routes (`aws lambda create-function --zip-file fileb://f.zip`).

Owns: the requests' checks in Lambda's order and with its errors
(docs/spec-additions.md §10): the body's size (RequestEntityTooLargeException),
the fields (InvalidParameterValueException), a name already served
(ResourceConflictException), a function not served (ResourceNotFoundException);
and the steps: the folder built and checked in a thread, renamed into place,
then handed to the host, which serves it from its next invocation.
Only folders this API made (under the state directory) are replaced or
deleted: a folder given with --functions is the user's own source.
Must not: extract or write files itself (store/function_store.py) or run anything.
"""
from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from runtime_host.api.http_server import Reply, Request
from runtime_host.api.invoke_api import aws_error, json_reply, parse_function_name
from runtime_host.api.runtime_api import read_limited
from runtime_host.core.config import ConfigError, load_function
from runtime_host.core.create_function import (MAX_CODE_REQUEST_BYTES, CreateFunctionError, function_toml,
                                               zip_bytes)
from runtime_host.core.protocol import (ERR_INVALID_PARAMETER_VALUE, ERR_INVALID_REQUEST_CONTENT,
                                        ERR_RESOURCE_CONFLICT, ERR_SERVICE, H_AMZN_REQUEST_ID)
from runtime_host.store.function_store import CodeError, FunctionStore

ERR_REQUEST_ENTITY_TOO_LARGE = "RequestEntityTooLargeException"     # CreateFunction's, not Invoke's
# function.toml's fields as CreateFunction names them, for errors from core/config.py.
API_FIELDS = {"memory_mb": "MemorySize", "timeout_s": "Timeout", "handler": "Handler", "runtime": "Runtime",
              "ephemeral_storage_mb": "EphemeralStorage.Size", "architecture": "Architectures",
              "description": "Description", "environment": "Environment.Variables", "logging": "LoggingConfig"}


def _api_message(exc: ConfigError, staging: Path) -> str:
    message = str(exc).replace(f"{staging / 'function.toml'}: ", "").replace(f"{staging}: ", "")
    for key, field in API_FIELDS.items():
        message = message.replace(f"field '{key}'", field).replace(f"field '{key}.", f"{field}.")
    return message


class FunctionAdmin:
    def __init__(self, api):
        self.api = api                    # the InvokeApi: its host, its error shapes, its configuration view
        self.host = api.host
        # None on a host that keeps no function folders (the unit tests' fake host).
        self.store: FunctionStore | None = getattr(self.host, "function_store", None)
        self._lock = asyncio.Lock()       # one change at a time: two creates of one name cannot both win

    async def _body(self, request: Request, operation: str) -> tuple[dict, Reply | None]:
        body, size = await read_limited(request.content, MAX_CODE_REQUEST_BYTES)
        if size > MAX_CODE_REQUEST_BYTES:
            return {}, aws_error(413, ERR_REQUEST_ENTITY_TOO_LARGE,
                                 f"Request must be smaller than {MAX_CODE_REQUEST_BYTES} bytes for the "
                                 f"{operation} operation")
        try:
            doc = json.loads(body or b"{}")
            if not isinstance(doc, dict):
                raise ValueError("expected a JSON object")
        except ValueError as exc:
            return {}, aws_error(400, ERR_INVALID_REQUEST_CONTENT, f"Could not parse request body into json: {exc}")
        return doc, None

    async def _built(self, name: str, data: bytes, toml: str | None) -> tuple[Path | None, str | None]:
        """(the staged folder, checked as any function folder is) or (None, why not)."""
        loop = asyncio.get_running_loop()
        try:
            staging = await loop.run_in_executor(None, self.store.build, name, data, toml)
        except CodeError as exc:
            return None, str(exc)
        try:
            await loop.run_in_executor(None, load_function, staging)
        except ConfigError as exc:
            await loop.run_in_executor(None, self.store.discard, staging)
            return None, _api_message(exc, staging)
        return staging, None

    async def _install(self, name: str, staging: Path):
        def install():
            return load_function(self.store.install(name, staging))
        return await asyncio.get_running_loop().run_in_executor(None, install)

    async def _answer(self, fn, publish: bool, status: int) -> Reply:
        if publish:
            fn, _ = await self.host.publish_version(fn, "")
        return json_reply(await self.api._configuration(fn), status)

    async def create_function(self, request: Request, _: str) -> Reply:
        doc, refusal = await self._body(request, "CreateFunction")
        if refusal is not None:
            return refusal
        try:
            toml = function_toml(doc)
            data = zip_bytes((doc.get("Code") or {}).get("ZipFile"), "Code.ZipFile")
        except CreateFunctionError as exc:
            return aws_error(400, ERR_INVALID_PARAMETER_VALUE, str(exc))
        name = doc["FunctionName"]
        if self.store is None:
            return aws_error(400, ERR_INVALID_PARAMETER_VALUE, "this host does not create functions")
        async with self._lock:
            if self.host.resolve(name) is not None:
                return aws_error(409, ERR_RESOURCE_CONFLICT, f"Function already exist: {name}")
            staging, why_not = await self._built(name, data, toml)
            if staging is None:
                return aws_error(400, ERR_INVALID_PARAMETER_VALUE, why_not)
            fn = await self._install(name, staging)
            try:
                await self.host.add_function(fn)
            except Exception as exc:          # the image could not be built: the folder stays for a restart
                return aws_error(500, ERR_SERVICE, f"function {name} was written to {fn.code_dir} but cannot be "
                                 f"served: {exc}", kind="Service")
        return await self._answer(fn, bool(doc.get("Publish")), 201)

    def _owned(self, raw_name: str):
        """(the function, None) if this API may change it, else (None, the refusal)."""
        name, _ = parse_function_name(raw_name)
        fn = self.host.resolve(name)
        if fn is None:
            return None, self.api._not_found(name)
        if self.store is None or not self.store.owns(fn.code_dir):
            return None, aws_error(400, ERR_INVALID_PARAMETER_VALUE,
                                   f"function {name} is served from {fn.code_dir}, a folder of yours given with "
                                   "--functions; only functions made with CreateFunction are replaced or deleted "
                                   "through the API (edit the folder: code reload serves the change)")
        return fn, None

    async def update_function_code(self, request: Request, raw_name: str) -> Reply:
        doc, refusal = await self._body(request, "UpdateFunctionCode")
        if refusal is not None:
            return refusal
        async with self._lock:
            fn, refusal = self._owned(raw_name)
            if refusal is not None:
                return refusal
            try:
                data = zip_bytes(doc.get("ZipFile"))
            except CreateFunctionError as exc:
                return aws_error(400, ERR_INVALID_PARAMETER_VALUE, str(exc))
            staging, why_not = await self._built(fn.name, data, None)
            if staging is None:
                return aws_error(400, ERR_INVALID_PARAMETER_VALUE, why_not)
            if doc.get("DryRun"):
                await asyncio.get_running_loop().run_in_executor(None, self.store.discard, staging)
                return await self._answer(fn, False, 200)
            fn = await self._install(fn.name, staging)
            self.host.code_replaced(fn)       # sandboxes from the old code finish, then are retired
        return await self._answer(fn, bool(doc.get("Publish")), 200)

    async def delete_function(self, request: Request, raw_name: str) -> Reply:
        async with self._lock:
            fn, refusal = self._owned(raw_name)
            if refusal is not None:
                return refusal
            await self.host.remove_function(fn)
        return Reply(204, b"", None, {H_AMZN_REQUEST_ID: str(uuid.uuid4())})
