"""Functions created through the Invoke API (CreateFunction, UpdateFunctionCode,
DeleteFunction): their folders under `<state dir>/functions/`.

Owns: extracting an uploaded .zip safely (no member outside the folder, no
absolute or escaping symlink, at most Lambda's 250 MB unzipped, counted as
the bytes are written, not as the archive claims; docs/spec-additions.md
§10), writing the folder's function.toml, and putting a folder in place
whole: it is built beside its final place and renamed in, so a crash never
leaves half a function. A replaced or deleted folder is moved aside, not
removed: sandboxes still answering from it keep their files (their /var/task
is a bind mount of it); it is removed once older than Lambda's longest
timeout.
Must not: validate function.toml (core/config.py does, after the folder is
built) or start anything. Blocking: callers run it in a thread.
"""
from __future__ import annotations

import io
import os
import shutil
import stat
import time
import uuid
import zipfile
from pathlib import Path

FUNCTIONS_DIR = "functions"
RETIRED_DIR = ".retired"
MAX_UNZIPPED_BYTES = 262_144_000        # Lambda: "Unzipped size must be smaller than 262144000 bytes"
RETIRED_KEEP_S = 900 + 60               # the longest invocation (900 s), and a margin
UNZIP_ERROR = "Could not unzip uploaded file. Please check your file, then try to upload again."


class CodeError(ValueError):
    """An upload that cannot become a function's code; the message is Lambda's where it has one."""


def functions_root(state_dir: Path) -> Path:
    return Path(state_dir) / FUNCTIONS_DIR


def extract_zip(data: bytes, target: Path) -> int:
    """Extracts the archive into target (which must exist); the bytes written."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError):
        raise CodeError(UNZIP_ERROR) from None
    root = target.resolve()
    written = 0
    with archive:
        for info in archive.infolist():
            name = info.filename
            destination = (root / name).resolve()
            if name.startswith("/") or (destination != root and root not in destination.parents):
                raise CodeError(f"{UNZIP_ERROR} (member {name!r} would land outside the function's folder)")
            if info.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            mode = (info.external_attr >> 16) & 0o177777
            try:
                if stat.S_ISLNK(mode):
                    link = archive.read(info).decode()
                    pointed = (destination.parent / link).resolve()
                    if link.startswith("/") or (pointed != root and root not in pointed.parents):
                        raise CodeError(f"{UNZIP_ERROR} (symlink {name!r} points outside the function's folder)")
                    if destination.is_symlink() or destination.exists():
                        destination.unlink()
                    os.symlink(link, destination)
                    continue
                with archive.open(info) as source, open(destination, "wb") as out:
                    while chunk := source.read(1 << 20):
                        written += len(chunk)
                        if written >= MAX_UNZIPPED_BYTES:
                            raise CodeError(f"Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes")
                        out.write(chunk)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, RuntimeError) as exc:
                raise CodeError(f"{UNZIP_ERROR} ({name}: {exc})") from None
            # Readable by the sandbox user; the executable bit as zipped (a bootstrap keeps it).
            os.chmod(destination, ((mode & 0o777) or 0o644) | 0o444)
    for path in [root, *root.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    return written


class FunctionStore:
    def __init__(self, state_dir: Path):
        self.root = functions_root(state_dir)

    def folder(self, name: str) -> Path:
        return self.root / name

    def owns(self, code_dir: Path) -> bool:
        """Whether a function's folder is one this store made (the others are the user's own)."""
        return Path(code_dir).resolve().parent == self.root.resolve()

    def build(self, name: str, data: bytes, function_toml: str | None) -> Path:
        """A new folder for `name`, beside its final place: the archive
        extracted, and function.toml (or the current one, for new code only)."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".{name}.{uuid.uuid4().hex[:8]}.partial"
        staging.mkdir()
        try:
            extract_zip(data, staging)
            toml_path = staging / "function.toml"
            if function_toml is None:
                function_toml = (self.folder(name) / "function.toml").read_text()
            if toml_path.exists() or toml_path.is_symlink():
                toml_path.unlink()               # the host's configuration, not the archive's
            toml_path.write_text(function_toml)
            return staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def install(self, name: str, staging: Path) -> Path:
        """Renames a built folder into place; the folder it replaces is retired."""
        target = self.folder(name)
        if target.exists():
            self.retire(name)
        staging.rename(target)
        self.sweep()
        return target

    def retire(self, name: str) -> None:
        retired = self.root / RETIRED_DIR
        retired.mkdir(parents=True, exist_ok=True)
        self.folder(name).rename(retired / f"{name}.{time.time():.0f}.{uuid.uuid4().hex[:6]}")

    def sweep(self, now: float | None = None) -> None:
        """Removes retired folders no invocation can still be running from."""
        now = time.time() if now is None else now
        retired = self.root / RETIRED_DIR
        for entry in retired.iterdir() if retired.is_dir() else []:
            try:                                   # <name>.<retired at>.<random>: a rename keeps the mtime
                retired_at = float(entry.name.rsplit(".", 2)[1])
            except (IndexError, ValueError):
                continue
            if now - retired_at > RETIRED_KEEP_S:
                shutil.rmtree(entry, ignore_errors=True)
