"""A full state disk (issue 16): the ledger says when new invocations must be
refused; the log sink loses output with a warning rather than failing the
invocation it belongs to. tests/e2e/test_disk_full.py runs the whole host on
a full tmpfs."""
from __future__ import annotations

import logging
import os

from runtime_host.store import ledger as ledger_module
from runtime_host.store.ledger import MIN_FREE_BYTES, Ledger
from runtime_host.store.logs import LogSink


class _Stat:
    def __init__(self, free_bytes: int):
        self.f_frsize = 4096
        self.f_bavail = free_bytes // 4096


def test_the_ledger_refuses_below_the_free_space_it_needs_and_names_the_directory(tmp_path, monkeypatch):
    ledger = Ledger(tmp_path)
    try:
        assert ledger.refusal() is None
        monkeypatch.setattr(ledger_module.os, "statvfs", lambda path: _Stat(MIN_FREE_BYTES - 4096))
        why = ledger.refusal()
        assert str(tmp_path) in why and "full" in why and "free space on that disk" in why
        monkeypatch.setattr(ledger_module.os, "statvfs", lambda path: _Stat(MIN_FREE_BYTES))
        assert ledger.refusal() is None, "room again: served again"
    finally:
        ledger.close()


def test_a_log_write_that_fails_with_enospc_loses_the_output_with_one_warning(tmp_path, caplog):
    sink = LogSink(tmp_path, echo=None)
    # /dev/full: every write fails with ENOSPC, as on a full disk
    sink._files["fn"] = open("/dev/full", "ab", buffering=0)
    sink._event_files["fn"] = open("/dev/full", "ab", buffering=0)
    with caplog.at_level(logging.WARNING, logger="runtime_host.store.logs"):
        sink.write("fn", b"one line\n", source="sandbox-1")
        sink.write("fn", b"START RequestId: x\n")
    assert sink.lost_bytes == len(b"one line\n") + len(b"START RequestId: x\n")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "free space" in warnings[0], warnings
    # writable again: written, and said so
    for f in (*sink._files.values(), *sink._event_files.values()):
        f.close()
    sink._files.clear()
    sink._event_files.clear()
    with caplog.at_level(logging.WARNING, logger="runtime_host.store.logs"):
        sink.write("fn", b"back\n", source="sandbox-1")
    assert (tmp_path / "fn.log").read_bytes() == b"back\n"
    assert "written again" in caplog.records[-1].getMessage()
    sink.close()
    assert os.path.exists(tmp_path / "fn.log")
