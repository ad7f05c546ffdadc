"""The conformance scenarios: one function each, with its name, what it
expects and the hint that fixes a failure.

Owns: every judgement. A scenario returns (verdict, seen, hint): verdict
pass | fail | warn | skip; `seen` is what the host observed, in one or two
lines; `hint` overrides the scenario's own when a finding has a sharper one.
Must not: start hosts or format reports (runner.py, report.py).

Every scenario judges one thing, so a runtime with one defect fails one
scenario. Three rules keep it so:
- asks-for-work, answers-its-id, keeps-serving and respects-deadline judge
  the same run (first contact: up to three invocations in a row).
- Every other scenario needs first contact's first event to have been
  answered by the runtime ("the gate"); without it they are skipped, naming
  the scenario that failed.
- A failure is reported where its cause belongs: a runtime that dies at
  start because it wrote to the read-only filesystem fails
  lives-within-sandbox, and asks-for-work defers to it; a result posted to
  the wrong id fails answers-its-id, not respects-deadline.
"""
from __future__ import annotations

import asyncio
import json
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from runtime_host.core.protocol import (H_FUNCTION_ERROR_TYPE, RUNTIME_API_VERSION, RUNTIME_OUT_OF_MEMORY, SANDBOX_TIMEDOUT)
from runtime_host.core.rules import ERROR_CAUSE_CONTENT_TYPE, VALID_ERROR_TYPE
from runtime_host.core.exits import describe_exit
from runtime_host.core.states import SandboxState
from runtime_host.conformance.observer import describe_stray
from runtime_host.conformance.runner import (JSON_LOGS_LEVEL, MISSING_HANDLER, SANDBOX_MEMORY_MB, Context, Run,
                                             platform_detail)

Verdict = tuple[str, str, str | None]      # (verdict, seen, hint or None for the scenario's own)

NEXT_URL = f"http://$AWS_LAMBDA_RUNTIME_API/{RUNTIME_API_VERSION}/runtime/invocation/next"
SIGTERM_GRACE_S = 2.0
FROZEN_FOR_S = 3.0
STATE_WAIT_S = 1.0
INIT_WARN_MS = 1000
IDLE_MEMORY_WARN_MB = 64
BIG_EVENT_BYTES = int(5.9 * 2**20)
MALFORMED_EVENT = b'{"conformance": "this event is not valid JSON"'
CLIENT_CONTEXT = json.dumps({"client": {"installation_id": "conformance-1", "app_title": "runtime-host conformance",
                                        "app_version_name": "1.0", "app_version_code": "1",
                                        "app_package_name": "com.example.conformance"},
                             "custom": {"scenario": "optional headers"}, "env": {"platform": "linux"}})
COGNITO_IDENTITY = json.dumps({"cognitoIdentityId": "us-east-1:00000000-0000-0000-0000-000000000001",
                               "cognitoIdentityPoolId": "us-east-1:00000000-0000-0000-0000-000000000002"})
READ_ONLY = re.compile(r"read-only file system|\bEROFS\b", re.IGNORECASE)
JSON_CONTENT_TYPES = ("application/json", ERROR_CAUSE_CONTENT_TYPE, "application/vnd.aws.lambda.error+json")


@dataclass(frozen=True)
class Scenario:
    name: str
    expected: str
    hint: str
    run: Callable[[Context], Awaitable[Verdict]]
    after_others: bool = False       # measures time: runs once the target's other scenarios are done


SCENARIOS: list[Scenario] = []


def scenario(name: str, expected: str, hint: str, after_others: bool = False):
    def register(fn: Callable[[Context], Awaitable[Verdict]]):
        SCENARIOS.append(Scenario(name, expected, hint, fn, after_others))
        return fn
    return register


# --- small helpers --------------------------------------------------------------------------
def header(headers: dict, name: str) -> str | None:
    name = name.lower()
    return next((v for k, v in headers.items() if k.lower() == name), None)


def short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def last_output_line(output: str) -> str:
    """The runtime's last words, without the host's START/END/REPORT lines."""
    lines = [l for l in output.splitlines() if l.strip()
             and not l.startswith(("START RequestId:", "END RequestId:", "REPORT RequestId:"))]
    return lines[-1] if lines else ""


def read_only_write(output: str) -> str | None:
    return next((l.strip() for l in output.splitlines() if READ_ONLY.search(l)), None)


def error_type_of(run: Run) -> str | None:
    try:
        doc = json.loads(run.outcome.body)
        if isinstance(doc, dict) and isinstance(doc.get("errorType"), str):
            return doc["errorType"]
    except ValueError:
        pass
    return run.outcome.error_type


def describe_outcome(run: Run) -> str:
    took = f" in {run.inv.duration_ms:.0f} ms"
    if not run.outcome.is_error:
        return "response" + took
    if run.answered:
        return f"error {error_type_of(run)}{took}"
    return f"{run.outcome.error_type}: {platform_detail(run.outcome)}"


def sigterm_disposition(pid: int) -> str | None:
    """ignored | caught | default, read from /proc/PID/status; None if the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        fields = dict(line.split(":", 1) for line in lines if ":" in line)
    except OSError:
        return None
    bit = 1 << (signal.SIGTERM - 1)
    if int(fields["SigIgn"].strip(), 16) & bit:
        return "ignored"
    if int(fields["SigCgt"].strip(), 16) & bit:
        return "caught"
    return "default"


async def wait_state(sandbox, states: tuple[SandboxState, ...], timeout_s: float = STATE_WAIT_S) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while sandbox.state not in states:
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def gate(ctx: Context) -> Verdict | None:
    """None when first contact's first event was answered by the runtime; else the skip."""
    fc = await ctx.first_contact()
    if fc.healthy:
        return None
    if not ctx.observer.deliveries(ctx.variants["first"].name):
        return "skip", "not run: the runtime never took an event (see asks-for-work)", None
    return "skip", "not run: the runtime did not answer its first event (see answers-its-id, respects-deadline)", None


