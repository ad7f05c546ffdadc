"""Runs the selected scenarios against one real, in-process Host.

Owns: the host of a conformance run (every scenario gets its own copy of
the function, a "variant" named `<function>--<variant>`, so scenarios run
at the same time in separate sandboxes and the observer tells their calls
apart), the runs several scenarios judge together (first contact, the
missing-handler start, the user's events: each run once, on first demand),
and collecting each scenario's result with its duration.
Must not: judge anything (scenarios.py does) or format anything (report.py).

Variants differ from the function only where a scenario needs it: a
missing handler, freezing on or off, 128 MB; none is throttled or
provisioned. Timers: the init limit is the host's (`init_timeout_s`, 10 s
as Lambda); every wait on an invocation is bounded by the function timeout.
"""
from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Awaitable, Callable

from runtime_host.core.config import LOG_FORMAT_JSON, FunctionConfig, LoggingConfig
from runtime_host.host import Host
from runtime_host.core.invocation import Invocation, Outcome
from runtime_host.core.protocol import INIT_TIMEOUT_S
from runtime_host.core.runtimes import RUNTIMES
from runtime_host.scheduler.sandbox import Sandbox
from runtime_host.conformance.observer import ProtocolObserver
from runtime_host.conformance.target import Target, UserEvent, sandbox_readable_dir

MISSING_HANDLER = "conformance_missing.handler"
PROBE_HANDLER = "conformance_probe.handler"
# Our python/node clients: a handler that tells what the context says about the deadline.
PROBE_CODE = {      # by language (runtimes.py)
    "python": ("conformance_probe.py",
                   "import time\n\n\ndef handler(event, context):\n"
                   "    return {'remaining_ms': context.get_remaining_time_in_millis(),\n"
                   "            'now_ms': int(time.time() * 1000)}\n"),
    "nodejs": ("conformance_probe.js",
               "exports.handler = async (event, context) => ({\n"
               "  remaining_ms: context.getRemainingTimeInMillis(),\n  now_ms: Date.now(),\n});\n"),
    "ruby": ("conformance_probe.rb",
             "def handler(event:, context:)\n"
             "  { remaining_ms: context.get_remaining_time_in_millis, now_ms: (Time.now.to_f * 1000).to_i }\n"
             "end\n"),
}
BIG_EVENT_TIMEOUT_S = 60
VARIANTS = ("first", "headers", "payloads", "errors", "bad-handler", "freeze", "sigterm", "sandbox", "events", "probe",
            "concurrent", "extensions", "json-logs")
# A layer with one external extension, put beside the runtime by beside-extensions.
EXTENSION_LAYER = Path(__file__).resolve().parent / "extension_layer"
MAX_LAYERS = 5
EXTENSIONS_MEMORY_MB = 512
JSON_LOGS_LEVEL = "WARN"          # the application level of the json-logs variant
SANDBOX_MEMORY_MB = 128           # "lives within the sandbox" runs at Lambda's smallest size
FIRST_CONTACT_INVOCATIONS = 3
EXIT_WAIT_S = 2.0                 # how long to wait for a sandbox's exit to be reported
OUTPUT_SETTLE_S = 0.1             # container output reaches the log a moment after the fact
DRAIN_TIMEOUT_S = 2.0


def answered_by_runtime(inv: Invocation, outcome: Outcome) -> bool:
    """The runtime took this event and posted its result (a response or an error); not the
    platform (timeout, crash) nor an init error standing in for it."""
    return inv.delivered_at is not None and not outcome.platform


def platform_detail(outcome: Outcome) -> str:
    """`Runtime exited with error: exit status 2` out of a platform error body."""
    try:
        message = json.loads(outcome.body).get("errorMessage", "")
    except (ValueError, AttributeError):
        return outcome.body.decode("utf-8", "replace")
    return re.sub(r"^RequestId: \S+ Error: |^Error: ", "", message)


@dataclass
class Run:
    """One invocation as a scenario made it."""
    inv: Invocation
    outcome: Outcome

    @property
    def answered(self) -> bool:
        return answered_by_runtime(self.inv, self.outcome)


@dataclass
class FirstContact:
    """The function as configured, invoked up to three times in a row (stopping at the first
    invocation the runtime did not answer). asks-for-work, answers-its-id, keeps-serving and
    respects-deadline are judged from it."""
    runs: list[Run]

    @property
    def healthy(self) -> bool:
        """The gate for every other scenario: the runtime took its first event and answered it."""
        return bool(self.runs) and self.runs[0].answered


@dataclass
class BadHandlerRun:
    """The function started with a handler that does not exist."""
    run: Run
    sandboxes: list[Sandbox]
    output: str


