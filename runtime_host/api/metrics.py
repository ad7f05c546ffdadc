"""`GET /metrics`: what the host does, in the Prometheus text format.

Owns: the metric names and their meaning (Lambda's own CloudWatch names
where Lambda has one, docs/spec-additions.md §11; `runtime_host_*` for what
only a local host can tell), counting each finished invocation once, from
the one place every outcome passes (its billing record, on its way to the
ledger: `MeteredLedger`), and reading the rest from the scheduler and async
delivery when Prometheus scrapes (`_Snapshot`): sandboxes by state, stem
cells in stock, concurrency, throttles, freezes and thaws, dropped events.
Must not: keep a second copy of sandbox state (gauges are read at scrape
time, never tracked), or put more than a few dictionary lookups and
additions on the invocation's path.

Labels: `function` and `version` ("$LATEST" or a published number) on
per-invocation metrics; async delivery's are per `function` (an event is
queued before a version is resolved).
"""
from __future__ import annotations

import asyncio
from bisect import bisect_left
from typing import Iterable, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from runtime_host.api.http_server import Reply
from runtime_host.core.states import SandboxState
from runtime_host.store.ledger import Record

METRICS_PATH = "/metrics"

# Duration and init duration in milliseconds, as Lambda reports them; the
# buckets span a warm invoke here (~1 ms) to Lambda's 900 s timeout.
DURATION_BUCKETS_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
                       900000)
INIT_BUCKETS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
ERROR_OUTCOMES = frozenset({"function_error", "timeout", "oom", "crash"})   # rules.ledger_outcome's non-success


class LedgerWriter(Protocol):
    async def record(self, record: Record) -> None: ...


class _Figures:
    """One (function, version)'s recorded figures as plain numbers: the
    invoke path pays a dictionary lookup, a bisect and a few additions
    (prometheus_client's own Counter takes a lock per increment, ~1-2 us
    each, several per invocation). The library formats them at scrape time."""
    __slots__ = ("invocations", "errors", "timeouts", "ooms", "cold", "billed_gb_s", "cost_usd",
                 "duration_counts", "duration_sum_ms", "init_counts", "init_sum_ms")

    def __init__(self):
        self.invocations = self.errors = self.timeouts = self.ooms = self.cold = 0
        self.billed_gb_s = self.cost_usd = self.duration_sum_ms = self.init_sum_ms = 0.0
        self.duration_counts = [0] * (len(DURATION_BUCKETS_MS) + 1)    # per bucket, the last one +Inf
        self.init_counts = [0] * (len(INIT_BUCKETS_MS) + 1)

    def copy(self) -> "_Figures":
        other = _Figures()
        for name in self.__slots__:
            value = getattr(self, name)
            setattr(other, name, list(value) if isinstance(value, list) else value)
        return other


