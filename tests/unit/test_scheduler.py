"""The scheduler's rules below the engine: a real Host over the FakeBackend
(tests/unit/fakehost.py), with fake containers running a scripted runtime
that talks to the real Runtime API over loopback. Placement, concurrency,
freezing, timeouts, exits, provisioned concurrency, reaping, stem cells and
shutdown, each in milliseconds."""
from __future__ import annotations

import asyncio
import time

import pytest

from runtime_host.core.environment import PROVISIONED
from runtime_host.core.protocol import (RUNTIME_EXIT_ERROR, RUNTIME_OUT_OF_MEMORY, SANDBOX_FAILURE,
                                        SANDBOX_TIMEDOUT)
from runtime_host.core.states import SandboxState
from runtime_host.scheduler.context import SandboxStartFailed, Stopping, Throttled
from tests.unit.fakehost import fake_host, function, invoke, session_from, settle


def pool_of(host, name: str = "fn"):
    return host.scheduler.pools[name]


def calls_of(host, kind: str) -> list[str]:
    return [name for k, name in host.fake.calls if k == kind]


# --- placement -------------------------------------------------------------------
async def test_a_warm_sandbox_is_reused_and_keeps_its_process():
    async with fake_host(function()) as host:
        first, _, _ = await invoke(host, {"echo": 1})
        second, _, body = await invoke(host, {"echo": 2})
        assert body == 2
        assert first.cold and not second.cold
        assert first.sandbox_id == second.sandbox_id
        assert len(host.runtime.started) == 1


async def test_the_most_recently_used_sandbox_is_taken_first():
    async with fake_host(function(), freeze=False) as host:
        slow = asyncio.create_task(invoke(host, {"sleep_s": 0.2, "echo": "slow"}))
        await settle(host, until=lambda: len(pool_of(host).sandboxes) == 1)
        fast, _, _ = await invoke(host, {"echo": "fast"})        # a second sandbox: the first is busy
        slow_inv, _, _ = await slow
        assert slow_inv.sandbox_id != fast.sandbox_id
        await settle(host, until=lambda: len(pool_of(host).idle) == 2)
        # The slow one came back last: it is the most recently used.
        again, _, _ = await invoke(host, {"echo": "again"})
        assert again.sandbox_id == slow_inv.sandbox_id


# --- concurrency ---------------------------------------------------------------------
async def test_beyond_reserved_concurrency_the_caller_is_throttled_at_once():
    async with fake_host(function(reserved_concurrency=1)) as host:
        busy = asyncio.create_task(invoke(host, {"sleep_s": 0.3}))
        await settle(host, until=lambda: any(s.state is SandboxState.BUSY for s in pool_of(host).sandboxes.values()))
        with pytest.raises(Throttled):
            await invoke(host, {"echo": "second"})
        await busy
        _, _, body = await invoke(host, {"echo": "after"})         # the slot is free again
        assert body == "after"


async def test_a_container_that_cannot_be_created_holds_no_concurrency_slot():
    async with fake_host(function(reserved_concurrency=1)) as host:
        host.fake.fail_create = "the engine is down"
        with pytest.raises(SandboxStartFailed, match="the engine is down"):
            await invoke(host, {"echo": 1})
        await settle(host, until=lambda: not pool_of(host).sandboxes)
        host.fake.fail_create = None
        _, _, body = await invoke(host, {"echo": 2})
        assert body == 2


# --- freezing --------------------------------------------------------------------------
async def test_an_idle_sandbox_is_frozen_after_the_grace_and_thawed_before_its_next_event():
    async with fake_host(function(), freeze_grace_s=0.001) as host:
        first, _, _ = await invoke(host, {"echo": 1})
        sandbox = pool_of(host).sandboxes[first.sandbox_id]
        await settle(host, until=lambda: sandbox.state is SandboxState.FROZEN)
        assert host.fake.is_frozen(sandbox.container)
        await invoke(host, {"echo": 2})
        kinds = [k for k, _ in host.fake.calls if k in ("freeze", "thaw")]
        assert kinds[:2] == ["freeze", "thaw"]
        assert sandbox.freezes >= 1