def ended(detail: str) -> str:
    """RAPID's words for an exit ("Runtime exited with error: exit status 2"), as a verb phrase."""
    if match := re.search(r"exit status (\d+)", detail):
        return f"exited with status {match[1]}"
    if match := re.search(r"signal: (.+)$", detail):
        return f"was ended by a signal ({match[1]})"
    if "without providing a reason" in detail:
        return "exited with status 0"
    return detail


def exit_of(ctx: Context, run: Run) -> str:
    """How the sandbox of a run ended: 'exited with status 0'."""
    sandbox = ctx.sandbox(run.inv.sandbox_id)
    if sandbox is not None and sandbox.exit_code is not None:
        return ended(describe_exit(sandbox.exit_code))
    failure = run.inv.failure
    return ended(platform_detail(failure)) if failure else "stopped"


# --- protocol ---------------------------------------------------------------------------------
@scenario("asks-for-work",
          expected=f"GET /{RUNTIME_API_VERSION}/runtime/invocation/next within the init limit",
          hint=f"once initialized, call GET {NEXT_URL} (no timeout on it) and wait there for the event")
async def asks_for_work(ctx: Context) -> Verdict:
    fc = await ctx.first_contact()
    name = ctx.variants["first"].name
    limit = f"{ctx.init_timeout_s:g} s"
    if ctx.observer.deliveries(name):
        init_ms = fc.runs[0].inv.init_duration_ms
        took = f"{init_ms:.0f} ms" if init_ms is not None else "its init"
        return "pass", f"GET next after {took} of init (limit {limit})", None
    run = fc.runs[0]
    output = await ctx.output("first")
    strays = ctx.observer.strays(name)
    posted = [c for c in ctx.observer.init_errors(name) if c["status"] == 202]
    instead = "; ".join(dict.fromkeys(describe_stray(c) for c in strays))
    if run.outcome.error_type == SANDBOX_TIMEDOUT:
        what = f"called {instead}" if strays else "made no call to the Runtime API"
        seen = f"no GET next within {limit}: it hung; it {what}"
    else:
        if read_only_write(output) is not None:
            return "skip", ("it exited during init after writing to the read-only filesystem "
                            "(see lives-within-sandbox)"), None
        if run.outcome.error_type == RUNTIME_OUT_OF_MEMORY:
            return "fail", f"killed during init: out of memory at {ctx.variants['first'].memory_mb} MB", \
                "give the function more memory_mb, or load less at start"
        seen = f"it {ended(platform_detail(run.outcome))} during init"
        if posted:
            doc = posted[0]["body"].decode("utf-8", "replace")
            seen = f"it reported an init error ({short(doc, 120)}) and exited"
            return "fail", seen, "its init failed with the function's own handler: fix what the init error says"
        if strays:
            seen += f", after calling {instead}"
        elif line := last_output_line(output):
            seen += f"; its last output: {short(line, 100)!r}"
    if any(c["status"] == 404 and "wrong API version" in describe_stray(c) for c in strays):
        return "fail", seen, f"the Runtime API version is {RUNTIME_API_VERSION}: GET {NEXT_URL}"
    if strays:
        return "fail", seen, f"the path is GET {NEXT_URL}"
    return "fail", seen, None


@scenario("answers-its-id",
          expected="one result per event (POST .../invocation/ID/response or /error), to the id it was given",
          hint="post to /invocation/$ID/response where ID is the Lambda-Runtime-Aws-Request-Id header of "
               "the GET next that brought the event; one result per event, then GET next again")
async def answers_its_id(ctx: Context) -> Verdict:
    await ctx.first_contact()
    name = ctx.variants["first"].name
    deliveries = ctx.observer.deliveries(name)
    if not deliveries:
        return "skip", "not run: the runtime never took an event (see asks-for-work)", None
    results = ctx.observer.results(name)
    if not results:
        return "skip", "no result was posted to judge (see respects-deadline)", None
    given = {d.request_id for d in deliveries}
    wrong = [r for r in results if r.request_id not in given]
    if wrong:
        r = wrong[0]
        return "fail", (f"posted {r.kind} to id {r.request_id}, which it was never given ({r.status}); "
                        f"the event's id was {deliveries[0].request_id}"
                        + (f" ({len(wrong)} such posts)" if len(wrong) > 1 else "")), None
    by_id: dict[str, list] = {}
    for r in results:
        by_id.setdefault(r.request_id, []).append(r)
    twice = {rid: rs for rid, rs in by_id.items() if len(rs) > 1}
    if twice:
        rid, rs = next(iter(twice.items()))
        answers = ", ".join(f"{r.kind} {r.status}" for r in rs)
        return "fail", f"answered {rid} {len(rs)} times: {answers}", \
            "post exactly one result (response or error) per event, then call GET next"
    statuses = sorted({r.status for r in results})
    return "pass", (f"{len(given)} event(s), {len(results)} result(s), each to its own id "
                    f"({', '.join(map(str, statuses))})"), None


@scenario("keeps-serving",
          expected="the same process answers 3 invocations in a row without exiting",
          hint="loop: after posting a result call GET next again; never exit between events")
