"""max_concurrency: one sandbox serves several invocations at once (Lambda
Managed Instances' model), below the engine: the fake runtime runs as many
GET next loops as AWS_LAMBDA_MAX_CONCURRENCY says, each on its own
connection from the container's address."""
from __future__ import annotations

import asyncio
import json

from runtime_host.core.invocation import Outcome
from runtime_host.core.protocol import H_REQUEST_ID
from tests.unit.fakehost import fake_host, function, session_from

WAIT_S = 5.0


class LoopingRuntime:
    """N next loops (N from the environment, or `loops`). Each event says
    how long to take; the runtime records how many it held at once."""

    def __init__(self, loops: int | None = None):
        self.loops = loops
        self.holding = 0
        self.most_at_once = 0
        self.env: dict[str, str] = {}

    async def __call__(self, process) -> int:
        self.env = process.env
        count = self.loops or int(process.env.get("AWS_LAMBDA_MAX_CONCURRENCY", "1"))
        base = f"http://{process.runtime_api}/2018-06-01/runtime"
        await asyncio.gather(*(self._loop(process, base) for _ in range(count)))
        return 0

    async def _loop(self, process, base: str) -> None:
        async with session_from(process.container.address) as http:
            while True:
                async with http.get(f"{base}/invocation/next") as r:
                    if r.status != 200:
                        return
                    request_id = r.headers[H_REQUEST_ID]
                    event = json.loads(await r.read())
                self.holding += 1
                self.most_at_once = max(self.most_at_once, self.holding)
                await asyncio.sleep(event.get("sleep_s", 0))
                self.holding -= 1
                async with http.post(f"{base}/invocation/{request_id}/response",
                                     data=json.dumps({"id": request_id})) as r:
                    await r.read()


async def invoke_all(host, events: list[dict]):
    fn = host.functions["fn"]
    return await asyncio.wait_for(asyncio.gather(*(host.invoke(fn, json.dumps(e).encode()) for e in events)), WAIT_S)


async def test_one_sandbox_serves_max_concurrency_invocations_at_once():
    runtime = LoopingRuntime()
    async with fake_host(function(max_concurrency=3), program=runtime) as host:
        results = await invoke_all(host, [{"sleep_s": 0.3}] * 3)
        created = [c for c in host.fake.calls if c[0] == "create"]
        for inv, _ in results:
            await asyncio.wait_for(inv.reported, WAIT_S)
    assert runtime.env["AWS_LAMBDA_MAX_CONCURRENCY"] == "3"
    assert len(created) == 1, created
    assert runtime.most_at_once == 3
    for inv, outcome in results:
        assert json.loads(outcome.body) == {"id": inv.request_id} and inv.report is not None
    assert len({inv.sandbox_id for inv, _ in results}) == 1


async def test_a_fourth_invocation_at_once_gets_a_second_sandbox():
    runtime = LoopingRuntime()
    async with fake_host(function(max_concurrency=3), program=runtime) as host:
        results = await invoke_all(host, [{"sleep_s": 0.3}] * 4)
    assert sorted(len([r for r in results if r[0].sandbox_id == s]) for s in {r[0].sandbox_id for r in results}) == [1, 3]


async def test_a_timeout_ends_only_its_own_invocation():
    runtime = LoopingRuntime()
    async with fake_host(function(max_concurrency=2, timeout_s=1), program=runtime) as host:
        results = await invoke_all(host, [{"sleep_s": 3}, {"sleep_s": 0.1}])
        (slow, slow_outcome), (quick, quick_outcome) = results
        again = await invoke_all(host, [{"sleep_s": 0}])
    assert slow_outcome.error_type == "Sandbox.Timedout" and quick_outcome.error_type is None
    assert again[0][0].sandbox_id == quick.sandbox_id == slow.sandbox_id, "the sandbox lived on"


async def test_a_runtime_that_runs_one_loop_serves_them_one_after_another():
    # What a runtime unaware of AWS_LAMBDA_MAX_CONCURRENCY does: correct, but serial.
    runtime = LoopingRuntime(loops=1)
    async with fake_host(function(max_concurrency=3), program=runtime) as host:
        results = await invoke_all(host, [{"sleep_s": 0.1}] * 3)
    assert runtime.most_at_once == 1 and all(o.error_type is None for _, o in results)
    delivered = sorted(inv.delivered_at for inv, _ in results)
    assert delivered[2] - delivered[0] >= 0.2, "each waited for the one loop to come back"


async def test_a_frozen_concurrent_sandbox_is_thawed_for_its_next_invocations():
    runtime = LoopingRuntime()
    async with fake_host(function(max_concurrency=2), program=runtime) as host:
        first = await invoke_all(host, [{}])
        sandbox = host.sandboxes()[0]
        await asyncio.wait_for(first[0][0].reported, WAIT_S)
        for _ in range(100):
            if host.fake.is_frozen(sandbox.container):
                break
            await asyncio.sleep(0.01)
        assert host.fake.is_frozen(sandbox.container)
        later = await invoke_all(host, [{}, {}])
    assert all(o.error_type is None for _, o in later) and {i.sandbox_id for i, _ in later} == {sandbox.id}


async def test_a_loop_asking_for_work_just_after_a_freeze_waits_instead_of_being_refused():
    # Seen in CI: a Node loop's GET next reached the host after the pool froze
    # the sandbox (its invocation had ended with its result), got 403 and the
    # runtime exited.
    from runtime_host.scheduler.concurrent import ConcurrentSandbox
    from runtime_host.core.states import SandboxState

    runtime = LoopingRuntime(loops=1)
    async with fake_host(function(max_concurrency=2), program=runtime) as host:
        await invoke_all(host, [{}])
        sandbox = host.sandboxes()[0]
        assert isinstance(sandbox, ConcurrentSandbox)
        for _ in range(100):
            if sandbox.state is SandboxState.FROZEN:
                break
            await asyncio.sleep(0.01)
        late = asyncio.ensure_future(sandbox.next_invocation())    # as a loop's request that left before the freeze
        await asyncio.sleep(0.05)
        assert not late.done(), "it waits for an event"
        calls = asyncio.ensure_future(invoke_all(host, [{}, {}]))
        inv = await asyncio.wait_for(late, WAIT_S)                  # and is handed one, not refused
        sandbox.post_result(inv.request_id, Outcome(b'"late loop"'))
        results = await calls
    assert all(o.error_type is None for _, o in results)
