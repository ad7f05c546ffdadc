"""bench/rie.py, the RIE reference of `make bench`, end to end on the real
Docker engine: every figure comes out, the emulator runs the same handler as
examples/hello-python, and no RIE container outlives the benchmark. No
figure is judged (the machine is shared and noisy)."""
from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import REPO, docker

sys.path.insert(0, str(REPO / "bench"))

import rie  # noqa: E402


def rie_containers() -> list[str]:
    return docker("ps", "-aq", "--filter", f"label={rie.LABEL}").split()


@pytest.fixture(scope="module")
def image(docker_engine) -> str:
    tag = rie.prepare(progress=lambda line: None)
    yield tag
    rie.cleanup()


def test_prepare_reuses_the_image_it_built(image):
    assert rie.prepare(progress=lambda line: None) == image


def test_rie_runs_the_hello_python_handler_on_loopback(image):
    with rie.RieContainer(image) as container:
        assert container.endpoint == f"http://127.0.0.1:{container.port}"
        assert container.invoke_path == "/2015-03-31/functions/function/invocations"
        caller = container.caller()
        status, body, _ = caller.call(rie.EVENT_100_BYTES)
        caller.close()
    assert status == 200
    answer = json.loads(body)
    assert answer["message"] == "hello from python" and answer["invocation"] == 1
    assert answer["event"] == json.loads(rie.EVENT_100_BYTES)


def test_stop_removes_the_container(image):
    container = rie.RieContainer(image)
    assert container.id[:12] in " ".join(rie_containers())
    container.stop()
    assert container.id[:12] not in " ".join(rie_containers())


def test_warm_latency_is_measured(image):
    figures = rie.warm(n=20, warmup=5, image=image)
    assert figures["n"] == 20
    assert 0 < figures["p50"] <= figures["p90"] <= figures["p99"]


def test_cold_start_is_measured_from_docker_run_to_first_answer(image):
    figures = rie.cold(reps=1, image=image)
    assert figures["n"] == 1 and figures["p50"] > 0
    assert figures["p50"] >= figures["phases_p50_ms"]["first_invoke"]


def test_1mb_event_round_trips_through_rie(image):
    event = rie.json_string_event(1_048_576)
    assert len(event) == 1_048_576
    with rie.RieContainer(image) as container:
        caller = container.caller()
        status, body, _ = caller.call(event)
        caller.close()
    assert status == 200
    assert json.loads(body)["event"] == json.loads(event)


def test_payload_figures_cover_each_size(image):
    figures = rie.payload(sizes=(1_048_576,), n=2, image=image)["1048576"]
    assert figures["statuses"] == {"200": 3} and figures["echoed"]
    assert figures["n"] == 2 and figures["p50"] > 0


def test_throughput_runs_one_container_per_caller(image):
    figures = rie.throughput(callers=2, seconds=0.5, image=image)
    assert figures["containers"] == 2 and all(n > 0 for n in figures["per_caller_invocations"])
    assert figures["invocations_per_s"] > 0


def test_concurrent_requests_to_one_container_are_reported(image):
    figures = rie.one_container_concurrent(callers=2, image=image, rounds=20)
    for case in ("cold", "warm"):
        report = figures[case]
        assert sum(report["outcomes"].values()) == 2 * report["rounds_sent"]
        assert isinstance(report["container_running_after"], bool)
        assert isinstance(report["log_notable"], list)


def test_no_rie_container_is_left_behind(image):
    assert rie_containers() == []
