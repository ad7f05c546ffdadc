"""function.toml as the README and spec §5.1 describe it: the defaults an
absent field takes, and a refusal for every bad value that names the file,
the field, the value and what is allowed."""
from __future__ import annotations

from pathlib import Path

import pytest

from runtime_host.core.config import ConfigError, FunctionConfig, load_function, load_functions

PYTHON = 'runtime = "python3.11"\nhandler = "app.handler"\n'


def function_folder(parent: Path, folder: str, toml: str, bootstrap_mode: int | None = None) -> Path:
    """A function folder holding function.toml (and a bootstrap file with that mode, if given)."""
    path = parent / folder
    path.mkdir(parents=True)
    (path / "function.toml").write_text(toml, encoding="utf-8")
    if bootstrap_mode is not None:
        (path / "bootstrap").write_text("#!/bin/sh\n")
        (path / "bootstrap").chmod(bootstrap_mode)
    return path.resolve()


def refusal(folder: Path) -> str:
    with pytest.raises(ConfigError) as exc_info:
        load_function(folder)
    return str(exc_info.value)


def assert_names(message: str, folder: Path, field: str, value: str, allowed: str) -> None:
    assert str(folder / "function.toml") in message
    assert f"'{field}'" in message
    assert value in message
    assert allowed in message


# --- defaults -------------------------------------------------------------

def test_name_defaults_to_the_folder_name(tmp_path):
    fn = load_function(function_folder(tmp_path, "hello-py", PYTHON))
    assert fn.name == "hello-py"


@pytest.mark.parametrize("field, default", [
    ("memory_mb", 128),
    ("timeout_s", 3),
    ("reserved_concurrency", 10),
    ("ephemeral_storage_mb", 512),
])
def test_absent_numeric_field_takes_its_default(tmp_path, field, default):
    fn = load_function(function_folder(tmp_path, "fn", PYTHON))
    assert getattr(fn, field) == default


def test_code_dir_is_the_function_folder(tmp_path):
    folder = function_folder(tmp_path, "fn", PYTHON)
    assert load_function(folder).code_dir == folder


def test_name_field_overrides_the_folder_name(tmp_path):
    fn = load_function(function_folder(tmp_path, "folder", PYTHON + 'name = "other_name-2"\n'))
    assert fn.name == "other_name-2"


def test_numeric_environment_value_becomes_a_string(tmp_path):
    fn = load_function(function_folder(tmp_path, "fn", PYTHON + "[environment]\nPORT = 8080\nMODE = \"fast\"\n"))
    assert fn.environment == {"PORT": "8080", "MODE": "fast"}


# --- numeric ranges (spec §5.1) --------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("memory_mb", 128), ("memory_mb", 10240),
    ("timeout_s", 1), ("timeout_s", 900),
    ("ephemeral_storage_mb", 512), ("ephemeral_storage_mb", 10240),
    ("reserved_concurrency", 0),
])
def test_range_bounds_are_accepted(tmp_path, field, value):
    fn = load_function(function_folder(tmp_path, "fn", PYTHON + f"{field} = {value}\n"))
    assert getattr(fn, field) == value


@pytest.mark.parametrize("value", [127, 10241, 0])
def test_memory_outside_128_to_10240_is_refused_naming_field_and_range(tmp_path, value):
    folder = function_folder(tmp_path, "fn", PYTHON + f"memory_mb = {value}\n")
    assert_names(refusal(folder), folder, "memory_mb", f"= {value}", "from 128 to 10240")


@pytest.mark.parametrize("toml_value, shown", [("256.5", "256.5"), ('"256"', "'256'")])
def test_memory_that_is_not_a_whole_number_is_refused(tmp_path, toml_value, shown):
    folder = function_folder(tmp_path, "fn", PYTHON + f"memory_mb = {toml_value}\n")
    assert_names(refusal(folder), folder, "memory_mb", f"= {shown}", "whole number from 128 to 10240")