async def keeps_serving(ctx: Context) -> Verdict:
    """"The same process" is the sandbox's runtime: its bootstrap, the container's first
    process, whose exit ends the container. The three invocations must run in one
    sandbox (no cold start after the first), none may end with the runtime's exit,
    and the container's first process (pid on the host) is named in the report. A
    shell runtime spawns a curl per call; those are its helpers, not the runtime."""
    if (skip := await gate(ctx)) is not None:
        return skip
    fc = await ctx.first_contact()
    runs = fc.runs
    first = runs[0]
    for i, run in enumerate(runs[1:], start=2):
        before = runs[i - 2]
        if run.inv.sandbox_id != first.inv.sandbox_id:
            return "fail", (f"invocation {i} needed a new sandbox: after answering invocation {i - 1} the "
                            f"runtime {exit_of(ctx, before)}"), None
        if not run.answered:
            return "fail", f"invocation {i} was not answered: {describe_outcome(run)}", None
    last = runs[-1]
    if len(runs) < 3:
        return "fail", f"invocation {len(runs)} was not answered: {describe_outcome(last)}", None
    sandbox = ctx.sandbox(last.inv.sandbox_id)
    if last.inv.failure is not None or sandbox is None or sandbox.state is SandboxState.DEAD:
        return "fail", f"after answering invocation 3 the runtime {exit_of(ctx, last)}", None
    pid = await ctx.container_pid(sandbox)
    cold = sum(1 for r in runs if r.inv.cold)
    return "pass", (f"one process{f' (pid {pid} on the host)' if pid else ''} answered 3 of 3 invocations, "
                    f"{cold} cold start, and is back in GET next"), None


@scenario("respects-deadline",
          expected="answers before Lambda-Runtime-Deadline-Ms and posts nothing after it; python/node: "
                   "the context's remaining time is the deadline minus now",
          hint="answer (or post an error) before the deadline in Lambda-Runtime-Deadline-Ms (epoch ms); "
               "Lambda ends the invocation there with Sandbox.Timedout")
async def respects_deadline(ctx: Context) -> Verdict:
    fc = await ctx.first_contact()
    name = ctx.variants["first"].name
    deliveries = ctx.observer.deliveries(name)
    if not deliveries:
        return "skip", "not run: the runtime never took an event (see asks-for-work)", None
    results = ctx.observer.results(name)
    timeout_ms = ctx.variants["first"].timeout_s * 1000
    margins = []
    given = {d.request_id for d in deliveries}
    for d in deliveries:
        mine = [r for r in results if r.request_id == d.request_id]
        if not mine:
            if any(r.request_id not in given for r in results):
                return "skip", "its results went to ids it was never given (see answers-its-id)", None
            late = [c for c in ctx.observer.of(name) if c["at_epoch_ms"] > d.deadline_ms]
            seen = (f"no answer within the {timeout_ms / 1000:g} s timeout: the invocation ended with "
                    f"{SANDBOX_TIMEDOUT} at Lambda-Runtime-Deadline-Ms")
            if late:
                seen += f"; still called {late[0]['method']} {late[0]['path']} after it"
            return "fail", seen, None
        first = mine[0]
        if first.at_epoch_ms > d.deadline_ms:
            late_ms = first.at_epoch_ms - d.deadline_ms
            return "fail", f"posted its {first.kind} {late_ms:.0f} ms after the deadline", None
        margins.append(d.deadline_ms - first.at_epoch_ms)
    seen = f"{len(margins)} event(s) answered, at least {min(margins):.0f} ms before the deadline"
    if "probe" not in ctx.variants or not fc.healthy:
        return "pass", seen, None
    # Our python/node clients: the handler's context must count down to the same deadline.
    run = await ctx.invoke("probe", b'{"conformance": "remaining time"}')
    probe = ctx.observer.deliveries(ctx.variants["probe"].name)
    try:
        said = json.loads(run.outcome.body)
        remaining, now = int(said["remaining_ms"]), int(said["now_ms"])
    except (ValueError, KeyError, TypeError):
        return "fail", f"the deadline probe handler got {describe_outcome(run)}", \
            "the context must offer get_remaining_time_in_millis() / getRemainingTimeInMillis()"
    if not probe:
        return "fail", "the deadline probe got no event", None
    actual = probe[-1].deadline_ms - now
    if not (0 < remaining <= timeout_ms and abs(remaining - actual) <= 100):
        return "fail", (f"the context said {remaining} ms remaining, but the deadline was {actual} ms away"), \
            "compute the remaining time as Lambda-Runtime-Deadline-Ms minus the current epoch ms"
    return "pass", seen + f"; the context's remaining time was {remaining} ms (deadline - now = {actual} ms)", None


@scenario("error-report",
          expected="errors posted as JSON {errorMessage, errorType} with Content-Type: application/json "
                   "(Lambda-Runtime-Function-Error-Type: optional)",
          hint="post a JSON body {\"errorMessage\": \"...\", \"errorType\": \"...\"} with "
               "'Content-Type: application/json'")
