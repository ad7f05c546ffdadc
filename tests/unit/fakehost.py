"""A real Host (scheduler, pools, stem cells, Runtime API over real loopback
HTTP, ledger) over the in-memory FakeBackend: what the scheduler's unit tests
run against, in milliseconds, with no container engine.

`scripted_runtime` is a runtime client a fake container runs: it asks the
Runtime API for work from its own address and does what each event says:
  {"echo": x}        answer x
  {"sleep_s": s}     sleep, then answer
  {"print": text}    print text (its output), then answer
  {"error": type}    post an error of that type
  {"exit": code}     exit with that code before answering
  {"hang": true}     never answer
Before its first GET next it may `init_error` (FAKE_INIT_ERROR in its env)
or exit (FAKE_INIT_EXIT). Stem cells are supported: a container started as a
stem first asks GET /runtime-host/stem and then runs as what it is told.
"""
from __future__ import annotations

import asyncio
import json
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from runtime_host.api.invoke_api import InvokeApi
from runtime_host.backend.fake import FakeBackend, FakeProcess
from runtime_host.core.config import FunctionConfig
from runtime_host.core.protocol import H_REQUEST_ID, LOOPBACK_RUNTIME_API
from runtime_host.host import Host

NEXT = "/2018-06-01/runtime/invocation/next"


def function(name: str = "fn", **fields) -> FunctionConfig:
    code = Path(tempfile.mkdtemp(prefix="rh-unit-code-"))
    (code / "app.py").write_text("def handler(event, context):\n    return event\n")
    return FunctionConfig(name=name, runtime=fields.pop("runtime", "python3.11"),
                          handler=fields.pop("handler", "app.handler"), code_dir=code, **fields)


def session_from(address: str) -> aiohttp.ClientSession:
    """HTTP from a fake container's own address, as its packets would come."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0), force_close=False))


class ScriptedRuntime:
    """The program of every fake container; `backend` is set by FakeHost."""

    def __init__(self) -> None:
        self.backend: FakeBackend | None = None
        self.started: list[FakeProcess] = []

    async def __call__(self, process: FakeProcess) -> int:
        """Runs until its script ends it or SIGTERM comes (then it exits 0, as a well-behaved runtime)."""
        self.started.append(process)
        work = asyncio.ensure_future(self._run(process))
        sigterm = asyncio.ensure_future(process.sigterm.wait())
        try:
            await asyncio.wait((work, sigterm), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sigterm.cancel()
            if not work.done():
                work.cancel()
        return work.result() if work.done() and not work.cancelled() else 0

    async def _run(self, process: FakeProcess) -> int:
        async with session_from(process.container.address) as http:
            env = process.env
            if process.spec.labels.get("stem"):             # a stem cell: told what to be first
                async with http.get(f"http://{process.runtime_api}/runtime-host/stem") as r:
                    if r.status != 200:
                        return 0
                    env = (await r.json())["env"]
                process.env = env
            api = env["AWS_LAMBDA_RUNTIME_API"]
            if api == LOOPBACK_RUNTIME_API:            # its own listener, wherever the fake put it
                api = self.backend.listener_address(process.container)
            base = f"http://{api}/2018-06-01/runtime"
            if "FAKE_INIT_EXIT" in env:
                return int(env["FAKE_INIT_EXIT"])
            if "FAKE_INIT_ERROR" in env:
                async with http.post(f"{base}/init/error", data=b'{"errorMessage": "no", "errorType": "x"}',
                                     headers={"Lambda-Runtime-Function-Error-Type": env["FAKE_INIT_ERROR"]}):
                    pass
                return 1
            while True:
                async with http.get(f"{base}/invocation/next") as r:
                    if r.status != 200:
                        return 2
                    request_id = r.headers[H_REQUEST_ID]
                    event = json.loads(await r.read())
                if "print" in event:
                    process.output(event["print"].encode() + b"\n")
                if "sleep_s" in event:
                    await asyncio.sleep(event["sleep_s"])
                if "exit" in event:
                    return int(event["exit"])
                if event.get("hang"):
                    await asyncio.Event().wait()
                if "error" in event:
                    async with http.post(f"{base}/invocation/{request_id}/error",
                                         data=json.dumps({"errorMessage": "failed", "errorType": event["error"]}),
                                         headers={"Lambda-Runtime-Function-Error-Type": event["error"]}):
                        pass
                    continue
                async with http.post(f"{base}/invocation/{request_id}/response",
                                     data=json.dumps(event.get("echo", event)),
                                     headers={"Content-Type": "application/json"}):
                    pass


@asynccontextmanager
async def fake_host(*functions: FunctionConfig, stem_cells: int = 0, loopback_listener: bool = False,
                    program=None, **host_args):
    """A started Host over a FakeBackend; stopped (and checked to have ended
    every container) on the way out."""
    runtime = ScriptedRuntime()
    backend = FakeBackend(program or runtime, loopback_listener=loopback_listener)
    runtime.backend = backend
    state = Path(tempfile.mkdtemp(prefix="rh-unit-state-"))
    host = Host({fn.name: fn for fn in functions}, state_dir=state, echo_logs=False, backend=backend,
                runtime_api_port=0, stem_cells=stem_cells, **host_args)
    await host.start()
    host.fake = backend
    host.runtime = runtime
    try:
        yield host
    finally:
        await host.stop()


async def invoke(host: Host, event: dict, name: str = "fn"):
    """(invocation, outcome, decoded body) of one invocation."""
    inv, outcome = await host.invoke(host.functions[name], json.dumps(event).encode())
    return inv, outcome, json.loads(outcome.body)


async def settle(host: Host, *, until=lambda: True, timeout_s: float = 2.0) -> None:
    """Lets the loop run until `until()` holds (timers, END/REPORT, removals)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not until():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.005)


@asynccontextmanager
async def invoke_api(*functions: FunctionConfig, timeouts: dict | None = None, **host_args):
    """A fake-backend host (as fake_host) with its Invoke API on a free
    loopback port, and an HTTP session to it: (host, session)."""
    async with fake_host(*functions, **host_args) as host:
        server = await InvokeApi(host).start("127.0.0.1", 0, **(timeouts or {}))
        port = server.sockets[0].getsockname()[1]
        host.invoke_api_port = port
        try:
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
                yield host, http
        finally:
            server.close()
