"""Published versions and aliases of functions (PublishVersion, CreateAlias...).

Owns: `versions/<function>/` in the host's state directory: each published
version a numbered folder holding a copy of the code as it was (`code/`) and
the configuration it was published with (`version.json`); the function's
aliases in `aliases.json` (written whole and renamed into place, so a crash
never leaves half a file). Versions are immutable: editing the function's
folder later changes `$LATEST` only.
Must not: run anything or decide which version an alias picks (the host does).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

VERSIONS_DIR = "versions"


@dataclass
class PublishedVersion:
    version: str                   # "1", "2", ...
    code_dir: Path
    description: str
    code_sha256: str
    published_at: float


@dataclass
class Alias:
    name: str
    function_version: str
    description: str = ""
    weights: dict[str, float] = field(default_factory=dict)   # RoutingConfig.AdditionalVersionWeights
    revision_id: str = ""


def code_sha256(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


class VersionStore:
    def __init__(self, state_dir: Path):
        self.root = Path(state_dir) / VERSIONS_DIR
        # Aliases are read on the invoke path (a qualifier): kept in memory once read,
        # written through on every change (this host is their only writer).
        self._aliases: dict[str, dict[str, Alias]] = {}

    def _folder(self, function: str) -> Path:
        return self.root / function

    # --- versions ---------------------------------------------------------------------
    def versions(self, function: str) -> list[PublishedVersion]:
        folder = self._folder(function)
        found = []
        for entry in folder.iterdir() if folder.is_dir() else []:
            meta = entry / "version.json"
            if entry.is_dir() and entry.name.isdigit() and meta.is_file():
                doc = json.loads(meta.read_text())
                found.append(PublishedVersion(entry.name, entry / "code", doc.get("description", ""),
                                              doc["code_sha256"], doc["published_at"]))
        return sorted(found, key=lambda v: int(v.version))

    def get(self, function: str, version: str) -> PublishedVersion | None:
        return next((v for v in self.versions(function) if v.version == version), None)

    def publish(self, function: str, code_dir: Path, description: str) -> tuple[PublishedVersion, bool]:
        """A new version from the code as it is now, unless it equals the
        newest one (then that one, as Lambda does). (version, created)."""
        sha = code_sha256(code_dir)
        existing = self.versions(function)
        if existing and existing[-1].code_sha256 == sha:
            return existing[-1], False
        number = str(int(existing[-1].version) + 1 if existing else 1)
        target = self._folder(function) / number
        staging = self._folder(function) / f".{number}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(code_dir, staging / "code", symlinks=True)
        for path in (staging / "code").rglob("*"):        # read by the sandbox user, as the folder was
            os.chmod(path, (path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0)) & 0o7777)
        (staging / "code").chmod(0o755)
        published = PublishedVersion(number, target / "code", description, sha, time.time())
        (staging / "version.json").write_text(json.dumps({"description": description, "code_sha256": sha,
                                                          "published_at": published.published_at}))
        staging.rename(target)                             # whole, or not at all
        return published, True

    def delete_function(self, function: str) -> None:
        """DeleteFunction: every version and alias of the function goes."""
        self._aliases.pop(function, None)
        shutil.rmtree(self._folder(function), ignore_errors=True)

    # --- aliases ------------------------------------------------------------------------
    def aliases(self, function: str) -> dict[str, Alias]:
        """A copy the caller may change and hand back to save_aliases."""
        if function not in self._aliases:
            path = self._folder(function) / "aliases.json"
            self._aliases[function] = ({name: Alias(name, **doc) for name, doc in json.loads(path.read_text()).items()}
                                       if path.is_file() else {})
        return dict(self._aliases[function])

    def save_aliases(self, function: str, aliases: dict[str, Alias]) -> None:
        folder = self._folder(function)
        folder.mkdir(parents=True, exist_ok=True)
        doc = {a.name: {"function_version": a.function_version, "description": a.description,
                        "weights": a.weights, "revision_id": a.revision_id} for a in aliases.values()}
        tmp = folder / "aliases.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2))
        tmp.replace(folder / "aliases.json")
        self._aliases[function] = dict(aliases)
