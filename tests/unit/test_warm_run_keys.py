"""warm_run's key and code fingerprint: what decides whether a warm host and
its sandbox may serve a run (no Docker needed)."""
from __future__ import annotations

import os

from runtime_host import warm_run


def test_the_key_follows_the_folder_and_its_configuration(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        (folder / "function.toml").write_text('runtime = "python3.11"\nhandler = "app.handler"\n')
    assert warm_run.key_of(a) == warm_run.key_of(a)
    assert warm_run.key_of(a) != warm_run.key_of(b)
    before = warm_run.key_of(a)
    (a / "function.toml").write_text('runtime = "python3.11"\nhandler = "app.handler"\nmemory_mb = 256\n')
    assert warm_run.key_of(a) != before


def test_the_fingerprint_changes_with_any_file_of_the_code(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "app.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "m.py").write_text("y = 1\n")
    first = warm_run.code_fingerprint(tmp_path)
    assert warm_run.code_fingerprint(tmp_path) == first
    (tmp_path / "pkg" / "m.py").write_text("y = 22\n")            # size
    second = warm_run.code_fingerprint(tmp_path)
    assert second != first
    st = os.stat(tmp_path / "app.py")
    os.utime(tmp_path / "app.py", ns=(st.st_atime_ns, st.st_mtime_ns + 1))   # same size, saved again
    third = warm_run.code_fingerprint(tmp_path)
    assert third != second
    (tmp_path / "new.py").write_text("")                            # a new file
    assert warm_run.code_fingerprint(tmp_path) != third


def test_no_record_means_no_warm_host(tmp_path):
    assert warm_run.stop_warm_hosts(tmp_path, tmp_path / "fn") == []
    path = tmp_path / "warm" / "k.json"
    path.parent.mkdir()
    path.write_text('{"pid": 999999999, "port": 1, "folder": "/x", "key": "k"}')
    assert warm_run._read_record(path) is None, "a record of a process that is gone"
