"""Billed Duration and the REPORT line (spec §5.2, §5.3). Expected lines are
written out literally, tabs and trailing tab included."""
from __future__ import annotations

from runtime_host.core.billing import billed_duration_ms, report_line

RID = "8f5b3c3e-1d2a-4c6b-9e0f-123456789abc"


def test_billed_duration_rounds_up_to_the_next_millisecond():
    assert billed_duration_ms(15.01, None) == 16


def test_billed_duration_of_a_whole_millisecond_is_not_rounded_up():
    assert billed_duration_ms(15.0, None) == 15


def test_billed_duration_is_at_least_one_millisecond():
    assert billed_duration_ms(0.0, None) == 1


def test_billed_duration_of_a_sub_millisecond_invoke_is_one_millisecond():
    assert billed_duration_ms(0.2, None) == 1


def test_cold_start_bills_init_plus_duration_rounded_up_once():
    # Since 1 Aug 2025 INIT is billed for every configuration: ceil(130.49 + 15.74) = ceil(146.23).
    assert billed_duration_ms(15.74, 130.49) == 147


def test_init_and_duration_are_summed_before_rounding():
    # ceil(0.4 + 0.4) = 1, not ceil(0.4) + ceil(0.4) = 2
    assert billed_duration_ms(0.4, 0.4) == 1


def test_warm_report_line_has_no_init_duration_and_ends_with_a_tab():
    assert report_line(RID, 15.74, 128, 56) == (
        f"REPORT RequestId: {RID}\tDuration: 15.74 ms\tBilled Duration: 16 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 56 MB\t")


def test_cold_report_line_adds_init_duration_last_and_bills_it():
    assert report_line(RID, 15.74, 128, 56, init_duration_ms=130.49) == (
        f"REPORT RequestId: {RID}\tDuration: 15.74 ms\tBilled Duration: 147 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 56 MB\tInit Duration: 130.49 ms\t")


def test_durations_are_printed_with_two_decimals():
    assert report_line(RID, 3.0, 512, 70, init_duration_ms=100.456) == (
        f"REPORT RequestId: {RID}\tDuration: 3.00 ms\tBilled Duration: 104 ms\t"
        "Memory Size: 512 MB\tMax Memory Used: 70 MB\tInit Duration: 100.46 ms\t")


def test_timed_out_invoke_adds_status_timeout():
    assert report_line(RID, 3000.52, 128, 41, status="timeout") == (
        f"REPORT RequestId: {RID}\tDuration: 3000.52 ms\tBilled Duration: 3001 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 41 MB\tStatus: timeout\t")


def test_failed_invoke_adds_status_error_and_error_type():
    assert report_line(RID, 12.3, 128, 41, status="error", error_type="Runtime.ExitError") == (
        f"REPORT RequestId: {RID}\tDuration: 12.30 ms\tBilled Duration: 13 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 41 MB\tStatus: error\tError Type: Runtime.ExitError\t")


def test_failed_cold_invoke_puts_status_after_init_duration():
    assert report_line(RID, 1.5, 128, 30, init_duration_ms=200.25, status="error",
                       error_type="Runtime.ExitError") == (
        f"REPORT RequestId: {RID}\tDuration: 1.50 ms\tBilled Duration: 202 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 30 MB\tInit Duration: 200.25 ms\t"
        "Status: error\tError Type: Runtime.ExitError\t")


def test_successful_invoke_has_no_status_even_if_an_error_type_is_passed():
    assert report_line(RID, 1.0, 128, 30, error_type="Runtime.ExitError") == (
        f"REPORT RequestId: {RID}\tDuration: 1.00 ms\tBilled Duration: 1 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 30 MB\t")


def test_timeout_has_no_error_type_field():
    assert "Error Type" not in report_line(RID, 3000.0, 128, 30, status="timeout", error_type="Sandbox.Timedout")


def test_billed_duration_adds_up_the_figures_as_report_shows_them():
    # REPORT shows 15.12 and 4.88: a reader expects 20, whatever the third decimal was
    assert billed_duration_ms(15.1234, 4.8834) == 20
    assert billed_duration_ms(15.12, 4.88) == 20          # 15.12 + 4.88 is 20.000000000000004 in floats
    assert billed_duration_ms(15.126, 4.88) == 21         # shown as 15.13: 20.01 rounds up
