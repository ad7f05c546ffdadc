"""A function's layers, put together as the folder its sandboxes see at /opt.

Owns: extracting layers (folders and .zip files) in order into one tree,
later layers winning where two hold the same path, as Lambda extracts them
(spec §4.2: /opt; docs/spec-additions.md §1); zip members keep their Unix permissions (a bootstrap or a
tool in `bin/` stays executable); each tree is built once, in a folder named
by a hash of its inputs (paths, sizes, modification times), and reused by
every sandbox and host that needs the same layers.
Must not: know about containers (the backend shows the tree at /opt).
Blocking: callers run it in a thread.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

def _fingerprint(layers: tuple[Path, ...]) -> str:
    digest = hashlib.sha256()
    for layer in layers:
        digest.update(f"layer {layer}\n".encode())
        paths = sorted(layer.rglob("*")) if layer.is_dir() else [layer]
        for p in paths:
            st = p.lstat()
            digest.update(f"{p.relative_to(layer) if layer.is_dir() else p.name} {st.st_size} "
                          f"{st.st_mtime_ns} {stat.S_IMODE(st.st_mode)}\n".encode())
    return digest.hexdigest()[:16]


def _extract_zip(archive_path: Path, target: Path) -> None:
    with zipfile.ZipFile(archive_path) as archive:
        for info in archive.infolist():
            destination = (target / info.filename).resolve()
            if target.resolve() not in destination.parents and destination != target.resolve():
                raise ValueError(f"{archive_path}: member {info.filename!r} would land outside /opt")
            mode = (info.external_attr >> 16) & 0o7777
            if info.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            if destination.is_symlink() or destination.exists():
                destination.unlink()               # a later layer wins
            if stat.S_ISLNK(info.external_attr >> 16):
                os.symlink(archive.read(info).decode(), destination)
                continue
            with archive.open(info) as source, open(destination, "wb") as out:
                shutil.copyfileobj(source, out)
            os.chmod(destination, mode or 0o644)


def assemble(layers: tuple[Path, ...], cache_root: Path) -> Path | None:
    """The folder that holds `layers` extracted in order (None for no layers).
    Every file in it is readable by the sandbox user."""
    if not layers:
        return None
    key = _fingerprint(layers)
    tree, complete = cache_root / key, cache_root / f"{key}.complete"
    if complete.exists():
        return tree
    cache_root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tree, ignore_errors=True)         # left half-built by a host that died
    building = Path(tempfile.mkdtemp(prefix=".building-", dir=cache_root))
    try:
        for layer in layers:
            if layer.is_dir():
                shutil.copytree(layer, building, symlinks=True, dirs_exist_ok=True)
            else:
                _extract_zip(layer, building)
        os.chmod(building, 0o755)                  # mkdtemp makes it 0700: the sandbox user must see in
        try:
            building.rename(tree)
        except OSError:                            # another host built the same tree meanwhile
            shutil.rmtree(building, ignore_errors=True)
        complete.touch()
        return tree
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
