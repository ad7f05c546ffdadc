"""DockerEngine.end: containers of one network stop one at a time (Docker
20.10's libnetwork deadlock, moby/libnetwork#2679: see end()); those of
different networks side by side. Pure logic: the blocking part is replaced
by one that records how many ends overlap."""
from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from runtime_host.backend.docker.engine import DockerEngine, ExitInfo


def backend_recording_overlap() -> tuple[DockerEngine, dict]:
    backend = object.__new__(DockerEngine)          # no Docker engine: only end()'s ordering is under test
    backend._pool = ThreadPoolExecutor(max_workers=8)
    backend._ending = {}
    seen = {"now": 0, "most": 0, "order": [], "now_by_net": {}, "most_by_net": 0}
    lock = threading.Lock()

    def stop_now(container_id: str) -> None:
        net = container_id.split("/")[0]          # "net/cN": the network it is on
        with lock:
            seen["now"] += 1
            seen["most"] = max(seen["most"], seen["now"])
            seen["now_by_net"][net] = seen["now_by_net"].get(net, 0) + 1
            seen["most_by_net"] = max(seen["most_by_net"], seen["now_by_net"][net])
        time.sleep(0.01)
        with lock:
            seen["now"] -= 1
            seen["now_by_net"][net] -= 1
            seen["order"].append(container_id)

    backend._stop_now = stop_now
    backend.exit_info = lambda container_id: ExitInfo(exit_code=137, oom_killed=False)
    backend.remove = lambda container_id: None
    return backend, seen


def test_ends_on_one_network_never_overlap_and_each_returns_its_exit():
    backend, seen = backend_recording_overlap()

    async def many() -> list:
        return await asyncio.gather(*(backend.end(f"n0/c{i}", "n0") for i in range(12)))

    infos = asyncio.run(many())
    assert seen["most"] == 1, "two containers of one network ended at the same time"
    assert sorted(seen["order"]) == sorted(f"n0/c{i}" for i in range(12))
    assert all(info.exit_code == 137 for info in infos)
    backend._pool.shutdown()


def test_ends_on_different_networks_run_side_by_side():
    backend, seen = backend_recording_overlap()

    async def many() -> list:
        return await asyncio.gather(*(backend.end(f"n{i % 4}/c{i}", f"n{i % 4}") for i in range(16)))

    asyncio.run(many())
    assert seen["most_by_net"] == 1, "two containers of one network ended at the same time"
    assert seen["most"] > 1, "networks waited for each other"
    assert len(seen["order"]) == 16
    backend._pool.shutdown()


def test_waiting_ends_do_not_hold_executor_threads():
    """The first end is held until another Docker call has run. Were waiting
    ends parked on a thread lock, 20 of them would take all 8 threads and the
    other call would never get one (the wait_for below would fail)."""
    backend, seen = backend_recording_overlap()
    timed_stop = backend._stop_now
    other_call_done = threading.Event()

    def stop_now(container_id: str) -> None:
        if container_id == "n0/c0":
            assert other_call_done.wait(10), "the other call never ran"
        timed_stop(container_id)

    backend._stop_now = stop_now

    async def ends_and_another_call() -> None:
        ends = [asyncio.ensure_future(backend.end(f"n0/c{i}", "n0")) for i in range(20)]
        await asyncio.sleep(0.01)
        await asyncio.wait_for(backend.run(other_call_done.set), 5)
        await asyncio.gather(*ends)

    asyncio.run(ends_and_another_call())
    assert seen["most"] == 1 and len(seen["order"]) == 20
    backend._pool.shutdown()


def test_an_engine_that_does_not_answer_is_a_backend_error_naming_it():
    import pytest
    import requests.exceptions

    from runtime_host.backend.interface import BackendError

    engine = object.__new__(DockerEngine)                # no Docker engine: only run()'s translation is under test
    engine._pool = ThreadPoolExecutor(max_workers=1)

    def refused() -> None:
        raise requests.exceptions.ConnectionError("Connection refused: /var/run/docker.sock")

    with pytest.raises(BackendError, match="the Docker engine did not answer .*scripts/ensure-docker"):
        asyncio.run(engine.run(refused))


def test_exits_are_still_heard_after_the_engines_event_stream_breaks(monkeypatch):
    """dockerd restarting ends the event stream: the engine subscribes again,
    from the last event's second, and the exit that came meanwhile is heard."""
    import runtime_host.backend.docker.engine as engine_module

    monkeypatch.setattr(engine_module, "EVENTS_RESUBSCRIBE_S", 0.01)
    engine = object.__new__(DockerEngine)
    engine.host_id, engine._closing, engine._events = "h", False, None
    subscriptions = []

    def die(cid: str, code: int, t: int) -> dict:
        return {"id": cid, "Action": "die", "time": t, "Actor": {"Attributes": {"exitCode": str(code)}}}

    class FakeApi:
        def events(self, decode, filters, since):
            subscriptions.append(since)
            if len(subscriptions) == 1:
                def first():
                    yield die("c1", 3, 100)
                    raise ConnectionError("dockerd went away")
                return first()
            if len(subscriptions) == 2:
                return iter([die("c2", 137, 101)])
            engine._closing = True
            return iter([])

    engine.api = FakeApi()

    async def watch() -> list:
        heard = []
        engine.watch_exits(asyncio.get_running_loop(), lambda cid, code, oom: heard.append((cid, code, oom)))
        for _ in range(200):
            if len(heard) == 2:
                break
            await asyncio.sleep(0.01)
        engine._closing = True
        return heard

    assert asyncio.run(watch()) == [("c1", 3, False), ("c2", 137, False)]
    assert subscriptions[:2] == [None, 100]
