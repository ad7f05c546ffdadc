"""Layers: what function.toml accepts and refuses, and how the /opt tree is
put together (in order, later layers winning, zip permissions kept)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runtime_host.core.config import ConfigError, load_function
from runtime_host.core.environment import runtime_command, sandbox_env
from runtime_host.store.layers import assemble
from tests.zips import make_zip


def write_function(folder: Path, toml: str, files: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "function.toml").write_text(toml)
    for name, text in (files or {"app.py": "def handler(e, c):\n    return e\n"}).items():
        (folder / name).write_text(text)
    return folder


def test_layers_are_read_in_order_relative_to_the_function_folder(tmp_path):
    (tmp_path / "common").mkdir()
    make_zip(tmp_path / "tools.zip", {"bin/tool": ("#!/bin/sh\n", 0o755)})
    fn = load_function(write_function(tmp_path / "fn", 'runtime = "python3.11"\nhandler = "app.handler"\n'
                                      'layers = ["../common", "../tools.zip"]\n'))
    assert fn.layers == ((tmp_path / "common").resolve(), (tmp_path / "tools.zip").resolve())


def test_a_missing_layer_is_refused_naming_the_file_the_field_and_the_path(tmp_path):
    folder = write_function(tmp_path / "fn", 'runtime = "python3.11"\nhandler = "app.handler"\nlayers = ["../nope"]\n')
    with pytest.raises(ConfigError) as exc:
        load_function(folder)
    message = str(exc.value)
    assert "function.toml" in message and "'layers'" in message and "'../nope'" in message
    assert "no such file or folder" in message


def test_a_file_that_is_not_a_zip_is_refused(tmp_path):
    (tmp_path / "layer.zip").write_text("not a zip")
    folder = write_function(tmp_path / "fn", 'runtime = "python3.11"\nhandler = "app.handler"\nlayers = ["../layer.zip"]\n')
    with pytest.raises(ConfigError, match="is not a .zip archive"):
        load_function(folder)


def test_a_sixth_layer_is_refused(tmp_path):
    for i in range(6):
        (tmp_path / f"l{i}").mkdir()
    listed = ", ".join(f'"../l{i}"' for i in range(6))
    folder = write_function(tmp_path / "fn", f'runtime = "python3.11"\nhandler = "app.handler"\nlayers = [{listed}]\n')
    with pytest.raises(ConfigError, match="at most 5 layers"):
        load_function(folder)


def test_an_image_function_takes_no_layers(tmp_path):
    (tmp_path / "l").mkdir()
    folder = write_function(tmp_path / "fn", 'runtime = "image"\nimage = "x:latest"\nlayers = ["../l"]\n')
    with pytest.raises(ConfigError, match="no layers on Lambda"):
        load_function(folder)


def test_a_provided_bootstrap_may_come_from_a_layer(tmp_path):
    make_zip(tmp_path / "runtime.zip", {"bootstrap": ("#!/bin/sh\n", 0o755)})
    fn = load_function(write_function(tmp_path / "fn", 'runtime = "provided"\nhandler = "f.h"\nlayers = ["../runtime.zip"]\n',
                                      {"f.sh": "h() { :; }\n"}))
    assert fn.bootstrap == "/opt/bootstrap"
    assert runtime_command(fn) == ["/opt/bootstrap"]


def test_a_layers_bootstrap_that_is_not_executable_is_refused(tmp_path):
    make_zip(tmp_path / "runtime.zip", {"bootstrap": ("#!/bin/sh\n", 0o644)})
    folder = write_function(tmp_path / "fn", 'runtime = "provided"\nhandler = "f.h"\nlayers = ["../runtime.zip"]\n',
                            {"f.sh": ""})
    with pytest.raises(ConfigError, match="not executable"):
        load_function(folder)


def test_a_provided_function_without_any_bootstrap_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    folder = write_function(tmp_path / "fn", 'runtime = "provided"\nhandler = "f.h"\nlayers = ["../empty"]\n', {"f.sh": ""})
    with pytest.raises(ConfigError, match="or at the top of one of its layers"):
        load_function(folder)


def test_the_exec_wrapper_is_handed_the_interpreter_and_its_arguments(tmp_path):
    fn = load_function(write_function(tmp_path / "fn", 'runtime = "python3.11"\nhandler = "app.handler"\n'
                                      '[environment]\nAWS_LAMBDA_EXEC_WRAPPER = "/opt/wrapper"\n'))
    assert runtime_command(fn) == ["/opt/wrapper", "/usr/bin/python3", "-u", "/var/runtime/runtime_client.py"]


def test_node_functions_get_lambdas_node_path(tmp_path):
    fn = load_function(write_function(tmp_path / "fn", 'runtime = "nodejs18.x"\nhandler = "index.handler"\n',
                                      {"index.js": ""}))
    env = sandbox_env(fn, region="us-east-1", runtime_api="127.0.0.1:9001")
    assert env["NODE_PATH"].split(":")[:2] == ["/opt/nodejs/node18/node_modules", "/opt/nodejs/node_modules"]


# --- putting /opt together ---------------------------------------------------------------
def test_layers_are_extracted_in_order_and_later_layers_win(tmp_path):
    first = tmp_path / "first"
    (first / "python").mkdir(parents=True)
    (first / "python" / "shared.py").write_text("WHO = 'first'\n")
    (first / "only_first.txt").write_text("1")
    second = make_zip(tmp_path / "second.zip", {"python/shared.py": ("WHO = 'second'\n", 0o644),
                                                "bin/tool": ("#!/bin/sh\necho tool\n", 0o755)})
    tree = assemble((first, second), tmp_path / "cache")
    assert (tree / "python" / "shared.py").read_text() == "WHO = 'second'\n"
    assert (tree / "only_first.txt").read_text() == "1"
    assert os.access(tree / "bin" / "tool", os.X_OK)
    assert stat.S_IMODE(tree.stat().st_mode) == 0o755


def test_the_same_layers_are_put_together_once(tmp_path):
    layer = tmp_path / "l"
    layer.mkdir()
    (layer / "f").write_text("x")
    tree = assemble((layer,), tmp_path / "cache")
    (tree / "marker").write_text("kept")
    assert assemble((layer,), tmp_path / "cache") == tree and (tree / "marker").exists()
    (layer / "f").write_text("changed!")                      # a changed layer is a new tree
    assert assemble((layer,), tmp_path / "cache") != tree


def test_a_zip_member_outside_opt_is_refused(tmp_path):
    evil = make_zip(tmp_path / "evil.zip", {"../escape": ("x", 0o644)})
    with pytest.raises(ValueError, match="outside /opt"):
        assemble((evil,), tmp_path / "cache")
    assert not (tmp_path / "escape").exists()


def test_no_layers_no_tree(tmp_path):
    assert assemble((), tmp_path / "cache") is None
