"""Sanitising Lambda-Runtime-Function-Error-Type as RAPID does (spec §1.8)."""
from __future__ import annotations

import pytest

from runtime_host.core.rules import sanitize_error_type


@pytest.mark.parametrize("value", [
    "Runtime.ImportModuleError", "Runtime.ExitError", "Function.ResponseSizeTooLarge", "Function.Unknown",
])
def test_runtime_or_function_type_is_kept_as_is(value):
    assert sanitize_error_type(value) == value


@pytest.mark.parametrize("value", ["MyRuntime.CustomError", "Error: Function.Boom happened", "x.Runtime.Ab"])
def test_pattern_found_anywhere_keeps_the_whole_value_because_it_is_not_anchored(value):
    assert sanitize_error_type(value) == value


@pytest.mark.parametrize("value", ["Function.lowercase", "Function.", "Function.A", "Function.9Lives"])
def test_function_prefix_without_a_valid_name_becomes_function_unknown(value):
    assert sanitize_error_type(value) == "Function.Unknown"


@pytest.mark.parametrize("value", ["", None, "Unhandled", "unhandled", "ValueError", "Runtime.", "runtime.ExitError",
                                   "function.Boom"])
def test_anything_else_becomes_runtime_unknown(value):
    assert sanitize_error_type(value) == "Runtime.Unknown"


def test_a_type_with_a_digit_is_kept_when_a_valid_prefix_of_it_matches():
    # "Runtime.Ab" matches before the digit; the whole header value is kept.
    assert sanitize_error_type("Runtime.Ab1") == "Runtime.Ab1"
