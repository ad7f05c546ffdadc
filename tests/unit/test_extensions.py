"""Extensions, Telemetry and Logs APIs (spec §8) below the engine: fake
extensions are programs the fake backend runs beside the runtime (as the
Docker backend runs /opt/extensions/* with docker exec), calling the real
APIs over loopback from their container's address."""
from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from aiohttp import web

from runtime_host.core.invocation import Outcome
from tests.unit.fakehost import fake_host, function, session_from, settle

WAIT_S = 5.0
EXT = "/2020-01-01/extension"


def layer_with(*names: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix="rh-unit-layer-"))
    (root / "extensions").mkdir()
    for name in names:
        (root / "extensions" / name).write_text("#!/bin/sh\n")
        (root / "extensions" / name).chmod(0o755)
    return root


class FakeExtension:
    """An external extension: registers, then takes events until SHUTDOWN.
    `after_invoke` runs between an INVOKE and the next call (its work)."""

    def __init__(self, name: str, events=("INVOKE", "SHUTDOWN"), *, after_invoke=None, crash_at_init=False,
                 init_error: str | None = None, telemetry: dict | None = None):
        self.name, self.events = name, list(events)
        self.after_invoke, self.crash_at_init, self.init_error = after_invoke, crash_at_init, init_error
        self.telemetry = telemetry          # a subscription body; records land in self.received
        self.seen: list[dict] = []
        self.registered: dict | None = None
        self.received: list[dict] = []
        self.got_records = asyncio.Event()
        self.subscribe_path = "/2022-07-01/telemetry"

    async def __call__(self, process) -> int:
        if self.crash_at_init:
            return 3
        base = f"http://{process.env['AWS_LAMBDA_RUNTIME_API']}"
        async with session_from(process.container.address) as http:
            async with http.post(f"{base}{EXT}/register", json={"events": self.events},
                                 headers={"Lambda-Extension-Name": self.name,
                                          "Lambda-Extension-Accept-Feature": "accountId"}) as r:
                assert r.status == 200, await r.text()
                ext_id = r.headers["Lambda-Extension-Identifier"]
                self.registered = await r.json()
            headers = {"Lambda-Extension-Identifier": ext_id}
            if self.init_error:
                async with http.post(f"{base}{EXT}/init/error", data=b'{"errorMessage":"no config"}',
                                     headers={**headers, "Lambda-Extension-Function-Error-Type": self.init_error}):
                    pass
                return 1
            runner = None
            if self.telemetry is not None:
                runner = await self._listen(process.container.address)
                async with http.put(f"{base}{self.subscribe_path}", json=self.telemetry, headers=headers) as r:
                    assert r.status == 200, await r.text()
            try:
                while True:
                    async with http.get(f"{base}{EXT}/event/next", headers=headers) as r:
                        event = await r.json()
                    self.seen.append(event)
                    if event["eventType"] == "SHUTDOWN":
                        return 0
                    if self.after_invoke is not None:
                        await self.after_invoke(event)
            finally:
                if runner is not None:
                    await runner.cleanup()

    async def _listen(self, address: str):
        async def receive(request: web.Request) -> web.Response:
            self.received.extend(await request.json())
            self.got_records.set()
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/telemetry", receive)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, address, 4243).start()
        return runner


def with_extensions(*extensions: FakeExtension, **fields):
    fn = function(layers=(layer_with(*(e.name for e in extensions)),), **fields)
    return fn


def install(host, *extensions: FakeExtension) -> None:
    for ext in extensions:
        host.fake.exec_programs[f"/opt/extensions/{ext.name}"] = ext


async def invoke(host, event: dict) -> tuple[object, Outcome]:
    return await asyncio.wait_for(host.invoke(host.functions["fn"], json.dumps(event).encode()), WAIT_S)


