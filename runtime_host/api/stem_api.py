"""The stem-cell endpoint, on the Runtime API's listener: GET /runtime-host/stem.

Owns: how a stem program is answered (JSON, or a shell line for the shell
stem with `?format=sh`) and the refusals (403 for a caller that is not a
stem cell of this host, 410 for one removed while it waited).
Must not: decide which stem a cold start takes (scheduler/stems.py does).
"""
from __future__ import annotations

import json
import shlex
from typing import Protocol
from urllib.parse import parse_qs

from runtime_host.api.http_server import Reply, Request
from runtime_host.scheduler.stems import Stem, StemRemoved

STEM_PATH = "/runtime-host/stem"


class StemCellsLookup(Protocol):
    def stem_at(self, address: str) -> Stem | None: ...
    async def ask(self, stem: Stem) -> dict: ...


def _json(status: int, doc: dict) -> Reply:
    return Reply(status, json.dumps(doc).encode())


class StemEndpoint:
    def __init__(self, stems: StemCellsLookup):
        self.stems = stems

    async def handle(self, request: Request, *_) -> Reply:
        stem = self.stems.stem_at(request.remote)
        if stem is None:
            return _json(403, {"errorType": "UnknownStem",
                               "errorMessage": f"{request.remote} is not a stem cell of this host"})
        try:
            spec = await self.stems.ask(stem)
        except StemRemoved:
            return _json(410, {"errorType": "StemRemoved", "errorMessage": "stem removed"})
        if parse_qs(request.query).get("format") == ["sh"]:
            assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in spec["env"].items())
            redirect = f"exec >{shlex.quote(spec['output'])} 2>&1 && " if "output" in spec else ""
            text = (f"{redirect}cd /var/task && exec env -i {assignments} "
                    f"{' '.join(map(shlex.quote, spec['command']))}\n")
            return Reply(200, text.encode(), "text/plain; charset=utf-8")
        return _json(200, spec)
