"""The Docker backend's folders under <state>/stems/ (issue 16, defect 7): a
host that is no longer running leaves its folder behind when it is killed;
the next host on the state directory removes it, and never a live host's
(two hosts may share a state directory). Liveness is a flock the kernel
drops when its host dies, however it dies."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runtime_host.backend.docker import workdirs

DEAD, LIVE, LEGACY = "aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"
MINE = "000000000000"


def left_folder(stems: Path, name: str) -> Path:
    """A folder as a host leaves it: a stem cell's code and an output FIFO's folder."""
    folder = stems / name
    (folder / "1234abcd" / "pkg").mkdir(parents=True)
    (folder / "1234abcd" / "pkg" / "app.py").write_text("x = 1\n")
    (folder / "5678ef01-io").mkdir()
    return folder


@pytest.fixture
def live_host(tmp_path):
    """Another process holding its lock, as a running host does."""
    stems = tmp_path / "stems"
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from runtime_host.backend.docker import workdirs
        workdirs.claim(Path({str(stems / LIVE)!r}))
        print("locked", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    proc.kill()
    proc.wait()


def dead_host(stems: Path, name: str) -> None:
    """A host that claimed its folder and was killed: its lock file is there, its lock is not."""
    proc = subprocess.run([sys.executable, "-c", "from pathlib import Path; from runtime_host.backend.docker "
                           f"import workdirs; workdirs.claim(Path({str(stems / name)!r}))"], check=True)
    assert proc.returncode == 0


def test_a_dead_hosts_folder_and_lock_file_are_removed(tmp_path):
    stems = tmp_path / "stems"
    dead_host(stems, DEAD)
    left_folder(stems, DEAD)
    assert workdirs.remove_leftovers(stems, MINE, live_host_ids=set()) == [DEAD]
    assert not (stems / DEAD).exists()
    assert not (stems / f"{DEAD}.lock").exists()


def test_a_live_hosts_folder_is_kept(tmp_path, live_host):
    stems = tmp_path / "stems"
    folder = left_folder(stems, LIVE)
    # Even were the engine to show no host of that id: its lock says it lives.
    assert workdirs.remove_leftovers(stems, MINE, live_host_ids=set()) == []
    assert (folder / "1234abcd" / "pkg" / "app.py").exists()
    assert (stems / f"{LIVE}.lock").exists()


def test_the_hosts_own_folder_is_kept(tmp_path):
    stems = tmp_path / "stems"
    fd = workdirs.claim(stems / MINE)
    try:
        folder = left_folder(stems, MINE)
        assert workdirs.remove_leftovers(stems, MINE, live_host_ids=set()) == []
        assert folder.exists()
    finally:
        workdirs.release(stems / MINE, fd)


def test_dead_and_live_side_by_side_only_the_dead_goes(tmp_path, live_host):
    stems = tmp_path / "stems"
    dead_host(stems, DEAD)
    left_folder(stems, DEAD)
    left_folder(stems, LIVE)
    assert workdirs.remove_leftovers(stems, MINE, live_host_ids=set()) == [DEAD]
    assert sorted(p.name for p in stems.iterdir()) == [LIVE, f"{LIVE}.lock"]


def test_a_lock_file_whose_host_died_before_making_its_folder_is_removed(tmp_path):
    stems = tmp_path / "stems"
    dead_host(stems, DEAD)
    assert workdirs.remove_leftovers(stems, MINE, live_host_ids=set()) == [DEAD]
    assert list(stems.iterdir()) == []


def test_a_folder_without_lock_file_goes_only_when_the_engine_shows_no_live_host_of_its_id(tmp_path):
    stems = tmp_path / "stems"
    left_folder(stems, LEGACY)
    assert workdirs.remove_leftovers(stems, MINE, live_host_ids=None) == []          # not known: kept
    assert workdirs.remove_leftovers(stems, MINE, live_host_ids={LEGACY + "d" * 20}) == []
    assert (stems / LEGACY).exists()
    assert workdirs.remove_leftovers(stems, MINE, live_host_ids={"f" * 32}) == [LEGACY]
    assert not (stems / LEGACY).exists()


def test_a_claimed_lock_is_held_until_released(tmp_path):
    stems = tmp_path / "stems"
    fd = workdirs.claim(stems / MINE)
    # Another host's sweep (another open file) cannot take it, so keeps the folder.
    left_folder(stems, MINE)
    assert workdirs.remove_leftovers(stems, "someone-else", live_host_ids=set()) == []
    workdirs.release(stems / MINE, fd)
    assert not (stems / f"{MINE}.lock").exists()


def test_no_stems_folder_yet_is_nothing_to_remove(tmp_path):
    assert workdirs.remove_leftovers(tmp_path / "stems", MINE, live_host_ids=set()) == []
