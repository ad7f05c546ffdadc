"""The pytest plugin's choice of folder (runtime_host/pytest_plugin.py), in a
pytest run of its own: what the user configured is what lambda_host would
serve, and with nothing configured the run says what to do. Serving real
sandboxes through it is tested in tests/e2e/test_metrics_and_logs.py."""
from __future__ import annotations

import os
import subprocess
import sys

SHOW_FOLDER = """
def test_show(lambda_functions_dir):
    print("FOLDER=" + str(lambda_functions_dir))
"""


def run_pytest(where, *args: str, entry_points: bool = False) -> subprocess.CompletedProcess:
    """pytest in a folder of its own; with entry_points, every installed plugin
    loads as for a user (ours through its pytest11 entry point; seconds),
    else only ours, named."""
    env = dict(os.environ)
    plugin = []
    if not entry_points:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        plugin = ["-p", "runtime_host.pytest_plugin"]
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *plugin, *args],
                          cwd=where, env=env, capture_output=True, text=True, timeout=120)


def folder_shown(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return next(line for line in result.stdout.splitlines() if "FOLDER=" in line).split("FOLDER=", 1)[1]


def test_the_ini_option_names_the_folder_relative_to_the_ini_file(tmp_path):
    (tmp_path / "fns").mkdir()
    (tmp_path / "pytest.ini").write_text("[pytest]\nlambda_functions = fns\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(SHOW_FOLDER)
    assert folder_shown(run_pytest(tmp_path / "tests", "test_x.py")) == str(tmp_path / "fns")


def test_the_command_line_option_wins_over_the_ini_option(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\nlambda_functions = fns\n")
    (tmp_path / "test_x.py").write_text(SHOW_FOLDER)
    other = tmp_path / "other"
    other.mkdir()
    assert folder_shown(run_pytest(tmp_path, "test_x.py", "--lambda-functions", str(other))) == str(other)


def test_a_fixture_of_the_users_own_wins_over_both(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\nlambda_functions = fns\n")
    (tmp_path / "conftest.py").write_text(
        "import pytest\n@pytest.fixture(scope='session')\ndef lambda_functions_dir():\n    return '/chosen/in/code'\n")
    (tmp_path / "test_x.py").write_text(SHOW_FOLDER)
    assert folder_shown(run_pytest(tmp_path, "test_x.py", "--lambda-functions", "/ignored")) == "/chosen/in/code"


def test_with_no_folder_configured_the_run_says_how_to_give_one(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_x.py").write_text("def test_it(lambda_host):\n    pass\n")
    result = run_pytest(tmp_path, "test_x.py", entry_points=True)     # installed: found with no -p
    assert result.returncode != 0
    assert "--lambda-functions DIR" in result.stdout + result.stderr
    assert "lambda_functions_dir" in result.stdout + result.stderr
