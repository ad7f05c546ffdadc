"""`runtime-host conformance` on each runtime added beside python3.11 /
nodejs18.x / provided (those three are tests/e2e/test_conformance.py's): the
example handler of the language, with the runtime changed, must pass every
scenario. What is not a pass is said per runtime, with the reason:
timing warnings (this machine's CPU share, as there), and for ruby3.3 what AWS's
own Ruby runtime does too (docs/spec-additions.md §9)."""
from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import REPO
from tests.e2e.test_conformance import PARALLEL_TARGETS, CliRun, conformance, unexpected

EXAMPLE_OF = {"python3.13": "hello-python", "nodejs20.x": "hello-node", "nodejs22.x": "hello-node",
              "nodejs24.x": "hello-node", "ruby3.3": "hello-ruby", "provided.al2": "hello-shell"}
# Not passes for what the runtime is, with what the scenario must have seen.
EXPECTED_OTHERWISE = {
    "ruby3.3": {
        # aws_lambda_ric sends "Init<LoadError>" in Lambda-Runtime-Function-Error-Type; so do we.
        "error-report": ("warn", "'Init<LoadError>' is recorded as Runtime.Unknown"),
        # The ruby image has no curl, python3 or node to run the conformance extension with.
        "beside-extensions": ("skip", "this image has no curl, python3 or node"),
    },
}


@pytest.fixture(scope="module")
def runs(docker_engine, tmp_path_factory) -> dict[str, CliRun]:
    root = tmp_path_factory.mktemp("runtime-conformance")
    folders = {}
    for runtime, example in EXAMPLE_OF.items():
        folder = root / runtime.replace(".", "-")
        shutil.copytree(REPO / "examples" / example, folder)
        toml = (folder / "function.toml").read_text().splitlines()
        toml = [f'runtime = "{runtime}"' if line.startswith("runtime") else
                f'name = "{folder.name}"' if line.startswith("name") else line for line in toml]
        (folder / "function.toml").write_text("\n".join(toml) + "\n")
        folders[runtime] = folder
    with ThreadPoolExecutor(max_workers=PARALLEL_TARGETS) as pool:
        futures = {runtime: pool.submit(conformance, str(folder), "--json") for runtime, folder in folders.items()}
        return {runtime: future.result() for runtime, future in futures.items()}


@pytest.mark.parametrize("runtime", list(EXAMPLE_OF))
def test_our_client_passes_every_scenario_on_the_runtime(runs, runtime):
    run = runs[runtime]
    assert run.report["runtime"] == runtime
    otherwise = EXPECTED_OTHERWISE.get(runtime, {})
    for name, (verdict, seen) in otherwise.items():
        scenario = run.scenario(name)
        assert scenario["verdict"] == verdict and seen in scenario["seen"], scenario
    rest = [s for s in run.report["scenarios"] if s["name"] not in otherwise]
    assert unexpected(rest) == [], run.stdout
    skipped = {s["name"] for s in rest if s["verdict"] == "skip"}
    # No events/ folder, max_concurrency 1; a handler that prints plain lines has no log record to judge.
    assert skipped - {"logs-as-configured"} == {"user-events", "serves-concurrently"}, skipped
    assert run.returncode == 0, run.stderr
