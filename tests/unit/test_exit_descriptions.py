"""How a runtime's exit is worded in a Runtime.ExitError (spec §3.4, Go's wording)."""
from __future__ import annotations

import pytest

from runtime_host.core.exits import describe_exit


@pytest.mark.parametrize("status", [1, 2, 127, 128])
def test_non_zero_exit_is_reported_as_exit_status(status):
    assert describe_exit(status) == f"Runtime exited with error: exit status {status}"


def test_exit_zero_is_reported_as_exiting_without_a_reason():
    assert describe_exit(0) == "Runtime exited without providing a reason"


def test_exit_137_is_reported_as_killed():
    assert describe_exit(137) == "Runtime exited with error: signal: killed"


def test_exit_143_is_reported_as_terminated():
    assert describe_exit(143) == "Runtime exited with error: signal: terminated"


def test_exit_139_is_reported_as_segmentation_fault():
    assert describe_exit(139) == "Runtime exited with error: signal: segmentation fault"


def test_exit_255_is_an_exit_status_not_a_signal():
    assert describe_exit(255) == "Runtime exited with error: exit status 255"


def test_user_defined_signal_uses_gos_name():
    assert describe_exit(128 + 10) == "Runtime exited with error: signal: user defined signal 1"