async def test_the_freeze_grace_counts_from_the_latest_release():
    async with fake_host(function(), freeze_grace_s=60.0) as host:
        first, _, _ = await invoke(host, {"echo": 1})
        sandbox = pool_of(host).sandboxes[first.sandbox_id]
        await settle(host, until=lambda: sandbox.freeze_timer is not None)
        timer_of_first = sandbox.freeze_timer
        await invoke(host, {"echo": 2})
        await settle(host, until=lambda: sandbox.freeze_timer is not timer_of_first)
        assert timer_of_first.cancelled()                 # the first release's timer can no longer freeze it
        assert sandbox.freeze_timer.when() > timer_of_first.when()
        assert sandbox.state is SandboxState.READY


async def test_freeze_off_in_function_toml_keeps_the_sandbox_thawed():
    async with fake_host(function(freeze=False), freeze_grace_s=0.001) as host:
        await invoke(host, {"echo": 1})
        await invoke(host, {"echo": 2})
        assert calls_of(host, "freeze") == []


# --- timeouts and exits -----------------------------------------------------------------
async def test_a_timeout_ends_the_invocation_with_sandbox_timedout_and_removes_the_sandbox():
    async with fake_host(function(timeout_s=0.2)) as host:       # function.toml says whole seconds; 0.2 keeps it quick
        inv, outcome, body = await invoke(host, {"hang": True})
        assert outcome.error_type == SANDBOX_TIMEDOUT
        assert body["errorMessage"] == f"RequestId: {inv.request_id} Error: Task timed out after 0.20 seconds"
        await settle(host, until=lambda: not pool_of(host).sandboxes)
        assert len(calls_of(host, "end")) == 1
        await inv.reported
        assert "Status: timeout" in inv.report
        again, _, _ = await invoke(host, {"echo": 1})
        assert again.cold                                    # never reused: a fresh sandbox


async def test_a_runtime_that_exits_mid_invocation_gives_runtime_exit_error():
    async with fake_host(function()) as host:
        inv, outcome, body = await invoke(host, {"exit": 3})
        assert outcome.error_type == RUNTIME_EXIT_ERROR
        assert body["errorMessage"].endswith("Runtime exited with error: exit status 3")
        await settle(host, until=lambda: not pool_of(host).sandboxes)
        assert (await invoke(host, {"echo": 1}))[0].cold


async def test_an_oom_kill_gives_runtime_out_of_memory_and_max_memory_used_is_the_size():
    async with fake_host(function(memory_mb=256)) as host:
        task = asyncio.create_task(invoke(host, {"hang": True}))
        await settle(host, until=lambda: any(s.state is SandboxState.BUSY for s in pool_of(host).sandboxes.values()))
        sandbox = next(iter(pool_of(host).sandboxes.values()))
        host.fake.kill(sandbox.container, exit_code=137, oom=True)
        inv, outcome, body = await task
        assert outcome.error_type == RUNTIME_OUT_OF_MEMORY
        assert body["errorMessage"].endswith("Runtime exited with error: signal: killed")
        await inv.reported
        assert "Max Memory Used: 256 MB" in inv.report


async def test_an_init_error_reaches_the_caller_as_the_runtime_posted_it():
    async with fake_host(function(environment={"FAKE_INIT_ERROR": "Runtime.ImportModuleError"})) as host:
        inv, outcome, body = await invoke(host, {"echo": 1})
        assert outcome.error_type == "Runtime.ImportModuleError"
        assert body == {"errorMessage": "no", "errorType": "x"}
        await settle(host, until=lambda: not pool_of(host).sandboxes)


async def test_a_runtime_that_exits_during_init_gives_runtime_exit_error():
    async with fake_host(function(environment={"FAKE_INIT_EXIT": "7"})) as host:
        _, outcome, body = await invoke(host, {"echo": 1})
        assert outcome.error_type == RUNTIME_EXIT_ERROR
        assert body["errorMessage"].endswith("exit status 7")


