"""The console's saved test events: named JSON events per function, as the
Lambda console keeps its private test events.

Owns: <state>/console/events/<function>/<name>.json, the rules for an
event's name (ours: 1-25 letters, digits, '.', '-', '_', so a name is a
safe file name) and its body (a JSON document, at most the synchronous
Invoke payload limit), and the 10-per-function cap the Lambda console has
(docs/spec-additions.md §12).
Must not: invoke anything, or know HTTP. Every call blocks on the disk: call
it in a thread from async code.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from runtime_host.core.protocol import MAX_SYNC_REQUEST_BYTES

EVENTS_DIR = Path("console") / "events"     # under the state directory
MAX_EVENTS_PER_FUNCTION = 10                # Lambda's console: up to 10 private test events per function
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,25}")
NAME_RULE = "1-25 letters, digits, '.', '-' or '_', not starting with '.'"


class SavedEventError(ValueError):
    """A name or body the store refuses; the message says what to change."""


class SavedEventNotFound(KeyError):
    pass


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name) or name.startswith("."):
        raise SavedEventError(f"test event name {name!r} is not allowed: use {NAME_RULE}")
    return name


def check_body(body: str) -> str:
    """The event as saved: valid JSON (any document, as Invoke takes), within the payload limit."""
    if len(body.encode("utf-8")) > MAX_SYNC_REQUEST_BYTES:
        raise SavedEventError(f"the test event is larger than {MAX_SYNC_REQUEST_BYTES} bytes, "
                              "the most a synchronous Invoke takes")
    try:
        json.loads(body or "{}")
    except ValueError as exc:
        raise SavedEventError(f"the test event is not valid JSON: {exc}") from None
    return body or "{}"


class SavedEvents:
    def __init__(self, state_dir: Path):
        self.root = Path(state_dir) / EVENTS_DIR

    def _dir(self, function: str) -> Path:
        # Function names are checked by config (letters, digits, '-', '_'): safe as a folder name.
        if not function or "/" in function or function.startswith("."):
            raise SavedEventError(f"function name {function!r} cannot name a folder of saved events")
        return self.root / function

    def names(self, function: str) -> list[str]:
        folder = self._dir(function)
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.json") if NAME_PATTERN.fullmatch(p.stem))

    def get(self, function: str, name: str) -> str:
        try:
            return (self._dir(function) / f"{check_name(name)}.json").read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SavedEventNotFound(f"function {function} has no saved test event {name!r}") from None

    def save(self, function: str, name: str, body: str) -> None:
        """Creates or replaces the event (written whole: a reader never sees half of it)."""
        check_name(name)
        body = check_body(body)
        names = self.names(function)
        if name not in names and len(names) >= MAX_EVENTS_PER_FUNCTION:
            raise SavedEventError(f"function {function} already has {MAX_EVENTS_PER_FUNCTION} saved test events, "
                                  "the most the Lambda console keeps; delete one first")
        folder = self._dir(function)
        folder.mkdir(parents=True, exist_ok=True)
        temp = folder / f".{name}.json.tmp"
        temp.write_text(body, encoding="utf-8")
        os.replace(temp, folder / f"{name}.json")

    def delete(self, function: str, name: str) -> None:
        try:
            (self._dir(function) / f"{check_name(name)}.json").unlink()
        except FileNotFoundError:
            raise SavedEventNotFound(f"function {function} has no saved test event {name!r}") from None
