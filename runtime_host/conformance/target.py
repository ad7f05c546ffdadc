"""What is being tested: a function folder (any runtime) or a bare
`bootstrap` executable, and the user's own events.

Owns: turning PATH into a FunctionConfig (a bare bootstrap becomes a
`provided` function in a folder of its own, so the sandbox sees only it at
/var/task), and reading events/NAME.json with NAME.expected.json /
NAME.error.json beside it.
Must not: start anything.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from runtime_host.core.config import ConfigError, FunctionConfig, load_function, require_executable

DEFAULT_HANDLER = "function.handler"
EVENTS_DIR = "events"
EXPECTED_SUFFIX = ".expected.json"
ERROR_SUFFIX = ".error.json"


@dataclass(frozen=True)
class UserEvent:
    name: str
    payload: bytes
    expected: object = None            # the JSON the response must equal, when has_expected
    has_expected: bool = False
    error_type: str | None = None      # the errorType an error must carry, from NAME.error.json


@dataclass
class Target:
    path: Path
    function: FunctionConfig
    bare_bootstrap: bool
    events: list[UserEvent] = field(default_factory=list)
    temp_dirs: list[Path] = field(default_factory=list)

    def describe(self) -> str:
        fn = self.function
        what = "bare bootstrap" if self.bare_bootstrap else fn.runtime
        handler = fn.handler or fn.image
        return f"{self.path} ({what}, {handler}, {fn.memory_mb} MB, {fn.timeout_s} s)"

    def cleanup(self) -> None:
        for d in self.temp_dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.temp_dirs.clear()


def sandbox_readable_dir(prefix: str) -> Path:
    """A temporary folder the sandbox user (not root) can read at /var/task."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    return d


def load_target(path: str | os.PathLike, handler: str | None = None) -> Target:
    """Raises ConfigError, naming the file and what to change."""
    path = Path(path)
    if path.is_dir():
        fn = load_function(path)
        if handler:
            fn = replace(fn, handler=handler)
        return Target(path=path, function=fn, bare_bootstrap=False, events=load_events(path / EVENTS_DIR))
    if not path.is_file():
        raise ConfigError(f"{path}: no such file or folder; conformance takes a function folder "
                          "(holding function.toml) or a bootstrap executable")
    require_executable(path)
    folder = sandbox_readable_dir("rh-conformance-bootstrap-")
    shutil.copyfile(path, folder / "bootstrap")
    (folder / "bootstrap").chmod(0o755)
    stem = path.parent.resolve().name if path.name == "bootstrap" else path.stem
    name = re.sub(r"[^A-Za-z0-9_-]", "-", stem)[:64] or "bootstrap"
    fn = FunctionConfig(name=name, runtime="provided", handler=handler or DEFAULT_HANDLER, code_dir=folder)
    return Target(path=path, function=fn, bare_bootstrap=True, temp_dirs=[folder])


def load_events(folder: Path) -> list[UserEvent]:
    if not folder.is_dir():
        return []
    events = []
    for file in sorted(folder.glob("*.json")):
        if file.name.endswith((EXPECTED_SUFFIX, ERROR_SUFFIX)):
            continue
        name = file.name[:-len(".json")]
        expected_file, error_file = folder / (name + EXPECTED_SUFFIX), folder / (name + ERROR_SUFFIX)
        if expected_file.exists() and error_file.exists():
            raise ConfigError(f"{folder}: events/{name} has both {name}{EXPECTED_SUFFIX} and {name}{ERROR_SUFFIX}; "
                              "keep the one that says what should happen")
        event = UserEvent(name=name, payload=file.read_bytes())
        if expected_file.exists():
            event = UserEvent(name=name, payload=event.payload, expected=_read_json(expected_file), has_expected=True)
        elif error_file.exists():
            doc = _read_json(error_file)
            if not isinstance(doc, dict) or not isinstance(doc.get("errorType"), str):
                raise ConfigError(f"{error_file}: expected a JSON object with an errorType, "
                                  'e.g. {"errorType": "ValueError"}')
            event = UserEvent(name=name, payload=event.payload, error_type=doc["errorType"])
        events.append(event)
    return events


def _read_json(file: Path) -> object:
    try:
        return json.loads(file.read_bytes())
    except ValueError as exc:
        raise ConfigError(f"{file}: not valid JSON ({exc})") from None
