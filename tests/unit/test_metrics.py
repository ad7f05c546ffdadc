"""GET /metrics over a real Host on the fake backend: Lambda's metric names,
counted once per invocation, gauges read when scraped (api/metrics.py).
The end-to-end check against real sandboxes is tests/e2e/test_metrics_and_logs.py."""
from __future__ import annotations

import asyncio
import json

from prometheus_client.parser import text_string_to_metric_families

from tests.unit.fakehost import function, settle, invoke_api as served

BASE = "/2015-03-31/functions"


async def scrape(http) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one scrape, parsed by prometheus_client's own parser."""
    async with http.get("/metrics") as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=")
        text = await r.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def fv(name="fn", version="$LATEST", **more) -> tuple:
    return tuple(sorted({"function": name, "version": version, **more}.items()))


async def invoke(http, event: dict, name: str = "fn") -> int:
    async with http.post(f"{BASE}/{name}/invocations", data=json.dumps(event)) as r:
        await r.read()
        return r.status


async def test_invocations_errors_and_a_cold_start_are_counted_per_function_and_version():
    async with served(function()) as (host, http):
        assert await invoke(http, {"echo": 1}) == 200
        assert await invoke(http, {"echo": 2}) == 200
        assert await invoke(http, {"error": "Function.Boom"}) == 200
        m = await scrape(http)
        assert m[("lambda_Invocations_total", fv())] == 3
        assert m[("lambda_Errors_total", fv())] == 1
        assert m[("lambda_Duration_milliseconds_count", fv())] == 3
        assert m[("runtime_host_cold_starts_total", fv())] == 1
        assert m[("runtime_host_init_duration_milliseconds_count", fv())] == 1
        assert m[("runtime_host_billed_gb_seconds_total", fv())] > 0
        assert m[("runtime_host_cost_usd_total", fv())] > 0


async def test_sandboxes_by_state_and_freezes_and_thaws_are_read_when_scraped():
    async with served(function()) as (host, http):
        await invoke(http, {"echo": 1})
        pool = host.scheduler.pools["fn"]
        await settle(host, until=lambda: pool.counts.freezes == 1)
        await invoke(http, {"echo": 2})
        m = await scrape(http)
        assert m[("runtime_host_thaws_total", fv())] == 1
        assert m[("runtime_host_freezes_total", fv())] >= 1
        in_states = {dict(labels)["state"]: v for (name, labels), v in m.items() if name == "runtime_host_sandboxes"}
        assert sum(in_states.values()) == 1 and set(in_states) >= {"frozen", "ready", "busy", "dead"}
        assert m[("lambda_ConcurrentExecutions", fv())] == 0


async def test_a_throttled_request_counts_in_throttles_not_invocations():
    async with served(function(reserved_concurrency=1)) as (host, http):
        busy = asyncio.ensure_future(invoke(http, {"sleep_s": 0.5}))
        pool = host.scheduler.pools["fn"]
        await settle(host, until=lambda: len(pool.in_flight()) == 1, timeout_s=5)
        m = await scrape(http)
        assert m[("lambda_ConcurrentExecutions", fv())] == 1
        assert await invoke(http, {"echo": 1}) == 429
        assert await busy == 200
        m = await scrape(http)
        assert m[("lambda_Throttles_total", fv())] == 1
        assert m[("lambda_Invocations_total", fv())] == 1


async def test_a_timeout_counts_as_an_error_and_a_timeout():
    async with served(function(timeout_s=1)) as (host, http):
        assert await invoke(http, {"hang": True}) == 200
        m = await scrape(http)
        assert m[("lambda_Errors_total", fv())] == 1
        assert m[("runtime_host_timeouts_total", fv())] == 1


async def test_stem_cells_in_stock_are_a_gauge_by_image_and_memory():
    async with served(function(), stem_cells=1) as (host, http):
        await settle(host, until=lambda: host.scheduler.stems.ready_count() == 1, timeout_s=5)
        m = await scrape(http)
        stems = {dict(labels)["memory_mb"]: v for (name, labels), v in m.items()
                 if name == "runtime_host_stem_cells_ready"}
        assert stems == {"128": 1}


async def test_async_delivery_figures_are_there_per_function_from_the_start():
    async with served(function()) as (host, http):
        m = await scrape(http)
        for name in ("lambda_AsyncEventsDropped_total", "lambda_DeadLetterErrors_total",
                     "lambda_DestinationDeliveryFailures_total"):
            assert m[(name, (("function", "fn"),))] == 0