async def test_an_external_extension_registers_gets_invoke_and_the_invocation_waits_for_it():
    released = asyncio.Event()

    async def work(event):
        await released.wait()                       # its work after the response

    ext = FakeExtension("ext1", after_invoke=work)
    async with fake_host(with_extensions(ext)) as host:
        install(host, ext)
        inv, outcome = await invoke(host, {"echo": "hi"})
        assert outcome.body == b'"hi"', "the caller has its answer while the extension works"
        await asyncio.sleep(0.05)
        assert not inv.finished.done(), "the invocation ends only when the extension is back in next"
        released.set()
        await asyncio.wait_for(inv.reported, WAIT_S)
        log = host.log_path("fn").read_text()
    assert ext.registered == {"functionName": "fn", "functionVersion": "$LATEST", "handler": "app.handler",
                              "accountId": "000000000000"}
    invoke_event = ext.seen[0]
    assert invoke_event["eventType"] == "INVOKE" and invoke_event["requestId"] == inv.request_id
    assert invoke_event["invokedFunctionArn"] == inv.invoked_arn and invoke_event["deadlineMs"] == inv.deadline_ms
    assert invoke_event["tracing"] == {"type": "X-Amzn-Trace-Id", "value": inv.trace_id}
    assert inv.extensions_done_at is not None and inv.extensions_done_at >= inv.responded_at
    assert "EXTENSION\tName: ext1\tState: Ready\tEvents: [INVOKE, SHUTDOWN]" in log
    assert ext.seen[-1]["eventType"] == "SHUTDOWN" and ext.seen[-1]["shutdownReason"] == "spindown"


async def test_an_extension_that_crashes_at_init_fails_the_invocation_with_extension_crash():
    ext = FakeExtension("broken", crash_at_init=True)
    async with fake_host(with_extensions(ext)) as host:
        install(host, ext)
        inv, outcome = await invoke(host, {})
    assert outcome.error_type == "Extension.Crash"
    assert "extension broken exited with status 3" in json.loads(outcome.body)["errorMessage"]


async def test_an_extension_init_error_fails_the_init_with_extension_init_error():
    ext = FakeExtension("picky", init_error="Extension.ConfigInvalid")
    async with fake_host(with_extensions(ext)) as host:
        install(host, ext)
        _, outcome = await invoke(host, {})
    assert outcome.error_type == "Extension.InitError"
    assert "Extension.ConfigInvalid" in json.loads(outcome.body)["errorMessage"]


async def test_registration_closes_when_the_runtime_first_asks_for_work_and_internal_ones_cannot_take_shutdown():
    async with fake_host(function()) as host:
        await invoke(host, {})
        sandbox = host.sandboxes()[0]
        async with session_from(sandbox.address) as http:
            url = f"http://{host.runtime_api_address}{EXT}/register"
            async with http.post(url, json={"events": ["INVOKE"]}, headers={"Lambda-Extension-Name": "late"}) as r:
                late = (r.status, await r.json())
    assert late[0] == 403 and late[1]["errorType"] == "Extension.RegistrationClosed"
    ext = sandbox.extensions
    from runtime_host.core.extensions import ExtensionRefusal
    ext.registration_open = True
    try:
        ext.register("internal", ["SHUTDOWN"], False)
    except ExtensionRefusal as exc:
        refused = exc.error_type
    assert refused == "Extension.InvalidEventType"


async def test_a_timeout_sends_shutdown_with_reason_timeout():
    # The extension's work after the response outlasts the function timeout:
    # the caller had its answer; the invocation times out (spec §3.1: the
    # timeout covers extension work) and SHUTDOWN says why.
    first = asyncio.Event()

    async def slow_once(event):
        if not first.is_set():
            first.set()
            await asyncio.sleep(2)

    ext = FakeExtension("slow", after_invoke=slow_once)
    async with fake_host(with_extensions(ext, timeout_s=1)) as host:
        install(host, ext)
        inv, outcome = await invoke(host, {})
        await asyncio.wait_for(inv.reported, WAIT_S)
        await settle(host, until=lambda: any(e["eventType"] == "SHUTDOWN" for e in ext.seen), timeout_s=WAIT_S)
    assert outcome.error_type is None
    assert inv.failure is not None and inv.failure.error_type == "Sandbox.Timedout"
    shutdown = next(e for e in ext.seen if e["eventType"] == "SHUTDOWN")
    assert shutdown["shutdownReason"] == "timeout" and shutdown["deadlineMs"] > 0