async def error_report(ctx: Context) -> Verdict:
    fc = await ctx.first_contact()
    sources: list[tuple[str, str]] = [("bad-handler", "init/error (missing handler)")]
    event_of: dict[str, str] = {}          # request id -> events/NAME
    if fc.healthy:
        await ctx.invoke("errors", MALFORMED_EVENT)
        sources.append(("errors", "error for an unparsable event"))
        if ctx.target.events:
            event_of = {run.inv.request_id: f"error for events/{event.name}"
                        for event, run in await ctx.user_events_run()}
            sources.append(("events", "error for a user event"))
    await ctx.bad_handler_run()
    fails, warns, seen = [], [], []
    for variant, label in sources:
        for call in ctx.observer.error_reports(ctx.variants[variant].name):
            request_id = call["path"].rsplit("/", 2)[-2]
            kind = "init/error" if call["path"].endswith("/init/error") else event_of.get(request_id, label)
            f, w, s = judge_error_report(call)
            fails += [f"{kind}: {x}" for x in f]
            warns += [f"{kind}: {x}" for x in w]
            seen.append(f"{kind}: {s}")
    if fails:
        return "fail", "; ".join(fails + warns), None
    if not seen:
        return "warn", "the runtime posted no error report in any scenario, so none could be checked", \
            "add events/NAME.json with NAME.error.json that makes the handler fail, so its error path is checked"
    if warns:
        hint = ("send 'Content-Type: application/json' (curl -d sends application/x-www-form-urlencoded)"
                if any("Content-Type" in w for w in warns) else
                f"send {H_FUNCTION_ERROR_TYPE} with a type like Runtime.HandlerNotFound or Function.MyError "
                "(Lambda records anything else as Runtime.Unknown)")
        return "warn", "; ".join(warns), hint
    return "pass", "; ".join(seen), None


def judge_error_report(call: dict) -> tuple[list[str], list[str], str]:
    """(failures, warnings, a short description) of one posted error document."""
    fails, warns = [], []
    body, size = call["body"], call["body_size"] or 0
    content_type = (header(call["headers"], "Content-Type") or "").split(";")[0].strip().lower()
    error_type_header = header(call["headers"], H_FUNCTION_ERROR_TYPE)
    is_init = call["path"].endswith("/init/error")
    doc = None
    if size == 0:
        fails.append("empty body; expected JSON with errorMessage and errorType")
    elif size > len(body):
        pass        # longer than the observer keeps: not judged
    else:
        try:
            doc = json.loads(body)
        except ValueError:
            fails.append(f"body is not JSON: {short(body.decode('utf-8', 'replace'), 60)!r}")
        else:
            missing = [k for k in ("errorMessage", "errorType")
                       if not isinstance(doc, dict) or not isinstance(doc.get(k), str)]
            if missing:
                fails.append(f"JSON without {' and '.join(missing)}: {short(body.decode('utf-8', 'replace'), 60)}")
    # RAPID reads an init/error body as JSON whenever it parses (spec 1.6; awslambdaric sends no
    # Content-Type there); an invocation error reaches the caller with the type it was posted with.
    if not is_init and content_type not in JSON_CONTENT_TYPES:
        warns.append(f"Content-Type is {content_type or 'missing'}, not application/json")
    if error_type_header is None:
        if is_init:
            warns.append(f"no {H_FUNCTION_ERROR_TYPE} header (Lambda then records Runtime.Unknown)")
    elif not VALID_ERROR_TYPE.search(error_type_header):
        warns.append(f"{H_FUNCTION_ERROR_TYPE}: {error_type_header!r} is recorded as Runtime.Unknown by Lambda")
    etype = doc.get("errorType") if isinstance(doc, dict) else None
    header_text = (f"{H_FUNCTION_ERROR_TYPE}: {error_type_header}" if error_type_header
                   else f"no {H_FUNCTION_ERROR_TYPE} (optional)")
    return fails, warns, f"JSON errorType {etype}, {content_type or 'no Content-Type'}, {header_text}"


@scenario("init-failure",
          expected=f"with a handler that does not exist: POST /{RUNTIME_API_VERSION}/runtime/init/error, "
                   "then exit non-zero",
          hint=f"when the handler cannot be loaded, POST JSON {{errorMessage, errorType}} to "
               f"/{RUNTIME_API_VERSION}/runtime/init/error, then exit 1")
async def init_failure(ctx: Context) -> Verdict:
    b = await ctx.bad_handler_run()
    name = ctx.variants["bad-handler"].name
    posts = ctx.observer.init_errors(name)
    accepted = [c for c in posts if c["status"] == 202]
    given = f"_HANDLER={MISSING_HANDLER}" if not ctx.function.is_image else f"command {MISSING_HANDLER}"
    sandbox = b.sandboxes[0] if b.sandboxes else None
    if accepted:
        post = accepted[0]
        etype = header(post["headers"], H_FUNCTION_ERROR_TYPE) or _doc_error_type(post["body"]) or "no type"
        after = [c for c in ctx.observer.of(name) if c["at"] > post["at"] and c["path"] != post["path"]]
        if after:
            c = after[0]
            return "fail", (f"posted init/error ({etype}), then kept running: {c['method']} {c['path']} "
                            f"({c['status']})"), "exit (non-zero) right after posting init/error"
        code = sandbox.exit_code if sandbox is not None else None
        if code == 0:
            return "warn", f"posted init/error ({etype}), then exited with status 0", \
                "exit with a non-zero status after posting init/error"
        if code is None or code == 128 + signal.SIGKILL:
            return "pass", (f"posted init/error ({etype}); the host removed the sandbox before it exited "
                            "on its own"), None
        return "pass", f"posted init/error ({etype}), then {ended(describe_exit(code))}", None
    run = b.run
    if run.answered or ctx.observer.deliveries(name):
        return "warn", (f"started with {given} and asked for work as usual: it does not check that its "
                        "handler exists"), "if your runtime loads a handler by name, report a missing one " \
                                           "with init/error instead of serving"
    if run.outcome.error_type == SANDBOX_TIMEDOUT:
        return "fail", f"started with {given}, it neither reported nor exited within {ctx.init_timeout_s:g} s", None
    return "warn", (f"started with {given}, it {ended(platform_detail(run.outcome))} without posting "
                    "init/error (Lambda can only say Runtime.ExitError)"), None


