"""The init phase's CPU (core/config.py INIT_VCPUS, docs/spec-additions.md
§13): a sandbox is created with two vCPUs (capped at the machine's cores)
whatever its memory size, and handed its memory size's share before the
runtime gets its first event, so an invocation never runs on the init quota."""
from __future__ import annotations

import json
import os

from runtime_host.core.config import INIT_VCPUS, init_vcpus, vcpus_for_memory
from tests.unit.fakehost import ScriptedRuntime, fake_host, function, session_from


def test_the_init_quota_is_two_vcpus_or_the_memory_share_where_that_is_more():
    assert init_vcpus(128) == INIT_VCPUS == 2.0
    assert init_vcpus(3008) == 2.0
    assert init_vcpus(10240) == vcpus_for_memory(10240) == 6.0


class CpuReporter(ScriptedRuntime):
    """Answers each event with the quota its container has at that moment."""

    async def _run(self, process) -> int:
        base = f"http://{process.runtime_api}/2018-06-01/runtime"
        async with session_from(process.container.address) as http:
            while True:
                async with http.get(f"{base}/invocation/next") as r:
                    request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
                state = process.container.backend_state
                async with http.post(f"{base}/invocation/{request_id}/response",
                                     data=json.dumps({"cpus": state.cpus, "created": state.spec.cpus})):
                    pass


async def test_a_sandbox_starts_on_the_init_quota_and_runs_its_invocations_on_its_memory_share():
    cores = os.cpu_count() or 1
    program = CpuReporter()
    async with fake_host(function(memory_mb=128), program=program) as host:
        program.backend = host.fake
        for _ in range(2):                                   # the cold start and a warm one
            _, outcome = await host.invoke(host.functions["fn"], b"{}")
            seen = json.loads(outcome.body)
            assert seen["created"] == min(INIT_VCPUS, cores), "created with the init phase's quota"
            assert seen["cpus"] == vcpus_for_memory(128), "the memory share before the first event"
        assert [c for c, _ in host.fake.calls if c.startswith("set_cpus")] == [f"set_cpus {vcpus_for_memory(128):g}"]