def test_timeout_given_as_a_boolean_is_refused_though_true_equals_1(tmp_path):
    folder = function_folder(tmp_path, "fn", PYTHON + "timeout_s = true\n")
    assert_names(refusal(folder), folder, "timeout_s", "= True", "whole number from 1 to 900")


def test_memory_given_as_a_boolean_is_refused(tmp_path):
    folder = function_folder(tmp_path, "fn", PYTHON + "memory_mb = true\n")
    assert_names(refusal(folder), folder, "memory_mb", "= True", "whole number from 128 to 10240")


@pytest.mark.parametrize("value", [0, 901])
def test_timeout_outside_1_to_900_is_refused_naming_field_and_range(tmp_path, value):
    folder = function_folder(tmp_path, "fn", PYTHON + f"timeout_s = {value}\n")
    assert_names(refusal(folder), folder, "timeout_s", f"= {value}", "from 1 to 900")


@pytest.mark.parametrize("value", [511, 10241])
def test_ephemeral_storage_outside_512_to_10240_is_refused_naming_field_and_range(tmp_path, value):
    folder = function_folder(tmp_path, "fn", PYTHON + f"ephemeral_storage_mb = {value}\n")
    assert_names(refusal(folder), folder, "ephemeral_storage_mb", f"= {value}", "from 512 to 10240")


def test_negative_reserved_concurrency_is_refused(tmp_path):
    folder = function_folder(tmp_path, "fn", PYTHON + "reserved_concurrency = -1\n")
    assert_names(refusal(folder), folder, "reserved_concurrency", "= -1", "from 0 to")


# --- runtime, handler, image -----------------------------------------------

def test_unknown_runtime_is_refused_listing_the_known_ones(tmp_path):
    folder = function_folder(tmp_path, "fn", 'runtime = "ruby3.2"\nhandler = "app.handler"\n')
    message = refusal(folder)
    assert_names(message, folder, "runtime", "'ruby3.2'", "python3.11")
    assert "nodejs18.x" in message and "provided.al2023" in message and "image" in message


def test_missing_runtime_is_refused(tmp_path):
    folder = function_folder(tmp_path, "fn", 'handler = "app.handler"\n')
    assert_names(refusal(folder), folder, "runtime", "None", "python3.11")


@pytest.mark.parametrize("runtime", ["python3.11", "nodejs18.x"])
def test_handler_without_a_dot_is_refused_for_managed_runtimes(tmp_path, runtime):
    folder = function_folder(tmp_path, "fn", f'runtime = "{runtime}"\nhandler = "handler"\n')
    assert_names(refusal(folder), folder, "handler", "'handler'", "'file.function'")


def test_absent_handler_is_refused_for_python(tmp_path):
    folder = function_folder(tmp_path, "fn", 'runtime = "python3.11"\n')
    assert_names(refusal(folder), folder, "handler", "''", "'file.function'")


def test_image_runtime_without_image_is_refused(tmp_path):
    folder = function_folder(tmp_path, "fn", 'runtime = "image"\n')
    assert_names(refusal(folder), folder, "image", "''", 'needs image =')


def test_image_runtime_with_image_is_accepted(tmp_path):
    fn = load_function(function_folder(tmp_path, "fn", 'runtime = "image"\nimage = "my-fn:latest"\n'))
    assert (fn.image, fn.is_image) == ("my-fn:latest", True)


def test_image_given_for_a_non_image_runtime_is_refused(tmp_path):
    folder = function_folder(tmp_path, "fn", PYTHON + 'image = "my-fn:latest"\n')
    assert_names(refusal(folder), folder, "image", "'my-fn:latest'", 'only runtime = "image" takes an image')


# --- unknown fields and names ----------------------------------------------