def _doc_error_type(body: bytes) -> str | None:
    try:
        doc = json.loads(body)
        return doc.get("errorType") if isinstance(doc, dict) else None
    except ValueError:
        return None


@scenario("headers-and-payloads",
          expected="answers with and without the optional Client-Context and Cognito-Identity headers, "
                   "a non-ASCII event and a 5.9 MB event",
          hint="treat optional headers as optional; read the event as UTF-8 bytes of any size up to 6 MB "
               "(not through a command-line argument)")
async def headers_and_payloads(ctx: Context) -> Verdict:
    if (skip := await gate(ctx)) is not None:
        return skip
    big_head = b'{"conformance": "5.9 MB event", "blob": "'
    big = big_head + b"x" * (BIG_EVENT_BYTES - len(big_head) - 2) + b'"}'
    cases = [
        ("no optional headers", b'{"conformance": "no optional headers"}', None, None),
        ("client context + cognito identity", b'{"conformance": "optional headers"}', CLIENT_CONTEXT, COGNITO_IDENTITY),
        ("non-ASCII event", json.dumps({"conformance": "non-ASCII", "text": "ünïcödé ✓ 日本語 🚀"},
                                       ensure_ascii=False).encode("utf-8"), None, None),
        ("5.9 MB event", big, None, None),
    ]
    fails, warns, slow, seen = [], [], [], []
    for label, payload, client_context, cognito in cases:
        variant = "payloads" if payload is big else "headers"
        run = await ctx.invoke(variant, payload, client_context=client_context, cognito_identity=cognito)
        what = describe_outcome(run)
        seen.append(f"{label}: {what}")
        if not run.answered:
            fails.append(f"{label}: {what}")
        elif run.outcome.is_error:
            etype = error_type_of(run) or ""
            (fails if etype.startswith("Runtime.") else warns).append(f"{label}: {what}")
        elif run.inv.duration_ms > ctx.function.timeout_s * 1000:
            slow.append(f"{label}: {what}, longer than the function's {ctx.function.timeout_s} s timeout at "
                        f"{ctx.function.memory_mb} MB on this machine's CPU")
    if fails:
        return "fail", "; ".join(fails), None
    if warns:
        return "warn", "; ".join(warns) + " (the handler's own error: fine if it rejects such events)", \
            "check that the handler accepts events like these"
    if slow:
        return "warn", "; ".join(slow), ("it read the event; whether it fits the timeout on Lambda depends on "
                                         "Lambda's CPU: check it there, or give the function more memory or time")
    return "pass", "; ".join(seen), None


# --- what Lambda does to a runtime -----------------------------------------------------------------
@scenario("survives-freeze",
          expected=f"frozen {FROZEN_FOR_S:g} s while waiting in GET next, then answers the next event, same process",
          hint="put no client timeout on GET next; after a thaw, timers fire late and a closed keep-alive "
               "socket must be reopened")
async def survives_freeze(ctx: Context) -> Verdict:
    if (skip := await gate(ctx)) is not None:
        return skip
    run1 = await ctx.invoke("freeze", b'{"conformance": "before the freeze"}')
    sandbox = ctx.sandbox(run1.inv.sandbox_id)
    if not run1.answered or sandbox is None:
        return "skip", f"not run: its first event got {describe_outcome(run1)}", None
    await wait_state(sandbox, (SandboxState.FROZEN, SandboxState.DEAD),
                     STATE_WAIT_S + getattr(ctx.host, "freeze_grace_s", 0.0))
    if sandbox.state is SandboxState.DEAD:
        return "skip", f"not run: after its first event the runtime {exit_of(ctx, run1)} (see keeps-serving)", None
    if sandbox.state is not SandboxState.FROZEN:
        return "skip", f"not run: the host did not freeze the sandbox (state {sandbox.state.value})", None
    await asyncio.sleep(FROZEN_FOR_S)
    stayed = sandbox.state is SandboxState.FROZEN
    run2 = await ctx.invoke("freeze", b'{"conformance": "after the freeze"}')
    if run2.inv.sandbox_id != sandbox.id:
        return "fail", f"after {FROZEN_FOR_S:g} s frozen the sandbox was gone ({exit_of(ctx, run1)}); " \
                       "the next event needed a new one", None
    if not run2.answered:
        return "fail", f"after {FROZEN_FOR_S:g} s frozen, the next event got {describe_outcome(run2)}", None
    return "pass", (f"frozen {FROZEN_FOR_S:g} s{'' if stayed else ' (thawed early)'} in GET next, then answered "
                    f"the next event ({describe_outcome(run2)}), same sandbox"), None


@scenario("shuts-down",
          expected=f"on SIGTERM while idle it exits within {SIGTERM_GRACE_S:g} s (or keeps SIGTERM's default "
                   "action, which ends it at once in Lambda)",
          hint="do not ignore SIGTERM (remove trap '' TERM / SIG_IGN); a SIGTERM handler must end the process")
