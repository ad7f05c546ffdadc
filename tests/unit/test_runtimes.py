"""The runtime table (runtime_host/core/runtimes.py) as function.toml, the
sandbox environment and the stem cells read it: which identifiers load, what a
refusal says, the deprecation warning with Lambda's date, AWS_EXECUTION_ENV,
the Node flags Lambda sets (and a NODE_OPTIONS that turns one back on), Ruby's
search paths. Pure logic; the images and clients are tests/e2e/test_runtimes.py's."""
from __future__ import annotations

import datetime
from dataclasses import replace
from pathlib import Path

import pytest

from runtime_host.core import runtimes
from runtime_host.core.config import IMAGE_OF_RUNTIME, RUNTIMES, ConfigError, load_function
from runtime_host.core.environment import runtime_command, sandbox_env, starts_its_own_interpreter

MANAGED = {"python3.11": "app.handler", "python3.13": "app.handler", "nodejs18.x": "index.handler",
           "nodejs20.x": "index.handler", "nodejs22.x": "index.handler", "nodejs24.x": "index.handler",
           "ruby3.3": "function.handler"}


def load(tmp_path: Path, toml: str, bootstrap: bool = False):
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "function.toml").write_text(toml)
    if bootstrap:
        (folder / "bootstrap").write_text("#!/bin/sh\n")
        (folder / "bootstrap").chmod(0o755)
    return load_function(folder)


def env_of(fn) -> dict[str, str]:
    return sandbox_env(fn, region="us-east-1", runtime_api="127.0.0.1:9001")


@pytest.mark.parametrize("runtime, handler", MANAGED.items())
def test_every_managed_runtime_loads_with_its_image_and_execution_env(tmp_path, runtime, handler):
    fn = load(tmp_path, f'runtime = "{runtime}"\nhandler = "{handler}"\n')
    assert fn.lambda_runtime == runtime and IMAGE_OF_RUNTIME[runtime] == runtime
    assert env_of(fn)["AWS_EXECUTION_ENV"] == f"AWS_Lambda_{runtime}"


@pytest.mark.parametrize("runtime", ["provided", "provided.al2", "provided.al2023"])
def test_os_only_runtimes_share_the_provided_image_and_have_no_execution_env(tmp_path, runtime):
    fn = load(tmp_path, f'runtime = "{runtime}"\n', bootstrap=True)
    assert fn.is_custom_runtime and IMAGE_OF_RUNTIME[runtime] == "provided"
    assert fn.lambda_runtime == ("provided.al2" if runtime == "provided.al2" else "provided.al2023")
    assert "AWS_EXECUTION_ENV" not in env_of(fn)
    assert runtime_command(fn) == ["/var/task/bootstrap"]


@pytest.mark.parametrize("runtime", list(MANAGED))
def test_a_handler_without_a_dot_is_refused_on_every_managed_runtime(tmp_path, runtime):
    with pytest.raises(ConfigError, match="expected 'file.function'"):
        load(tmp_path, f'runtime = "{runtime}"\nhandler = "handler"\n')


def test_an_unknown_runtime_is_refused_with_the_list_of_what_exists(tmp_path):
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, 'runtime = "java21"\nhandler = "a.b"\n')
    for runtime in RUNTIMES:
        assert runtime in str(refused.value)


@pytest.mark.parametrize("runtime, reason", [
    ("python3.12", "no Debian suite reachable here packages Python 3.12"),
    ("python3.14", "only in Debian testing (forky)"),
])
def test_a_lambda_python_we_cannot_build_is_refused_saying_why(tmp_path, runtime, reason):
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, f'runtime = "{runtime}"\nhandler = "app.handler"\n')
    message = str(refused.value)
    assert f"{runtime} is a Lambda runtime, but" in message and reason in message
    assert "python3.11" in message and "python3.13" in message