async def test_telemetry_delivers_every_platform_event_in_order_and_the_functions_lines():
    subscription = {"schemaVersion": "2022-12-13", "types": ["platform", "function"],
                    "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
                    "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:4243/telemetry"}}
    ext = FakeExtension("collector", events=["INVOKE"], telemetry=subscription)
    async with fake_host(with_extensions(ext)) as host:
        install(host, ext)
        cold, _ = await invoke(host, {"print": "hello from the function"})
        await asyncio.wait_for(cold.reported, WAIT_S)
        warm, _ = await invoke(host, {})
        await asyncio.wait_for(warm.reported, WAIT_S)
        await settle(host, until=lambda: sum(r["type"] == "platform.report" for r in ext.received) == 2,
                     timeout_s=WAIT_S)
    types = [r["type"] for r in ext.received]
    assert types[:4] == ["platform.initStart", "platform.extension", "platform.telemetrySubscription",
                         "platform.initRuntimeDone"], types
    cold_part = types[types.index("platform.start"):types.index("platform.report") + 1]
    assert cold_part == ["platform.start", "function", "platform.runtimeDone", "platform.report"], types
    assert types[-3:] == ["platform.start", "platform.runtimeDone", "platform.report"]
    assert "platform.initReport" in types and types.index("platform.initReport") < types.index("platform.start")
    function_line = next(r for r in ext.received if r["type"] == "function")
    assert function_line["record"] == "hello from the function"
    reports = [r["record"] for r in ext.received if r["type"] == "platform.report"]
    assert reports[0]["requestId"] == cold.request_id and reports[1]["requestId"] == warm.request_id
    assert reports[0]["metrics"]["durationMs"] == round(cold.duration_ms, 3)
    assert "initDurationMs" in reports[0]["metrics"] and "initDurationMs" not in reports[1]["metrics"]
    done = next(r["record"] for r in ext.received if r["type"] == "platform.runtimeDone")
    assert done["status"] == "success" and [s["name"] for s in done["spans"]] == ["responseLatency", "responseDuration"]


async def test_a_bad_subscription_is_a_validation_error_naming_the_field():
    answers = []

    async def subscriber(process) -> int:
        base = f"http://{process.env['AWS_LAMBDA_RUNTIME_API']}"
        async with session_from(process.container.address) as http:
            async with http.post(f"{base}{EXT}/register", json={"events": []},
                                 headers={"Lambda-Extension-Name": "probe"}) as r:
                ext_id = r.headers["Lambda-Extension-Identifier"]
            async with http.put(f"{base}/2022-07-01/telemetry",
                                json={"types": ["platform"], "buffering": {"timeoutMs": 5},
                                      "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:1/x"}},
                                headers={"Lambda-Extension-Identifier": ext_id}) as r:
                answers.append((r.status, await r.json()))
            async with http.get(f"{base}{EXT}/event/next", headers={"Lambda-Extension-Identifier": ext_id}):
                pass
        return 0

    async with fake_host(function(layers=(layer_with("probe"),))) as host:
        host.fake.exec_programs["/opt/extensions/probe"] = subscriber
        _, outcome = await invoke(host, {})
    assert outcome.error_type is None
    assert answers[0][0] == 400 and answers[0][1]["errorType"] == "ValidationError"
    assert "buffering.timeoutMs must be an integer from 25 to 30000" in answers[0][1]["errorMessage"]