async def shuts_down(ctx: Context) -> Verdict:
    """In Lambda the runtime is a child of the platform's init and is not PID 1,
    so SIGTERM's default action ends it at once. Here it is PID 1 of its
    container, and the kernel delivers no signal to a PID 1 that has no
    handler for it: python3, awslambdaric and sh keep running after a real
    SIGTERM, and so does node, whose handler restores the default action and
    re-raises. So a real SIGTERM is sent, and if the runtime is still running
    2 s later its disposition (from /proc/PID/status) decides: ignored or
    still caught fails, the default action passes."""
    if (skip := await gate(ctx)) is not None:
        return skip
    run = await ctx.invoke("sigterm", b'{"conformance": "before SIGTERM"}')
    sandbox = ctx.sandbox(run.inv.sandbox_id)
    if not run.answered or sandbox is None:
        return "skip", f"not run: its event got {describe_outcome(run)}", None
    await wait_state(sandbox, (SandboxState.READY, SandboxState.DEAD))
    if sandbox.state is not SandboxState.READY:
        return "skip", f"not run: after its event the runtime {exit_of(ctx, run)} (see keeps-serving)", None
    pid = await ctx.container_pid(sandbox)
    before = sigterm_disposition(pid) if pid else None
    t0 = asyncio.get_running_loop().time()
    await ctx.host.signal(sandbox, "SIGTERM")
    if await ctx.wait_exited(sandbox, SIGTERM_GRACE_S):
        took_ms = (asyncio.get_running_loop().time() - t0) * 1000
        return "pass", f"{ended(describe_exit(sandbox.exit_code))} {took_ms:.0f} ms after SIGTERM", None
    after = sigterm_disposition(pid) if pid else None
    if "ignored" in (before, after):
        return "fail", f"ignores SIGTERM (SIG_IGN) and was still running {SIGTERM_GRACE_S:g} s after it", None
    if after == "caught":
        return "fail", f"handles SIGTERM but was still running {SIGTERM_GRACE_S:g} s after it", \
            "end the process from the SIGTERM handler (Lambda sends SIGKILL soon after SIGTERM)"
    restored = ", which its own handler restored," if before == "caught" else ""
    return "pass", (f"SIGTERM's action is the default{restored} so Lambda, where the runtime is not PID 1, ends "
                    "it at once; here, as its container's PID 1, the kernel shields it"), None


@scenario("lives-within-sandbox",
          expected=f"starts at {SANDBOX_MEMORY_MB} MB with a read-only root, writing only to /tmp; "
                   f"init <= {INIT_WARN_MS / 1000:g} s and idle memory <= {IDLE_MEMORY_WARN_MB} MB (else warn)",
          hint="write only under /tmp: /var/task and the rest of the root filesystem are read-only in Lambda",
          after_others=True)
async def lives_within_sandbox(ctx: Context) -> Verdict:
    fc = await ctx.first_contact()
    if not fc.healthy:
        first = fc.runs[0]
        if read_only_write(await ctx.output("first")) is None and first.outcome.error_type != RUNTIME_OUT_OF_MEMORY:
            return await gate(ctx)        # it fails for a reason of its own: nothing to learn at 128 MB
    run = await ctx.invoke("sandbox", b'{"conformance": "sandbox"}')
    output = await ctx.output("sandbox")
    configured = ctx.function.memory_mb
    if (line := read_only_write(output)) is not None:
        when = "at start" if not ctx.observer.deliveries(ctx.variants["sandbox"].name) else "while serving"
        return "fail", f"wrote outside /tmp {when}: {short(line, 110)!r}", None
    failure = run.inv.failure
    if RUNTIME_OUT_OF_MEMORY in (run.outcome.error_type, failure.error_type if failure else None):
        if configured > SANDBOX_MEMORY_MB:
            return "warn", f"killed: out of memory at {SANDBOX_MEMORY_MB} MB (it is configured for {configured} MB)", \
                f"fine if it needs its {configured} MB; else load less at start"
        return "fail", f"killed: out of memory at {SANDBOX_MEMORY_MB} MB", \
            "load less at start, or give it more memory_mb"
    if not run.answered:
        if (skip := await gate(ctx)) is not None:
            return skip
        verdict = "warn" if configured > SANDBOX_MEMORY_MB else "fail"
        return verdict, f"at {SANDBOX_MEMORY_MB} MB its event got {describe_outcome(run)}", None
    init_ms = run.inv.init_duration_ms
    sandbox = ctx.sandbox(run.inv.sandbox_id)
    memory_mb = None
    if sandbox is not None and await wait_state(sandbox, (SandboxState.FROZEN, SandboxState.READY)):
        await asyncio.sleep(0.2)
        now = ctx.host.memory_now_bytes(sandbox)
        memory_mb = None if now is None else now / 2**20
    idle = f"idle memory {memory_mb:.1f} MB" if memory_mb is not None else "idle memory not measured (not idle)"
    init = f"init {init_ms:.0f} ms" if init_ms is not None else "init time not measured"
    seen = f"at {SANDBOX_MEMORY_MB} MB with a read-only root: {init}, {idle}; nothing written outside /tmp"
    warns = []
    if init_ms is not None and init_ms > INIT_WARN_MS:
        warns.append(f"init took {init_ms:.0f} ms (over {INIT_WARN_MS / 1000:g} s)")
    if memory_mb is not None and memory_mb > IDLE_MEMORY_WARN_MB:
        warns.append(f"idle memory {memory_mb:.1f} MB (over {IDLE_MEMORY_WARN_MB} MB)")
    if warns:
        return "warn", seen + ": " + "; ".join(warns), \
            "load less at start (lazy imports, smaller dependencies); a cold start pays for every MB and ms"
    return "pass", seen, None


