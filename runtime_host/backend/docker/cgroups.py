"""A container's cgroups, read and written through /sys/fs/cgroup: the only
code that does.

Owns: finding a container's cgroup directories from its init pid
(/proc/PID/cgroup, v1 or v2), and reading its memory peak and CPU time.
(Freezing comes with the lifecycle work and lives here too.)
Must not: call Docker. Reads are small sysfs files: fast enough to do on the
event loop, which is why they are plain functions.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_PEAK_FDS: dict[Path, int] = {}      # open memory-peak files, by cgroup directory


@dataclass(frozen=True)
class ContainerCgroups:
    memory: Path | None      # v1 memory controller dir, or the v2 unified dir
    cpuacct: Path | None
    cpu: Path | None         # where the CFS quota is set
    freezer: Path | None
    v2: bool

    @classmethod
    def of_pid(cls, pid: int) -> "ContainerCgroups":
        """Where pid's cgroups are. Raises OSError if the process is gone."""
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        v1: dict[str, str] = {}
        unified = None
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                unified = path
            for c in controllers.split(","):
                v1[c] = path
        if "memory" in v1:
            def d(ctrl: str) -> Path | None:
                p = CGROUP_ROOT / ctrl / v1[ctrl].lstrip("/") if ctrl in v1 else None
                return p if p is not None and p.is_dir() else None
            return cls(memory=d("memory"), cpuacct=d("cpuacct") or d("cpu,cpuacct"),
                       cpu=d("cpu") or d("cpu,cpuacct"), freezer=d("freezer"), v2=False)
        path = CGROUP_ROOT / (unified or "/").lstrip("/")
        return cls(memory=path, cpuacct=path, cpu=path, freezer=path, v2=True)

    def memory_peak_bytes(self) -> int | None:
        """Read at the end of every invocation: through a file kept open."""
        if self.memory is None:
            return None
        try:
            fd = self._peak_fd()
            return int(os.pread(fd, 32, 0))
        except (OSError, ValueError):
            return None

    def _peak_fd(self) -> int:
        fd = _PEAK_FDS.get(self.memory)
        if fd is None:
            name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
            fd = _PEAK_FDS[self.memory] = os.open(self.memory / name, os.O_RDONLY)
        return fd

    def close(self) -> None:
        fd = _PEAK_FDS.pop(self.memory, None) if self.memory is not None else None
        if fd is not None:
            os.close(fd)

    def memory_now_bytes(self) -> int | None:
        if self.memory is None:
            return None
        name = "memory.current" if self.v2 else "memory.usage_in_bytes"
        try:
            return int((self.memory / name).read_text())
        except (OSError, ValueError):
            return None


def set_cpu_quota(groups: ContainerCgroups, quota_us: int, period_us: int) -> bool:
    """Sets the container's CFS quota (v1 cpu.cfs_quota_us, v2 cpu.max);
    False if it could not be written. One small write: done on the loop."""
    if groups.cpu is None:
        return False
    try:
        if groups.v2:
            (groups.cpu / "cpu.max").write_text(f"{quota_us} {period_us}")
        else:
            (groups.cpu / "cpu.cfs_quota_us").write_text(str(quota_us))
        return True
    except OSError:
        return False


def cpu_seconds(groups: ContainerCgroups) -> float | None:
    """CPU time used by every process of the container so far."""
    try:
        if groups.v2:
            for line in (groups.cpuacct / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
            return None
        return int((groups.cpuacct / "cpuacct.usage").read_text()) / 1e9
    except (OSError, ValueError, TypeError):
        return None


class Freezer:
    """Freezes and thaws every process of one container through its freezer
    cgroup (v1 `freezer.state`, v2 `cgroup.freeze`), and waits until the
    kernel reports the state reached. About 0.13 ms each way here, so it is
    done synchronously on the event loop; the file stays open between uses."""

    # The kernel normally reports FROZEN on the first read; a task in an
    # uninterruptible sleep can hold it in FREEZING a little longer.
    MAX_POLLS = 2000

    def __init__(self, directory: Path, v2: bool):
        self.v2 = v2
        control = directory / ("cgroup.freeze" if v2 else "freezer.state")
        self._fd = os.open(control, os.O_RDWR)
        self._events = directory / "cgroup.events" if v2 else None

    @classmethod
    def of(cls, groups: "ContainerCgroups") -> "Freezer | None":
        if groups.freezer is None:
            return None
        try:
            return cls(groups.freezer, groups.v2)
        except OSError:
            return None

    def _write(self, value: bytes) -> None:
        if self._fd is None:          # closed: never write to a number the OS may have reused
            raise OSError("freezer closed")
        os.pwrite(self._fd, value, 0)

    def _state_reached(self, frozen: bool) -> bool:
        if self.v2:
            text = self._events.read_text()
            return (f"frozen {1 if frozen else 0}") in text
        if self._fd is None:
            raise OSError("freezer closed")
        return os.pread(self._fd, 16, 0).strip() == (b"FROZEN" if frozen else b"THAWED")

    def freeze(self) -> bool:
        """True once every process is frozen. A cgroup that is gone (the
        container died) counts as done: its exit event follows."""
        try:
            self._write(b"1" if self.v2 else b"FROZEN")
            return any(self._state_reached(True) for _ in range(self.MAX_POLLS))
        except OSError:
            return True

    def thaw(self) -> bool:
        try:
            self._write(b"0" if self.v2 else b"THAWED")
            return any(self._state_reached(False) for _ in range(self.MAX_POLLS))
        except OSError:
            return True

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
