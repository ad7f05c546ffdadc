"""The FunctionName forms the Invoke API accepts (spec §6.1)."""
from __future__ import annotations

from runtime_host.api.invoke_api import parse_function_name


def test_plain_name_has_no_qualifier():
    assert parse_function_name("my-function") == ("my-function", None)


def test_name_with_qualifier():
    assert parse_function_name("my-function:v1") == ("my-function", "v1")


def test_name_with_latest_qualifier():
    assert parse_function_name("my-function:$LATEST") == ("my-function", "$LATEST")


def test_full_arn_without_qualifier():
    arn = "arn:aws:lambda:us-east-1:123456789012:function:my-function"
    assert parse_function_name(arn) == ("my-function", None)


def test_full_arn_with_qualifier():
    arn = "arn:aws:lambda:us-east-1:123456789012:function:my-function:prod"
    assert parse_function_name(arn) == ("my-function", "prod")


def test_partial_arn_without_qualifier():
    assert parse_function_name("123456789012:function:my-function") == ("my-function", None)


def test_partial_arn_with_qualifier():
    assert parse_function_name("123456789012:function:my-function:7") == ("my-function", "7")