# --- the user's events ---------------------------------------------------------------------------
@scenario("user-events",
          expected="every events/NAME.json answered; NAME.expected.json: response JSON-equal to it; "
                   "NAME.error.json: an error with its errorType",
          hint="make the response equal events/NAME.expected.json (or fix that file)")
async def user_events(ctx: Context) -> Verdict:
    if not ctx.target.events:
        where = ("a bare bootstrap has no events/ folder" if ctx.target.bare_bootstrap
                 else "no events/*.json in the folder")
        return "skip", f"nothing to check: {where}", None
    if (skip := await gate(ctx)) is not None:
        return skip
    fails, seen = [], []
    hint = None
    for event, run in await ctx.user_events_run():
        label = f"events/{event.name}"
        if not run.answered:
            fails.append(f"{label}: {describe_outcome(run)}")
            continue
        if event.has_expected:
            if run.outcome.is_error:
                fails.append(f"{label}: {describe_outcome(run)}, expected a response")
                continue
            try:
                got = json.loads(run.outcome.body)
            except ValueError:
                text = short(run.outcome.body.decode("utf-8", "replace"), 60)
                fails.append(f"{label}: response is not JSON: {text!r}")
                continue
            if got != event.expected:
                fails.append(f"{label}: response {short(json.dumps(got), 70)} differs from {event.name}.expected.json "
                             f"{short(json.dumps(event.expected), 70)}")
                continue
            seen.append(f"{label}: response as expected")
        elif event.error_type is not None:
            got_type = error_type_of(run) if run.outcome.is_error else None
            if got_type != event.error_type:
                fails.append(f"{label}: {describe_outcome(run)}, expected error {event.error_type}")
                hint = (f"make events/{event.name}.json fail with errorType {event.error_type} "
                        f"(or fix {event.name}.error.json)")
                continue
            seen.append(f"{label}: error {got_type} as expected")
        else:
            seen.append(f"{label}: {describe_outcome(run)}")
    if fails:
        return "fail", "; ".join(fails), hint
    return "pass", "; ".join(seen), None


# --- every refusal accounted for ------------------------------------------------------------------
@scenario("serves-concurrently",
          expected="with max_concurrency = N (AWS_LAMBDA_MAX_CONCURRENCY), N GET next loops wait at once and N "
                   "invocations sent at once are each answered with their own id",
          hint="read AWS_LAMBDA_MAX_CONCURRENCY and run that many loops of GET next -> handler -> POST result, "
               "each on its own connection (a thread or an async task each)")
async def serves_concurrently(ctx: Context) -> Verdict:
    """The sign of N loops is N GET next calls open at once while the runtime
    has nothing to do: a runtime with one loop keeps one open, whatever its
    handler's speed. N invocations at once must then all be answered."""
    n = ctx.function.max_concurrency
    if n <= 1:
        return "skip", "max_concurrency is 1 (Lambda's on-demand model): one loop is all a runtime needs", None
    if (skip := await gate(ctx)) is not None:
        return skip
    name = ctx.variants["concurrent"].name
    runs = await asyncio.gather(*(ctx.invoke("concurrent", b'{"conformance": "serves-concurrently"}')
                                  for _ in range(n)))
    unanswered = [r for r in runs if not r.answered]
    waiting = 0
    deadline = asyncio.get_running_loop().time() + 2 * STATE_WAIT_S
    while waiting < n and asyncio.get_running_loop().time() < deadline:
        waiting = most_open_at_once([c for c in ctx.observer.of(name) if c["method"] == "GET"
                                     and c["path"].endswith("/runtime/invocation/next")])
        await asyncio.sleep(0.05)
    sandboxes = len({r.inv.sandbox_id for r in runs})
    lost = (f"; {len(unanswered)} of the {n} sent at once were not answered: {describe_outcome(unanswered[0])}"
            if unanswered else "")
    if waiting < n:
        return "fail", (f"at most {waiting} GET next call(s) open at once where max_concurrency is {n}: the runtime "
                        f"takes its invocations one loop at a time{lost}"), None
    if unanswered:
        return "fail", f"{n} GET next loops were waiting{lost}", None
    return "pass", f"{waiting} GET next loops open at once; {n} invocations at once answered in {sandboxes} sandbox", None


@scenario("beside-extensions",
          expected="with an external extension registered (INVOKE, SHUTDOWN) the runtime starts after it, answers "
                   "its events while the extension gets the same ones, and SHUTDOWN reaches the extension when the "
                   "sandbox is removed",
          hint="leave the sandbox's other processes alone (no kill -9 -1, no exec over PID namespaces) and do not "
               "assume you are the only caller of the Runtime API's port")
