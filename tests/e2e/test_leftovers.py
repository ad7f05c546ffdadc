"""What a host killed with -9 leaves under the state directory (issue 16,
defect 7): the next host on the same state directory removes the killed
host's stems/<host>/ folder, and keeps the folder of a host still running
there (two hosts may share a state directory)."""
from __future__ import annotations

import os
import signal
import time

from tests.conftest import REPO, client_for, invoke, start_host, stop_host


def stems_folder(host) -> str:
    """The host's folder under stems/: the first 12 characters of its id, as its network's name ends."""
    return host.network().removeprefix("runtime-host-")


def wait_for(predicate, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_next_host_removes_a_killed_hosts_stem_folder_and_keeps_a_live_ones(docker_engine, tmp_path):
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "hello-python").symlink_to(REPO / "examples" / "hello-python")
    state = tmp_path / "state"
    stems = state / "stems"
    live = start_host(functions, state)
    killed = start_host(functions, state)
    later = None
    try:
        for host in (live, killed):
            invoke(client_for(host.endpoint), "hello-python", {"k": "v"})
        live_folder, killed_folder = stems_folder(live), stems_folder(killed)
        assert wait_for(lambda: (stems / live_folder).is_dir() and (stems / killed_folder).is_dir()), \
            sorted(os.listdir(stems))
        os.kill(killed.pid, signal.SIGKILL)
        killed.proc.wait()
        assert (stems / killed_folder).is_dir()              # nothing removed it yet

        later = start_host(functions, state)
        assert not (stems / killed_folder).exists()
        assert (stems / live_folder).is_dir()
        invoke(client_for(live.endpoint), "hello-python", {"still": "served"})   # and it still works
        assert sorted(os.listdir(stems)) == sorted(
            [live_folder, f"{live_folder}.lock", *([stems_folder(later)] if (stems / stems_folder(later)).exists()
                                                   else []), f"{stems_folder(later)}.lock"])
    finally:
        for host in (later, live, killed):
            if host is not None:
                stop_host(host)
    assert sorted(os.listdir(stems)) == []                  # clean stops leave nothing either