@dataclass
class Context:
    target: Target
    host: Host
    observer: ProtocolObserver
    init_timeout_s: float
    variants: dict[str, FunctionConfig]
    _shared: dict[str, asyncio.Task] = field(default_factory=dict)

    @property
    def function(self) -> FunctionConfig:
        return self.target.function

    # --- doing things through the host ------------------------------------------------
    async def invoke(self, variant: str, payload: bytes, *, client_context: str | None = None,
                     cognito_identity: str | None = None) -> Run:
        """One invocation, waited for until its end (the runtime back in GET next, or failed):
        bounded by the init limit plus the function timeout."""
        fn = self.variants[variant]
        inv, outcome = await self.host.invoke(fn, payload, client_context=client_context,
                                              cognito_identity=cognito_identity)
        try:
            await asyncio.wait_for(asyncio.shield(inv.finished), fn.timeout_s + 1)
        except asyncio.TimeoutError:
            pass
        return Run(inv, outcome)

    def sandbox(self, sandbox_id: str | None) -> Sandbox | None:
        if sandbox_id is None:
            return None
        return self.observer.sandboxes.get(sandbox_id) or next(
            (s for s in self.host.sandboxes() if s.id == sandbox_id), None)

    def sandboxes_of(self, variant: str) -> list[Sandbox]:
        name = self.variants[variant].name
        seen = {s.id: s for s in self.observer.sandboxes.values() if s.function.name == name}
        seen.update({s.id: s for s in self.host.sandboxes() if s.function.name == name})
        return sorted(seen.values(), key=lambda s: s.created_at)

    async def container_pid(self, sandbox: Sandbox) -> int | None:
        """The sandbox's first process (the runtime) as the host's kernel numbers it."""
        return sandbox.container.pid if sandbox.container is not None else None

    async def wait_exited(self, sandbox: Sandbox, timeout_s: float = EXIT_WAIT_S) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(sandbox.exited), timeout_s)
            return True
        except asyncio.TimeoutError:
            return False

    async def output(self, variant: str) -> str:
        """Everything the variant's sandboxes printed (the host's per-function log)."""
        await asyncio.sleep(OUTPUT_SETTLE_S)
        path = self.host.sink.log_dir / f"{self.variants[variant].name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def shared(self, key: str, make: Callable[[], Awaitable]) -> Awaitable:
        """A run several scenarios judge: started by the first to ask, awaited by all."""
        if key not in self._shared:
            self._shared[key] = asyncio.ensure_future(make())
        return asyncio.shield(self._shared[key])

    # --- the shared runs ------------------------------------------------------------------
    def first_contact(self) -> Awaitable[FirstContact]:
        async def make() -> FirstContact:
            runs = []
            for n in range(1, FIRST_CONTACT_INVOCATIONS + 1):
                run = await self.invoke("first", json.dumps({"conformance": "first contact", "n": n}).encode())
                runs.append(run)
                if not run.answered:
                    break
            return FirstContact(runs)
        return self.shared("first-contact", make)

    def bad_handler_run(self) -> Awaitable[BadHandlerRun]:
        async def make() -> BadHandlerRun:
            run = await self.invoke("bad-handler", b'{"conformance": "missing handler"}')
            sandboxes = self.sandboxes_of("bad-handler")
            await asyncio.gather(*(self.wait_exited(s) for s in sandboxes))
            return BadHandlerRun(run, sandboxes, await self.output("bad-handler"))
        return self.shared("bad-handler", make)

    def user_events_run(self) -> Awaitable[list[tuple[UserEvent, Run]]]:
        async def make() -> list[tuple[UserEvent, Run]]:
            return [(event, await self.invoke("events", event.payload)) for event in self.target.events]
        return self.shared("user-events", make)


def make_variants(target: Target) -> tuple[dict[str, FunctionConfig], list[Path]]:
    """Every copy of the function a run may use; also the temporary folders made for them."""
    fn = target.function
    base = replace(fn, reserved_concurrency=10, provisioned_concurrency=0, idle_ttl_s=None)
    # The 5.9 MB event's variant has time to spare: its check is that the
    # runtime reads such an event at all; how long that takes at the memory's
    # CPU share depends on this machine's CPU, not Lambda's (said as a warning).
    changes = {"bad-handler": {"handler": MISSING_HANDLER}, "freeze": {"freeze": True},
               "payloads": {"timeout_s": max(fn.timeout_s, BIG_EVENT_TIMEOUT_S)},
               "sigterm": {"freeze": False}, "sandbox": {"memory_mb": SANDBOX_MEMORY_MB},
               "json-logs": {"logging": LoggingConfig(LOG_FORMAT_JSON, JSON_LOGS_LEVEL, "INFO")}}
    variants, temp = {}, []
    for variant in VARIANTS:
        if variant == "probe":
            language = RUNTIMES[fn.runtime].language
            if language not in PROBE_CODE:
                continue
            folder = sandbox_readable_dir("rh-conformance-probe-")
            filename, code = PROBE_CODE[language]
            (folder / filename).write_text(code)
            (folder / filename).chmod(0o644)
            temp.append(folder)
            variants[variant] = replace(base, name=f"{fn.name[:40]}--probe", handler=PROBE_HANDLER,
                                        code_dir=folder, environment={})
            continue
        if variant == "extensions":
            if fn.is_image or len(fn.layers) >= MAX_LAYERS:
                continue                  # image functions take no layers on Lambda; five is the most
            # At least 512 MB: at 128 MB (7% of a core) a node extension and a node
            # runtime starting together took 9.7 s of the 10 s init limit.
            changes["extensions"] = {"layers": (*fn.layers, EXTENSION_LAYER),
                                     "memory_mb": max(fn.memory_mb, EXTENSIONS_MEMORY_MB)}
        variants[variant] = replace(base, name=f"{fn.name[:40]}--{variant}", **changes.get(variant, {}))
    return variants, temp