def test_unknown_field_is_refused_listing_the_known_fields(tmp_path):
    folder = function_folder(tmp_path, "fn", PYTHON + 'colour = "red"\n')
    message = refusal(folder)
    assert_names(message, folder, "colour", "'red'", "known fields are")
    assert "memory_mb" in message and "timeout_s" in message


@pytest.mark.parametrize("name", ["my function", "fn/x", "fn.py", "", "x" * 65])
def test_name_with_bad_characters_or_length_is_refused(tmp_path, name):
    folder = function_folder(tmp_path, "fn", PYTHON + f'name = "{name}"\n')
    assert_names(refusal(folder), folder, "name", repr(name), "1 to 64 letters, digits, '-' or '_'")


def test_folder_name_with_bad_characters_is_refused_when_no_name_is_given(tmp_path):
    folder = function_folder(tmp_path, "my fn", PYTHON)
    assert_names(refusal(folder), folder, "name", "'my fn'", "1 to 64 letters")


# --- environment (spec §4.1) -----------------------------------------------

@pytest.mark.parametrize("variable", ["AWS_REGION", "AWS_LAMBDA_FUNCTION_NAME", "LAMBDA_TASK_ROOT", "AWS_SECRET_ACCESS_KEY"])
def test_reserved_environment_variable_is_refused(tmp_path, variable):
    folder = function_folder(tmp_path, "fn", PYTHON + f'[environment]\n{variable} = "x"\n')
    assert_names(refusal(folder), folder, f"environment.{variable}", "'x'", "reserved by Lambda")


def test_environment_value_that_is_a_table_is_refused(tmp_path):
    folder = function_folder(tmp_path, "fn", PYTHON + "[environment]\nFOO = { bar = 1 }\n")
    assert_names(refusal(folder), folder, "environment.FOO", "{'bar': 1}", "expected a string")


def test_environment_that_is_not_a_table_is_refused(tmp_path):
    folder = function_folder(tmp_path, "fn", PYTHON + 'environment = "FOO=1"\n')
    assert_names(refusal(folder), folder, "environment", "'FOO=1'", "expected a table")


# --- the file itself ---------------------------------------------------------

def test_invalid_toml_is_refused_naming_the_file(tmp_path):
    folder = function_folder(tmp_path, "fn", 'runtime = "python3.11\n')
    message = refusal(folder)
    assert str(folder / "function.toml") in message
    assert "not valid TOML" in message


def test_missing_function_toml_is_refused_naming_the_file(tmp_path):
    folder = (tmp_path / "fn")
    folder.mkdir()
    message = refusal(folder.resolve())
    assert str(folder.resolve() / "function.toml") in message
    assert "missing" in message


# --- custom runtimes and bootstrap (spec §4.3) --------------------------------

@pytest.mark.parametrize("runtime", ["provided", "provided.al2023"])
def test_custom_runtime_without_bootstrap_is_refused(tmp_path, runtime):
    folder = function_folder(tmp_path, "fn", f'runtime = "{runtime}"\n')
    message = refusal(folder)
    assert str(folder) in message
    assert "'bootstrap'" in message
    assert "Runtime.InvalidEntrypoint" in message


def test_custom_runtime_with_non_executable_bootstrap_is_refused_saying_chmod(tmp_path):
    folder = function_folder(tmp_path, "fn", 'runtime = "provided"\n', bootstrap_mode=0o644)
    message = refusal(folder)
    assert f"chmod +x {folder / 'bootstrap'}" in message


def test_custom_runtime_with_executable_bootstrap_is_accepted(tmp_path):
    fn = load_function(function_folder(tmp_path, "fn", 'runtime = "provided"\n', bootstrap_mode=0o755))
    assert fn.is_custom_runtime


# --- FunctionConfig ------------------------------------------------------------

