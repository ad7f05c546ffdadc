"""A small load run in the suite (issue 16): about 1,000 invocations from 16
callers across 3 functions, sync and `Event` mixed, some failing on purpose,
on a host of its own (tests/load.py; `make load` runs 20,000, `make soak` a
million)."""
from __future__ import annotations

from tests.load import run


def test_a_thousand_mixed_invocations_lose_nothing_and_run_each_event_once(docker_engine):
    report = run(calls=1000, callers=16, log=lambda *_: None)
    summary = report.summary()
    assert report.failures() == [], summary
    # What failures() judged, spelt out: one answer per call, one ledger record and one run
    # per call the host took, nothing throttled ran, memory back where the warm-up left it.
    assert report.calls >= 1000 and report.answers["event"] > 0 and report.answers["fail"] > 0, summary
    assert report.ledger_records == report.expected_records >= report.calls - report.throttled, summary
    assert report.duplicate_request_ids == report.ledger_missing == report.ledger_extra == 0, summary
    assert report.runs_missing == report.runs_twice == report.throttled_but_ran == 0, summary
    assert report.rss_after_kb <= report.rss_warm_kb * 1.10, summary