async def beside_extensions(ctx: Context) -> Verdict:
    """Lambda runs external extensions from layers beside every runtime
    (spec §3.1, §8.1): observability agents, secrets caches. A runtime must
    keep working beside them; its init ends only once they are ready too."""
    if "extensions" not in ctx.variants:
        why = "an image function takes no layers" if ctx.function.is_image else "the function has five layers"
        return "skip", f"not run: {why}", None
    if (skip := await gate(ctx)) is not None:
        return skip
    runs = [await ctx.invoke("extensions", b'{"conformance": "beside-extensions"}') for _ in range(2)]
    output = await ctx.output("extensions")
    if "conformance-extension: registered" not in output:
        words = [l for l in output.splitlines() if "conformance-extension" in l]
        return "skip", f"not run: the extension could not start here: {short(words[-1] if words else output)}", None
    unanswered = [r for r in runs if not r.answered]
    if unanswered:
        return "fail", f"with an extension beside it the runtime did not answer: {describe_outcome(unanswered[0])}", None
    missing = [r.inv.request_id for r in runs if r.inv.request_id not in output]
    if missing:
        return "fail", f"the extension never got INVOKE {missing[0]}", None
    sandbox = ctx.sandbox(runs[-1].inv.sandbox_id)
    idle = (SandboxState.READY, SandboxState.FROZEN)
    if sandbox is not None:
        await wait_state(sandbox, (*idle, SandboxState.DEAD))
    if sandbox is None or sandbox.state not in idle or runs[0].inv.sandbox_id != runs[1].inv.sandbox_id:
        return "skip", ("not run: the runtime did not stay for its next event, so SHUTDOWN could not be sent "
                        "(see keeps-serving)"), None
    init_ms = runs[0].inv.init_duration_ms
    pool = ctx.host.scheduler.pools[ctx.variants["extensions"].name]
    pool.destroy_soon(sandbox, graceful=True)
    await ctx.wait_exited(sandbox, SIGTERM_GRACE_S + 2)
    output = await ctx.output("extensions")
    if '"SHUTDOWN"' not in output:
        return "fail", "SHUTDOWN never reached the extension when the sandbox was removed", None
    return "pass", (f"2 of 2 answered beside a registered extension (init {init_ms or 0:.0f} ms, both ready); "
                    "INVOKE and SHUTDOWN reached the extension"), None


def most_open_at_once(calls: list[dict]) -> int:
    """The most of these calls that were open at the same moment (an open one counts to now)."""
    edges = []
    for c in calls:
        edges.append((c["at_epoch_ms"], 1))
        if c["done_epoch_ms"] is not None:
            edges.append((c["done_epoch_ms"], -1))
    most = now = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):   # an end before a start at the same instant
        now += step
        most = max(most, now)
    return most


LEVEL_ORDER = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")


@scenario("logs-as-configured",
          expected=f"with logging = {{format = \"JSON\", application_level = \"{JSON_LOGS_LEVEL}\"}} every log line the "
                   "runtime writes is a JSON object with timestamp, level and message, none below the level",
          hint="read AWS_LAMBDA_LOG_FORMAT and AWS_LAMBDA_LOG_LEVEL at start: in JSON format write one JSON object a "
               "line ({\"timestamp\", \"level\", \"message\", \"requestId\"}) and drop lines below the level, as "
               "AWS's runtimes do")
async def logs_as_configured(ctx: Context) -> Verdict:
    """Advanced logging controls (docs/spec-additions.md §4): Lambda sets the
    two variables; the runtime formats and filters its application logs.
    Platform records (START/REPORT as JSON) are the host's and not judged."""
    if (skip := await gate(ctx)) is not None:
        return skip
    run = await ctx.invoke("json-logs", b'{"conformance": "logs-as-configured"}')
    if not run.answered:
        return "fail", f"in JSON log format the runtime did not answer: {describe_outcome(run)}", None
    lines = []
    for line in (await ctx.output("json-logs")).splitlines():
        if not line.strip() or "conformance-extension" in line:
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and str(doc.get("type", "")).startswith("platform."):
            continue                                  # the host's own records
        lines.append((line, doc))
    if not lines:
        return "skip", "no log record to judge: the runtime and its handler printed nothing", None
    floor = LEVEL_ORDER.index(JSON_LOGS_LEVEL)
    below = [d for _, d in lines if isinstance(d, dict) and str(d.get("level", "")).upper().replace("WARNING", "WARN")
             in LEVEL_ORDER[:floor]]
    if below:
        return "fail", (f"logged at {below[0].get('level')} although AWS_LAMBDA_LOG_LEVEL={JSON_LOGS_LEVEL}: "
                        f"{short(json.dumps(below[0]))}"), None
    records = [d for _, d in lines if isinstance(d, dict) and "level" in d and "message" in d]
    text = len(lines) - len(records)
    plain = f"; {text} plain line(s) (print/echo output, which Lambda passes on as it is)" if text else ""
    if not records:
        return "skip", f"no log record to judge{plain}", None
    return "pass", f"{len(records)} JSON log record(s), none below {JSON_LOGS_LEVEL}{plain}", None


@scenario("no-refused-calls",
          expected="every Runtime API call accepted, except those a scenario provoked (results and paths are "
                   "judged by answers-its-id and asks-for-work)",
          hint="a refused call is one Lambda refuses too (e.g. init/error once init is over, GET next after "
               "init/error: 403 InvalidStateTransition); make each call only when the protocol allows it, and "
               "never ignore a refusal",
          after_others=True)
async def no_refused_calls(ctx: Context) -> Verdict:
    refused = []
    for variant, fn in ctx.variants.items():
        for call in ctx.observer.refused(fn.name):
            why = f", ended by {call['ended_by']}" if call.get("ended_by") else ""
            error_type = f" {call['error_type']}" if call.get("error_type") else ""
            refused.append(f"{call['method']} {call['path']} -> {call['status']}{error_type}{why} ({variant} run)")
    if refused:
        shown = "; ".join(refused[:5]) + (f"; and {len(refused) - 5} more" if len(refused) > 5 else "")
        return "fail", f"{len(refused)} refused call(s): {shown}", None
    calls = sum(len(ctx.observer.of(fn.name)) for fn in ctx.variants.values())
    return "pass", f"all {calls} Runtime API calls accepted or judged by their own scenario", None
