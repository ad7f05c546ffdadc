"""The shell's client of a running host's Invoke API: PublishVersion and the
alias operations, for `runtime-host publish` and `runtime-host alias`.

Owns: the requests as the AWS CLI sends them (same paths, same JSON) and
turning the answer into (status, document), or NoHost when nothing answers.
Why through the API and not on the state directory: the host keeps aliases
in memory (store/versions.py, a write-through cache, its own writer) and
numbers versions itself; a second writer behind a running host's back would
be overwritten or never seen. So these commands need a running host.
Must not: print (cli.py does) or read the state directory.
"""
from __future__ import annotations

import json
from urllib.parse import quote

import aiohttp

from runtime_host.core.protocol import INVOKE_API_VERSION


class NoHost(RuntimeError):
    """Nothing answers at the endpoint."""


def _functions(endpoint: str, function: str, *rest: str) -> str:
    # Quoted as the AWS CLI does: an ARN's ':' and an alias's name travel percent-encoded.
    parts = [quote(function, safe=""), *(quote(p, safe="") for p in rest)]
    return f"{endpoint.rstrip('/')}/{INVOKE_API_VERSION}/functions/" + "/".join(parts)


async def call(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    """(HTTP status, the JSON document answered; {} for an empty body)."""
    try:
        async with aiohttp.ClientSession() as session:
            data = json.dumps(body).encode() if body is not None else None
            async with session.request(method, url, data=data,
                                       headers={"Content-Type": "application/json"} if data else None) as resp:
                raw = await resp.read()
                error_type = resp.headers.get("x-amzn-ErrorType")
    except aiohttp.ClientConnectionError as exc:
        raise NoHost(str(exc)) from None
    try:
        doc = json.loads(raw) if raw.strip() else {}
    except ValueError:
        doc = {"message": raw.decode("utf-8", "replace")}
    if error_type and isinstance(doc, dict):
        doc.setdefault("__type", error_type.split(":")[0])
    return resp.status, doc


def publish_version(endpoint: str, function: str, description: str = ""):
    return call("POST", _functions(endpoint, function, "versions"), {"Description": description})


def routing(weights: dict[str, float] | None) -> dict:
    return {"RoutingConfig": {"AdditionalVersionWeights": weights or {}}} if weights is not None else {}


def create_alias(endpoint: str, function: str, name: str, version: str, description: str = "",
                 weights: dict[str, float] | None = None):
    return call("POST", _functions(endpoint, function, "aliases"),
                {"Name": name, "FunctionVersion": version, "Description": description, **routing(weights)})


def update_alias(endpoint: str, function: str, name: str, version: str | None = None,
                 description: str | None = None, weights: dict[str, float] | None = None):
    """Only what is given changes; weights={} removes the routing."""
    body = {**({"FunctionVersion": version} if version is not None else {}),
            **({"Description": description} if description is not None else {}), **routing(weights)}
    return call("PUT", _functions(endpoint, function, "aliases", name), body)


def get_alias(endpoint: str, function: str, name: str):
    return call("GET", _functions(endpoint, function, "aliases", name))


def list_aliases(endpoint: str, function: str):
    return call("GET", _functions(endpoint, function, "aliases"))


def delete_alias(endpoint: str, function: str, name: str):
    return call("DELETE", _functions(endpoint, function, "aliases", name))