async def test_the_logs_api_serves_its_older_subscribers_their_own_event_types():
    subscription = {"schemaVersion": "2021-03-18", "types": ["platform", "function"],
                    "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
                    "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:4243/telemetry"}}

    ext = FakeExtension("old-agent", events=["INVOKE"], telemetry=subscription)
    ext.subscribe_path = "/2020-08-15/logs"
    async with fake_host(with_extensions(ext)) as host:
        install(host, ext)
        inv, _ = await invoke(host, {"print": "a line"})
        await asyncio.wait_for(inv.reported, WAIT_S)
        await settle(host, until=lambda: any(r["type"] == "platform.report" for r in ext.received), timeout_s=WAIT_S)
    types = [r["type"] for r in ext.received]
    assert "platform.initStart" not in types and "platform.telemetrySubscription" not in types
    assert types.index("platform.logsSubscription") < types.index("platform.start")
    assert [t for t in types if t.startswith("platform.") and t not in ("platform.logsSubscription",
                                                                         "platform.extension")] == [
        "platform.start", "platform.runtimeDone", "platform.end", "platform.report"], types
    assert {"type": "function", "record": "a line"}.items() <= next(
        r for r in ext.received if r["type"] == "function").items()


async def test_a_subscriber_that_could_not_be_reached_is_told_what_it_lost():
    from runtime_host.scheduler.telemetry import SandboxTelemetry

    received: list[dict] = []
    up = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        received.extend(await request.json())
        up.set()
        return web.Response(text="ok")

    telemetry = SandboxTelemetry(lambda: "127.0.0.1")
    port = 4300 + (id(telemetry) % 500)
    telemetry.subscribe("late-listener", "telemetry", json.dumps({
        "types": ["platform"], "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
        "destination": {"protocol": "HTTP", "URI": f"http://sandbox.localdomain:{port}/"}}).encode())
    telemetry.end_backlog()
    telemetry.emit("platform.start", {"requestId": "lost"})
    telemetry.flush_all()                            # nobody listens yet: the batch is lost
    for _ in range(100):
        if telemetry.idle():
            break
        await asyncio.sleep(0.01)
    app = web.Application()
    app.router.add_post("/", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        telemetry.emit("platform.start", {"requestId": "seen"})
        telemetry.flush_all()
        await asyncio.wait_for(up.wait(), WAIT_S)
        for _ in range(100):
            if any(r["type"] == "platform.logsDropped" for r in received):
                break
            await asyncio.sleep(0.03)
    finally:
        await telemetry.close()
        await runner.cleanup()
    dropped = next(r["record"] for r in received if r["type"] == "platform.logsDropped")
    assert dropped["droppedRecords"] == 1 and dropped["droppedBytes"] > 0 and "slower" in dropped["reason"]
    assert [r["record"].get("requestId") for r in received if r["type"] == "platform.start"] == ["seen"]


async def test_a_container_images_own_opt_extensions_are_started_as_a_layers_would_be():
    """A container image has no layers (config refuses them): Lambda starts
    what the image itself has in /opt/extensions, read once per function."""
    ext = FakeExtension("img-ext")
    fn = function(runtime="image", image="my-fn:latest")
    async with fake_host(fn) as host:
        host.fake.image_files[("my-fn:latest", "/opt/extensions")] = ["img-ext"]
        install(host, ext)
        inv, outcome = await invoke(host, {"echo": "hi"})
        assert outcome.body == b'"hi"'
        await asyncio.wait_for(inv.reported, WAIT_S)
        second, _ = await invoke(host, {"echo": "again"})
        await asyncio.wait_for(second.reported, WAIT_S)
        log = host.log_path("fn").read_text()
        listed = [call for call in host.fake.calls if call[0] == "list_files /opt/extensions"]
    assert ext.registered is not None and ext.registered["functionName"] == "fn"
    assert [e["requestId"] for e in ext.seen if e["eventType"] == "INVOKE"] == [inv.request_id, second.request_id]
    assert "EXTENSION\tName: img-ext\tState: Ready\tEvents: [INVOKE, SHUTDOWN]" in log
    assert len(listed) == 1, "read from the first container only"


async def test_an_image_without_opt_extensions_runs_with_none():
    async with fake_host(function(runtime="image", image="plain:latest")) as host:
        inv, outcome = await invoke(host, {"echo": 1})
        assert outcome.body == b"1"
        await asyncio.wait_for(inv.reported, WAIT_S)
        assert not host.sandboxes()[0].extensions.any