@pytest.mark.parametrize("runtime, date, words", [
    ("python3.11", datetime.date(2026, 6, 30), "June 30, 2026"),
    ("nodejs18.x", datetime.date(2025, 9, 1), "September 1, 2025"),
    ("nodejs20.x", datetime.date(2026, 4, 30), "April 30, 2026"),
    ("provided.al2", datetime.date(2026, 6, 30), "June 30, 2026"),
])
def test_a_deprecated_runtime_warns_from_its_date_on(runtime, date, words):
    entry = runtimes.RUNTIMES[runtime]
    assert entry.deprecation(date - datetime.timedelta(days=1)) is None
    warning = entry.deprecation(date)
    assert warning is not None and f"runtime {runtime!r} is deprecated" in warning and words in warning
    assert "still runs here" in warning


@pytest.mark.parametrize("runtime", ["python3.13", "nodejs22.x", "nodejs24.x", "ruby3.3", "provided.al2023"])
def test_a_supported_runtime_does_not_warn_today(runtime):
    assert runtimes.RUNTIMES[runtime].deprecation(datetime.date(2026, 12, 7)) is None


@pytest.mark.parametrize("runtime, flags", [
    ("nodejs18.x", []), ("nodejs24.x", []),
    ("nodejs20.x", ["--no-experimental-require-module"]),
    ("nodejs22.x", ["--no-experimental-require-module", "--no-experimental-detect-module"]),
])
def test_node_starts_with_the_flags_lambda_sets(tmp_path, runtime, flags):
    fn = load(tmp_path, f'runtime = "{runtime}"\nhandler = "index.handler"\n')
    assert runtime_command(fn) == ["/usr/bin/node", *flags, "/var/runtime/runtime.js"]
    assert not starts_its_own_interpreter(fn)


def test_node_options_turning_a_feature_back_on_drops_only_its_flag_and_the_stem(tmp_path):
    fn = load(tmp_path, 'runtime = "nodejs22.x"\nhandler = "index.handler"\n'
                        '[environment]\nNODE_OPTIONS = "--experimental-require-module --enable-source-maps"\n')
    assert runtime_command(fn) == ["/usr/bin/node", "--no-experimental-detect-module", "/var/runtime/runtime.js"]
    assert starts_its_own_interpreter(fn)          # node reads NODE_OPTIONS only as it starts


def test_node_path_names_the_runtimes_major(tmp_path):
    fn = load(tmp_path, 'runtime = "nodejs24.x"\nhandler = "index.handler"\n')
    assert env_of(fn)["NODE_PATH"].startswith("/opt/nodejs/node24/node_modules:/opt/nodejs/node_modules:")


def test_ruby_gets_lambdas_gem_and_library_paths(tmp_path):
    fn = load(tmp_path, 'runtime = "ruby3.3"\nhandler = "function.handler"\n')
    env = env_of(fn)
    assert env["GEM_PATH"].split(":") == ["/var/task/vendor/bundle/ruby/3.3.0", "/opt/ruby/gems/3.3.0",
                                          "/var/runtime/vendor/bundle/ruby/3.3.0"]
    assert env["RUBYLIB"] == "/var/task:/var/runtime/lib:/opt/ruby/lib"
    assert runtime_command(fn) == ["/usr/bin/ruby", "/var/runtime/runtime_client.rb"]
    assert "NODE_PATH" not in env


def test_every_image_a_runtime_names_has_a_stem_program():
    for entry in runtimes.RUNTIMES.values():
        if entry.image:
            assert entry.stem, entry.name
    assert runtimes.runtime_images() == ("python3.11", "python3.13", "nodejs18.x", "nodejs20.x", "nodejs22.x",
                                         "nodejs24.x", "ruby3.3", "provided")


def test_a_function_keeps_the_identifier_it_was_written_with(tmp_path):
    fn = load(tmp_path, 'runtime = "provided.al2"\n', bootstrap=True)
    assert fn.runtime == "provided.al2"
    assert replace(fn, runtime="provided").lambda_runtime == "provided.al2023"