@dataclass
class ScenarioResult:
    name: str
    verdict: str                # pass | fail | warn | skip
    expected: str
    seen: str
    hint: str                   # for fail and warn; "" otherwise
    duration_s: float


@dataclass
class Report:
    target: str
    function: str
    runtime: str
    results: list[ScenarioResult]
    duration_s: float

    @property
    def failed(self) -> bool:
        return any(r.verdict == "fail" for r in self.results)

    def counts(self) -> dict[str, int]:
        counts = {"pass": 0, "fail": 0, "warn": 0, "skip": 0}
        for r in self.results:
            counts[r.verdict] += 1
        return counts


def select(names: list[str], only: list[str] | None, skip: list[str] | None) -> list[str]:
    """Raises ValueError naming an unknown scenario and the known ones."""
    for name in (only or []) + (skip or []):
        if name not in names:
            raise ValueError(f"no scenario named {name!r}; the scenarios are: {', '.join(names)}")
    chosen = [n for n in names if not only or n in only]
    return [n for n in chosen if not skip or n not in skip]


async def run_conformance(target: Target, *, only: list[str] | None = None, skip: list[str] | None = None,
                          init_timeout_s: float = INIT_TIMEOUT_S, state_dir: Path | None = None,
                          image_progress=None,
                          on_result: Callable[[ScenarioResult], None] | None = None) -> Report:
    """Every selected scenario against the target, concurrently, on one host.
    Raises HostError when the host cannot start (no Docker, no image)."""
    from runtime_host.conformance.scenarios import SCENARIOS

    by_name = {s.name: s for s in SCENARIOS}
    chosen = [by_name[n] for n in select(list(by_name), only, skip)]
    variants, temp = make_variants(target)
    own_state = state_dir is None
    state = Path(tempfile.mkdtemp(prefix="rh-conformance-state-")) if own_state else state_dir
    started = time.monotonic()
    # No stem cells: each sandbox starts its runtime from a fresh exec of its bootstrap, as Lambda
    # does, so init is what Lambda would time and the process is what Lambda would run.
    host = Host({fn.name: fn for fn in variants.values()}, state_dir=state, echo_logs=False,
                init_timeout_s=init_timeout_s, drain_timeout_s=DRAIN_TIMEOUT_S, image_progress=image_progress,
                stem_cells=0)
    observer = ProtocolObserver(host)
    host.protocol_observer = observer          # read by the Runtime API when the host starts
    ctx = Context(target=target, host=host, observer=observer, init_timeout_s=init_timeout_s, variants=variants)

    async def one(scenario) -> ScenarioResult:
        t0 = time.monotonic()
        try:
            verdict, seen, hint = await scenario.run(ctx)
        except Exception as exc:       # a bug or a Docker failure: say so, never hide it as a pass
            verdict, seen = "fail", f"the scenario could not run: {type(exc).__name__}: {exc}"
            hint = "a problem of runtime-host or the Docker engine, not of the runtime; please report it"
        result = ScenarioResult(scenario.name, verdict, scenario.expected, seen,
                                (hint or scenario.hint) if verdict in ("fail", "warn") else "",
                                round(time.monotonic() - t0, 2))
        if on_result is not None:
            on_result(result)
        return result

    try:
        await host.start()
        # Scenarios that time the runtime (init, idle memory) run once the others are done,
        # so that the target's own sandboxes do not compete with the one being timed.
        results = await asyncio.gather(*(one(s) for s in chosen if not s.after_others))
        results += [await one(s) for s in chosen if s.after_others]
        order = {s.name: i for i, s in enumerate(chosen)}
        results.sort(key=lambda r: order[r.name])
    finally:
        for task in ctx._shared.values():
            if not task.done():
                task.cancel()
        await host.stop()
        for folder in temp:
            shutil.rmtree(folder, ignore_errors=True)
        if own_state:
            shutil.rmtree(state, ignore_errors=True)
    return Report(target=target.describe(), function=target.function.name, runtime=target.function.runtime,
                  results=list(results), duration_s=round(time.monotonic() - started, 2))