# --- provisioned concurrency and reaping ---------------------------------------------------
async def test_provisioned_sandboxes_are_ready_before_the_first_invocation_and_replaced_when_they_die():
    async with fake_host(function(provisioned_concurrency=2)) as host:
        sandboxes = list(pool_of(host).sandboxes.values())
        assert len(sandboxes) == 2
        assert all(s.initialization_type == PROVISIONED for s in sandboxes)
        assert all(p.env["AWS_LAMBDA_INITIALIZATION_TYPE"] == PROVISIONED for p in host.runtime.started)
        inv, _, _ = await invoke(host, {"echo": 1})
        assert not inv.cold
        host.fake.kill(sandboxes[0].container, exit_code=1)
        await settle(host, until=lambda: len(pool_of(host).sandboxes) == 2
                     and sandboxes[0].id not in pool_of(host).sandboxes
                     and all(s.state in (SandboxState.READY, SandboxState.FROZEN)
                             for s in pool_of(host).sandboxes.values()))


async def test_a_sandbox_idle_past_its_ttl_is_sent_sigterm_and_removed_but_provisioned_ones_stay():
    async with fake_host(function(), function("kept", provisioned_concurrency=1), idle_ttl_s=5) as host:
        await invoke(host, {"echo": 1})
        await invoke(host, {"echo": 1}, name="kept")
        for pool in host.scheduler.pools.values():
            pool.reap_idle(time.monotonic() + 4)          # not yet past the 5 s
        assert len(pool_of(host).sandboxes) == 1
        for pool in host.scheduler.pools.values():
            pool.reap_idle(time.monotonic() + 6)          # as the reaper would see it 6 s from now
        await settle(host, until=lambda: not pool_of(host).sandboxes)
        assert [name.startswith("rh-fn-") for name in calls_of(host, "SIGTERM")] == [True]
        assert len(pool_of(host, "kept").sandboxes) == 1


# --- stem cells ----------------------------------------------------------------------------
async def test_a_cold_start_takes_a_stem_cell_and_the_stock_is_refilled():
    async with fake_host(function(), stem_cells=1, loopback_listener=True) as host:
        stems = host.scheduler.stems
        await settle(host, until=lambda: stems.ready_count() == 1)
        created_before = len(calls_of(host, "create"))
        inv, _, body = await invoke(host, {"echo": "from a stem"})
        assert body == "from a stem" and inv.cold
        assert len(calls_of(host, "place_code")) == 1
        sandbox = pool_of(host).sandboxes[inv.sandbox_id]
        assert sandbox.runtime_server is not None             # its own loopback listener
        await settle(host, until=lambda: stems.ready_count() == 1)
        assert len(calls_of(host, "create")) == created_before + 1   # the replacement stem, off the invoke path


async def test_a_stem_that_dies_in_stock_is_replaced():
    async with fake_host(function(), stem_cells=1) as host:
        stems = host.scheduler.stems
        await settle(host, until=lambda: stems.ready_count() == 1)
        stem_container = host.fake.containers[0]
        host.fake.kill(stem_container, exit_code=1)
        await settle(host, until=lambda: stems.ready_count() == 1 and stem_container not in host.fake.containers)
        _, _, body = await invoke(host, {"echo": 1})
        assert body == 1


# --- shutdown --------------------------------------------------------------------------------
async def test_shutdown_fails_invocations_in_flight_after_the_drain_timeout_and_ends_every_container():
    async with fake_host(function(), drain_timeout_s=0.1) as host:
        task = asyncio.create_task(invoke(host, {"hang": True}))
        await settle(host, until=lambda: any(s.state is SandboxState.BUSY for s in pool_of(host).sandboxes.values()))
        await host.stop()
        inv, outcome, body = await task
        assert outcome.error_type == SANDBOX_FAILURE
        assert "runtime-host stopped" in body["errorMessage"]
        assert host.fake.containers == []
        with pytest.raises(Stopping):
            await invoke(host, {"echo": 1})


async def test_shutdown_lets_an_invocation_in_flight_finish_within_the_drain_timeout():
    async with fake_host(function(), drain_timeout_s=5) as host:
        task = asyncio.create_task(invoke(host, {"sleep_s": 0.05, "echo": "done"}))
        await settle(host, until=lambda: any(s.state is SandboxState.BUSY for s in pool_of(host).sandboxes.values()))
        await host.stop()
        _, outcome, body = await task
        assert not outcome.is_error and body == "done"


