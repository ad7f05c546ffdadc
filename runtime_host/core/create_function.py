"""CreateFunction's request, as the function.toml of the folder it creates.

Owns: which fields of CreateFunction (docs/spec-additions.md §10) this host
takes, their mapping to function.toml, and Lambda's refusals for the ones it
cannot serve (InvalidParameterValueException). The values themselves are
then checked by core/config.py, as any folder's are.
Must not: touch files, zips or the network (the API and store/function_store.py do).
"""
from __future__ import annotations

import base64
import binascii
import json

from runtime_host.core.config import NAME_PATTERN, RUNTIMES

# Lambda's API limit on CreateFunction / UpdateFunctionCode requests: the
# 50 MB zipped deployment package, base64-encoded in the JSON body.
MAX_CODE_REQUEST_BYTES = 69_905_067
SERVED_RUNTIMES = tuple(r for r in RUNTIMES if r != "image")
# Accepted and not kept: IAM, networking, signing and tags have no meaning on one machine.
IGNORED_FIELDS = ("Role", "VpcConfig", "KMSKeyArn", "TracingConfig", "Tags", "CodeSigningConfigArn",
                  "DeadLetterConfig", "FileSystemConfigs", "SnapStart", "Publish", "PackageType")


class CreateFunctionError(ValueError):
    """A request Lambda (or this host) refuses; the message names the field."""


def _toml_string(value: str) -> str:
    return json.dumps(value)          # a JSON string (ASCII, \\uXXXX escapes) is a TOML basic string


def zip_bytes(code: object, field: str = "ZipFile") -> bytes:
    """The archive from a base64 ZipFile (CreateFunction's Code.ZipFile, UpdateFunctionCode's ZipFile)."""
    if not isinstance(code, str) or not code:
        raise CreateFunctionError(f"{field}: this host takes the code as a .zip in the request "
                                  "(--zip-file fileb://f.zip); S3 locations and image URIs are not served")
    try:
        return base64.b64decode(code, validate=True)
    except (binascii.Error, ValueError):
        raise CreateFunctionError(f"{field} is not base64-encoded") from None


def function_toml(doc: dict) -> str:
    """function.toml for a CreateFunction request (name, runtime and handler required)."""
    name = doc.get("FunctionName")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise CreateFunctionError(f"FunctionName {name!r}: expected 1 to 64 letters, digits, '-' or '_'")
    if doc.get("PackageType", "Zip") != "Zip":
        raise CreateFunctionError("PackageType Image is not served by CreateFunction here; serve a local image "
                                  "with runtime = \"image\" in a function folder")
    runtime = doc.get("Runtime")
    if runtime not in SERVED_RUNTIMES:
        raise CreateFunctionError(f"The runtime parameter of {runtime} is not served by this host; "
                                  f"use one of {', '.join(SERVED_RUNTIMES)}")
    handler = doc.get("Handler", "")
    if not isinstance(handler, str) or len(handler) > 128:
        raise CreateFunctionError(f"Handler {handler!r}: expected a string of at most 128 characters")
    lines = [f"name = {_toml_string(name)}", f"runtime = {_toml_string(runtime)}",
             f"handler = {_toml_string(handler)}"]
    for field, key in (("MemorySize", "memory_mb"), ("Timeout", "timeout_s")):
        if field in doc:
            value = doc[field]
            if isinstance(value, bool) or not isinstance(value, int):
                raise CreateFunctionError(f"{field} {value!r}: expected a whole number")
            lines.append(f"{key} = {value}")
    if "Description" in doc:
        lines.append(f"description = {_toml_string(str(doc['Description']))}")
    storage = (doc.get("EphemeralStorage") or {}).get("Size")
    if storage is not None:
        lines.append(f"ephemeral_storage_mb = {int(storage)}")
    architectures = doc.get("Architectures") or []
    if architectures:
        if not isinstance(architectures, list) or len(architectures) != 1:
            raise CreateFunctionError("Architectures takes exactly one of x86_64, arm64")
        lines.append(f"architecture = {_toml_string(str(architectures[0]))}")
    if doc.get("Layers"):
        raise CreateFunctionError("Layers: layer ARNs have nothing to resolve to on this host; list layer "
                                  "folders or .zips in the function's function.toml (layers = [...]) instead")
    logging = doc.get("LoggingConfig") or {}
    if logging:
        parts = [f"{key} = {_toml_string(str(logging[field]))}"
                 for field, key in (("LogFormat", "format"), ("ApplicationLogLevel", "application_level"),
                                    ("SystemLogLevel", "system_level")) if field in logging]
        lines.append("logging = { " + ", ".join(parts) + " }")
    variables = (doc.get("Environment") or {}).get("Variables") or {}
    if not isinstance(variables, dict):
        raise CreateFunctionError("Environment.Variables: expected an object of names and string values")
    if variables:
        lines.append("[environment]")
        lines += [f"{_toml_string(str(k))} = {_toml_string(str(v))}" for k, v in variables.items()]
    return "\n".join(lines) + "\n"
