"""The Docker backend's folders under the state directory (`stems/<host>/`:
stem cells' /var/task and output FIFOs), and what hosts no longer running
left there.

Owns: this host's claim on its folder, a lock file beside it
(`stems/<host>.lock`) flocked for as long as the host lives, which the
kernel releases when the host dies, however it dies; removing the folders
(and lock files) of hosts whose lock nobody holds.
Must not: remove a folder whose host may be alive: several hosts may share a
state directory. A folder with no lock file (left by a host from before
these locks) goes only when the Docker engine shows no live host of that id.
"""
from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import Iterable

LOCK_SUFFIX = ".lock"


def lock_path(work_dir: Path) -> Path:
    return work_dir.parent / (work_dir.name + LOCK_SUFFIX)


def claim(work_dir: Path) -> int:
    """Takes this host's lock for work_dir (before anything is made in it);
    returns the descriptor to hold until release(). The lock file is made
    and locked under a temporary name, then renamed into place, so no other
    host ever sees it unlocked while its host lives."""
    stems = work_dir.parent
    stems.mkdir(parents=True, exist_ok=True)
    making = stems / f".{work_dir.name}{LOCK_SUFFIX}.{os.getpid()}"
    fd = os.open(making, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.rename(making, lock_path(work_dir))
    except BaseException:
        os.close(fd)
        making.unlink(missing_ok=True)
        raise
    return fd


def release(work_dir: Path, fd: int) -> None:
    """This host's folder is gone: its lock file goes, then the lock."""
    try:
        lock_path(work_dir).unlink(missing_ok=True)
    finally:
        os.close(fd)


def remove_leftovers(stems: Path, mine: str, live_host_ids: Iterable[str] | None) -> list[str]:
    """Removes the folders under `stems` of hosts no longer running and
    returns their names. `mine` (this host's folder) is never touched;
    `live_host_ids` are the ids of hosts the engine shows alive (None: not
    known, so folders without a lock file are kept)."""
    try:
        entries = list(os.scandir(stems))
    except FileNotFoundError:
        return []
    names = {e.name[:-len(LOCK_SUFFIX)] if e.name.endswith(LOCK_SUFFIX) else e.name
             for e in entries if not e.name.startswith(".")}
    live = None if live_host_ids is None else list(live_host_ids)
    removed = []
    for name in sorted(names - {mine}):
        folder, lock = stems / name, stems / (name + LOCK_SUFFIX)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = None
        if fd is None:                          # no lock file: a host from before these locks
            if folder.is_dir() and live is not None and not any(h.startswith(name) for h in live):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(name)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:                 # its host lives
            os.close(fd)
            continue
        try:                                    # ours now: nobody else removes it meanwhile
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
            lock.unlink(missing_ok=True)
            removed.append(name)
        finally:
            os.close(fd)
    return removed