# --- records -----------------------------------------------------------------------------------
async def test_every_invocation_is_recorded_in_the_ledger_with_its_outcome():
    from runtime_host.store.ledger import read_records
    async with fake_host(function()) as host:
        ok, _, _ = await invoke(host, {"echo": 1})
        failed, _, _ = await invoke(host, {"error": "Function.Boom"})
        state_dir = host.state_dir
    records = {r.request_id: r for r in read_records(state_dir)}
    assert records[ok.request_id].outcome == "success" and records[ok.request_id].cold
    assert records[failed.request_id].outcome == "function_error"
    assert records[failed.request_id].error_type == "Function.Boom"


# --- layers ----------------------------------------------------------------------------------
def layered_function(tmp_path, **fields):
    layer = tmp_path / "layer"
    (layer / "python").mkdir(parents=True)
    (layer / "python" / "helper.py").write_text("X = 1\n")
    return function(layers=(layer,), **fields)


async def test_a_sandbox_sees_its_functions_layers_at_opt(tmp_path):
    async with fake_host(layered_function(tmp_path)) as host:
        await invoke(host, {"echo": 1})
        process = host.runtime.started[-1]
        assert (process.opt_dir / "python" / "helper.py").read_text() == "X = 1\n"


async def test_a_stem_cell_is_given_the_functions_layers_with_its_code(tmp_path):
    async with fake_host(layered_function(tmp_path), stem_cells=1) as host:
        await settle(host, until=lambda: host.scheduler.stems.ready_count() == 1)
        await invoke(host, {"echo": 1})
        stem_process = host.runtime.started[0]
        assert (stem_process.opt_dir / "python" / "helper.py").exists()
        assert calls_of(host, "place_code")


async def test_a_function_with_an_exec_wrapper_starts_its_own_container_not_a_stem():
    fn = function(environment={"AWS_LAMBDA_EXEC_WRAPPER": "/opt/wrapper"})
    async with fake_host(fn, stem_cells=1) as host:
        assert host.scheduler.stems.key_of(fn) is None
        await invoke(host, {"echo": 1})
        process = host.runtime.started[-1]
        assert process.spec.command[:2] == ["/opt/wrapper", "/usr/bin/python3"]
        assert calls_of(host, "place_code") == []


# --- Max Memory Used ---------------------------------------------------------------------------
async def test_a_runtime_that_dies_during_init_is_reported_with_what_it_used_not_its_memory_size():
    fake_holder = {}

    async def grows_then_exits(process):
        fake_holder["backend"].set_memory_peak(process.container, 23 * 2**20)
        await asyncio.sleep(0.3)                  # long enough to be sampled, as a slow init would be
        return 2

    async with fake_host(function(memory_mb=256), program=grows_then_exits) as host:
        fake_holder["backend"] = host.fake
        inv, outcome, _ = await invoke(host, {"echo": 1})
        assert outcome.error_type == RUNTIME_EXIT_ERROR
        await inv.reported
        assert "Max Memory Used: 23 MB" in inv.report, inv.report


# --- output --------------------------------------------------------------------------------------
async def test_a_function_printing_megabytes_costs_the_host_only_the_tail_the_whole_goes_to_the_log_file():
    line = b"x" * 1023 + b"\n"

    async def prints_a_lot(process):
        async with session_from(process.container.address) as http:
            base = f"http://{process.runtime_api}/2018-06-01/runtime"
            async with http.get(f"{base}/invocation/next") as r:
                request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
            for _ in range(10 * 1024):                      # 10 MB, a KB at a time
                process.output(line)
            async with http.post(f"{base}/invocation/{request_id}/response", data=b'"done"'):
                pass
            await process.sigterm.wait()
            return 0

    async with fake_host(function(), program=prints_a_lot) as host:
        inv, outcome, body = await invoke(host, {})
        await inv.reported
        assert body == "done"
        assert len(inv.log) <= 4096 and inv.log_bytes > 10 * 2**20
        assert inv.log.decode().splitlines()[-1].startswith("REPORT RequestId: ")
        assert host.log_path("fn").stat().st_size > 10 * 2**20
