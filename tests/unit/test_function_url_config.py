"""`url` in function.toml (docs/spec-additions.md §6): a function URL, its invoke
mode and auth type, and a refusal naming the file, the field, the value and
what is allowed."""
from __future__ import annotations

import pytest

from runtime_host.core.config import load_function
from runtime_host.core.http_events import UrlConfig
from tests.unit.test_config import PYTHON, assert_names, function_folder, refusal


def test_a_function_has_no_url_unless_it_asks(tmp_path):
    assert load_function(function_folder(tmp_path, "f", PYTHON)).url is None
    assert load_function(function_folder(tmp_path, "g", PYTHON + "url = false\n")).url is None


def test_url_true_is_a_buffered_url_without_auth(tmp_path):
    url = load_function(function_folder(tmp_path, "f", PYTHON + "url = true\n")).url
    assert url == UrlConfig("BUFFERED", "NONE") and not url.streams


def test_a_url_table_sets_the_invoke_mode(tmp_path):
    fn = load_function(function_folder(tmp_path, "f", PYTHON + 'url = { invoke_mode = "RESPONSE_STREAM", '
                                                               'auth_type = "NONE" }\n'))
    assert fn.url.invoke_mode == "RESPONSE_STREAM" and fn.url.streams


@pytest.mark.parametrize("line, field, value, allowed", [
    ('url = "yes"', "url", "'yes'", "expected true, false or a table"),
    ('url = { invoke_mode = "STREAM" }', "url.invoke_mode", "'STREAM'", "BUFFERED, RESPONSE_STREAM"),
    ('url = { auth_type = "AWS_IAM" }', "url.auth_type", "'AWS_IAM'", "does not check SigV4 signatures"),
    ('url = { auth_type = "OPEN" }', "url.auth_type", "'OPEN'", "expected NONE"),
    ('url = { cors = true }', "url.cors", "True", "known fields are invoke_mode, auth_type"),
])
def test_a_bad_url_is_refused_with_what_is_allowed(tmp_path, line, field, value, allowed):
    folder = function_folder(tmp_path, "f", PYTHON + line + "\n")
    assert_names(refusal(folder), folder, field, value, allowed)