class HostMetrics:
    """The figures recorded as invocations end, and the exposition made
    from them and from what the scheduler holds when Prometheus scrapes."""

    def __init__(self, scheduler, async_delivery=None):
        self.scheduler = scheduler
        self.async_delivery = async_delivery
        self.figures: dict[tuple[str, str], _Figures] = {}
        # Throttles the Invoke API answers without asking a pool (reserved_concurrency = 0);
        # the pools count their own (scheduler/pool.py PoolCounts).
        self.refused: dict[tuple[str, str], int] = {}

    # --- the invocation path: one call per finished invocation -----------------------
    def observe(self, record: Record) -> None:
        key = (record.function, record.version)
        f = self.figures.get(key)
        if f is None:
            f = self.figures[key] = _Figures()
        f.invocations += 1
        f.duration_counts[bisect_left(DURATION_BUCKETS_MS, record.duration_ms)] += 1
        f.duration_sum_ms += record.duration_ms
        f.billed_gb_s += record.gb_s
        f.cost_usd += record.cost_usd
        outcome = record.outcome
        if outcome in ERROR_OUTCOMES:
            f.errors += 1
            if outcome == "timeout":
                f.timeouts += 1
            elif outcome == "oom":
                f.ooms += 1
        if record.cold:
            f.cold += 1
            if record.init_ms is not None:
                f.init_counts[bisect_left(INIT_BUCKETS_MS, record.init_ms)] += 1
                f.init_sum_ms += record.init_ms

    def refused_at_once(self, function: str, version: str) -> None:
        """A request throttled before any pool saw it (reserved_concurrency = 0)."""
        self.refused[(function, version)] = self.refused.get((function, version), 0) + 1

    def metered(self, ledger: LedgerWriter) -> "MeteredLedger":
        return MeteredLedger(ledger, self)

    # --- the scrape --------------------------------------------------------------------
    async def reply(self) -> Reply:
        """The exposition: everything read on the loop (where it changes),
        the text made in a thread (the slow part)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Snapshot(self))
        body = await asyncio.to_thread(generate_latest, registry)
        return Reply(200, body, CONTENT_TYPE_LATEST)


class MeteredLedger:
    """The ledger as the scheduler sees it: each record counted, then written."""

    def __init__(self, ledger: LedgerWriter, metrics: HostMetrics):
        self.ledger = ledger
        self.metrics = metrics

    async def record(self, record: Record) -> None:
        self.metrics.observe(record)
        await self.ledger.record(record)

    def refusal(self) -> str | None:
        return self.ledger.refusal()


class _Snapshot:
    """The figures at one moment: the recorded ones copied, the rest read
    from where they live (the pools, their sandboxes' state machines, the
    stem cells, async delivery). Read when made (on the loop), formatted
    later in a thread."""

    def __init__(self, metrics: HostMetrics):
        self.scheduler = metrics.scheduler
        self.async_delivery = metrics.async_delivery
        self.refused = dict(metrics.refused)
        self.figures = {key: f.copy() for key, f in metrics.figures.items()}
        for pool in list(self.scheduler.pools.values()):    # every function from 0, before its first invocation
            self.figures.setdefault((pool.function.name, pool.function.version), _Figures())
        self.families = self._recorded() + self._take()

    def collect(self) -> Iterable:
        return self.families

    def _recorded(self) -> list:
        labels = ["function", "version"]
        counters = [("lambda_Invocations", "invocations", "Invocations: times the function code ran (successes and "
                     "function errors; throttles not counted); equals billed requests"),
                    ("lambda_Errors", "errors", "Errors: invocations that ended in a function error (the code's "
                     "or the runtime's, timeouts and OOM kills included)"),
                    ("runtime_host_cold_starts", "cold", "invocations that started a new sandbox"),
                    ("runtime_host_timeouts", "timeouts", "invocations ended by the function timeout"),
                    ("runtime_host_oom_kills", "ooms", "invocations whose sandbox was OOM-killed"),
                    ("runtime_host_billed_gb_seconds", "billed_gb_s", "billed GB-seconds (memory x billed duration)"),
                    ("runtime_host_cost_usd", "cost_usd", "what the invocations would cost on Lambda, in USD "
                     "(requests and duration, the host's price table)")]
        families = []
        for name, attr, doc in counters:
            family = CounterMetricFamily(name, doc, labels=labels)
            for key, f in sorted(self.figures.items()):
                family.add_metric(list(key), getattr(f, attr))
            families.append(family)
        for name, doc, bounds, counts, total in (
                ("lambda_Duration_milliseconds", "Duration: time the function code ran, in ms", DURATION_BUCKETS_MS,
                 "duration_counts", "duration_sum_ms"),
                ("runtime_host_init_duration_milliseconds", "Init Duration of cold starts, in ms (REPORT's)",
                 INIT_BUCKETS_MS, "init_counts", "init_sum_ms")):
            family = HistogramMetricFamily(name, doc, labels=labels)
            for key, f in sorted(self.figures.items()):
                family.add_metric(list(key), _cumulative(bounds, getattr(f, counts)), getattr(f, total))
            families.append(family)
        return families

    def _take(self) -> list:
        labels = ["function", "version"]
        concurrent = GaugeMetricFamily("lambda_ConcurrentExecutions", "ConcurrentExecutions: invocations being "
                                       "processed now", labels=labels)
        throttles = CounterMetricFamily("lambda_Throttles", "Throttles: invocation requests refused with "
                                        "TooManyRequestsException (reserved concurrency reached)", labels=labels)
        states = GaugeMetricFamily("runtime_host_sandboxes", "sandboxes by state (core/states.py)",
                                   labels=labels + ["state"])
        freezes = CounterMetricFamily("runtime_host_freezes", "sandboxes frozen between invocations", labels=labels)
        thaws = CounterMetricFamily("runtime_host_thaws", "frozen sandboxes thawed for an invocation", labels=labels)
        refused = dict(self.refused)
        for pool in list(self.scheduler.pools.values()):
            fn = pool.function
            key = [fn.name, fn.version]
            by_state = dict.fromkeys(SandboxState, 0)
            for sandbox in pool.sandboxes.values():
                by_state[sandbox.state] += 1
            for state, n in by_state.items():
                states.add_metric(key + [state.value.lower()], n)
            concurrent.add_metric(key, len(pool.in_flight()))
            throttles.add_metric(key, pool.counts.throttles + refused.pop((fn.name, fn.version), 0))
            freezes.add_metric(key, pool.counts.freezes)
            thaws.add_metric(key, pool.counts.thaws)
        for (function, version), n in sorted(refused.items()):     # a version no invocation has reached
            throttles.add_metric([function, version], n)
        stems = GaugeMetricFamily("runtime_host_stem_cells_ready", "stem cells in stock, ready for a cold start",
                                  labels=["image", "memory_mb"])
        for (image, memory_mb), n in sorted(self.scheduler.stems.stock().items()):
            stems.add_metric([image, str(memory_mb)], n)
        families = [concurrent, throttles, states, freezes, thaws, stems]
        delivery = self.async_delivery
        if delivery is not None:
            for name, doc, counts in (
                    ("lambda_AsyncEventsDropped", "AsyncEventsDropped: events dropped without the function "
                     "succeeding (retries or maximum event age exhausted)", delivery.counts.dropped),
                    ("lambda_DeadLetterErrors", "DeadLetterErrors: on-failure records that could not be "
                     "delivered", delivery.counts.dead_letter_errors),
                    ("lambda_DestinationDeliveryFailures", "DestinationDeliveryFailures: records that could not "
                     "be delivered to a destination", delivery.counts.destination_failures)):
                family = CounterMetricFamily(name, doc, labels=["function"])
                for function in sorted(delivery.functions):
                    family.add_metric([function], counts.get(function, 0))
                families.append(family)
        return families


def _cumulative(bounds: tuple, counts: list[int]) -> list[tuple[str, int]]:
    """Per-bucket counts as Prometheus's cumulative `le` buckets, +Inf last."""
    out, running = [], 0
    for bound, n in zip((*[str(float(b)) for b in bounds], "+Inf"), counts):
        running += n
        out.append((bound, running))
    return out