@pytest.mark.parametrize("runtime, reported", [
    ("provided", "provided.al2023"),
    ("provided.al2023", "provided.al2023"),
    ("python3.11", "python3.11"),
    ("nodejs18.x", "nodejs18.x"),
])
def test_lambda_runtime_is_the_identifier_lambda_reports(runtime, reported):
    fn = FunctionConfig(name="fn", runtime=runtime, handler="app.handler", code_dir=Path("/x"))
    assert fn.lambda_runtime == reported


def test_arn_without_qualifier():
    fn = FunctionConfig(name="hello", runtime="python3.11", handler="app.handler", code_dir=Path("/x"))
    assert fn.arn("us-east-1") == "arn:aws:lambda:us-east-1:000000000000:function:hello"


def test_arn_with_qualifier_appends_it():
    fn = FunctionConfig(name="hello", runtime="python3.11", handler="app.handler", code_dir=Path("/x"))
    assert fn.arn("eu-west-1", "$LATEST") == "arn:aws:lambda:eu-west-1:000000000000:function:hello:$LATEST"


# --- load_functions ---------------------------------------------------------------

def test_one_bad_folder_does_not_stop_the_others(tmp_path):
    function_folder(tmp_path, "good", PYTHON)
    bad = function_folder(tmp_path, "bad", PYTHON + "memory_mb = 64\n")
    functions, errors = load_functions(tmp_path)
    assert list(functions) == ["good"]
    assert len(errors) == 1
    assert str(bad / "function.toml") in str(errors[0])


def test_duplicate_name_is_an_error_for_the_second_folder(tmp_path):
    first = function_folder(tmp_path, "a", PYTHON + 'name = "same"\n')
    second = function_folder(tmp_path, "b", PYTHON + 'name = "same"\n')
    functions, errors = load_functions(tmp_path)
    assert functions["same"].code_dir == first
    assert len(errors) == 1
    assert str(second / "function.toml") in str(errors[0])
    assert "'name' = 'same'" in str(errors[0])
    assert "unique" in str(errors[0])


def test_root_that_is_itself_a_function_folder_yields_that_one_function(tmp_path):
    root = function_folder(tmp_path, "solo", PYTHON)
    function_folder(root, "nested", PYTHON)
    functions, errors = load_functions(root)
    assert list(functions) == ["solo"]
    assert errors == []


def test_sub_folders_without_function_toml_are_not_functions(tmp_path):
    function_folder(tmp_path, "fn", PYTHON)
    (tmp_path / "shared-lib").mkdir()
    functions, errors = load_functions(tmp_path)
    assert (list(functions), errors) == (["fn"], [])


def test_missing_root_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no such folder"):
        load_functions(tmp_path / "nope")


# --- max_concurrency (Lambda Managed Instances) ------------------------------

def test_max_concurrency_defaults_to_one_and_is_passed_to_the_runtime(tmp_path):
    from runtime_host.core.environment import sandbox_env

    one = load_function(function_folder(tmp_path, "one", PYTHON))
    many = load_function(function_folder(tmp_path, "many", PYTHON + "max_concurrency = 8\n"))
    assert one.max_concurrency == 1 and many.max_concurrency == 8
    assert "AWS_LAMBDA_MAX_CONCURRENCY" not in sandbox_env(one, region="us-east-1", runtime_api="x:1")
    assert sandbox_env(many, region="us-east-1", runtime_api="x:1")["AWS_LAMBDA_MAX_CONCURRENCY"] == "8"


@pytest.mark.parametrize("value", ["0", "65", '"4"'])
def test_max_concurrency_out_of_range_is_refused_naming_it(tmp_path, value):
    folder = function_folder(tmp_path, "bad", PYTHON + f"max_concurrency = {value}\n")
    message = refusal(folder)
    assert_names(message, folder, "max_concurrency", value.strip('"'), "64")


def test_max_concurrency_cannot_be_set_through_the_environment(tmp_path):
    folder = function_folder(tmp_path, "env", PYTHON + '[environment]\nAWS_LAMBDA_MAX_CONCURRENCY = "4"\n')
    assert "reserved" in refusal(folder)
