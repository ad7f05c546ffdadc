"""A fake Runtime API for testing runtime clients without the host or Docker.

Owns: serving `GET next`, `POST response`, `POST error` and `POST init/error`
on 127.0.0.1 the way RAPID answers them (200 with the invocation headers; 202
`{"status":"OK"}`), and recording every request (headers, body, the client's
source port) so tests can assert on what a client sent.

Does not model the runtime state machine (that is the host's job, not a test
helper's): it hands out queued events in order and accepts every POST with the
status it was built with. It runs its own event loop in a background thread,
so plain synchronous tests can drive client subprocesses against it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
import uuid

from aiohttp import web

API_PREFIX = "/2018-06-01/runtime"
DEFAULT_TIMEOUT_MS = 3000


@dataclasses.dataclass
class RecordedRequest:
    """One request a client made. `kind` is next, response, error or init_error."""

    kind: str
    method: str
    path: str
    request_id: str | None
    headers: dict[str, str]  # names lower-cased
    body: bytes
    client_port: int

    def json(self):
        return json.loads(self.body)


@dataclasses.dataclass
class QueuedEvent:
    request_id: str
    body: bytes
    headers: dict[str, str]
    timeout_ms: int


class FakeRuntimeApi:
    def __init__(self, post_status: int = 202):
        self.post_status = post_status
        self._recorded: list[RecordedRequest] = []
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[QueuedEvent] | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> FakeRuntimeApi:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(5):
            raise RuntimeError("fake Runtime API did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def address(self) -> str:
        """The value for AWS_LAMBDA_RUNTIME_API."""
        return f"127.0.0.1:{self.port}"

    def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._queue = asyncio.Queue()
        app = web.Application()
        app.router.add_get(API_PREFIX + "/invocation/next", self._next)
        app.router.add_post(API_PREFIX + "/invocation/{request_id}/response", self._result)
        app.router.add_post(API_PREFIX + "/invocation/{request_id}/error", self._result)
        app.router.add_post(API_PREFIX + "/init/error", self._init_error)
        # handler_cancellation: a client killed while it waits in GET next
        # must not swallow an event queued after it died.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.2)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        ready.set()
        self._loop.run_forever()
        self._loop.close()

    # -- what tests call ---------------------------------------------------

    def enqueue(
        self,
        event=None,
        *,
        raw_body: bytes | None = None,
        request_id: str | None = None,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        trace_id: str | None = None,
        client_context: dict | str | None = None,
        cognito_identity: dict | None = None,
        content_type: str = "application/json",
    ) -> str:
        """Queue an event for the next `GET next`; return its request id."""
        request_id = request_id or str(uuid.uuid4())
        body = raw_body if raw_body is not None else json.dumps(event).encode()
        headers = {
            "Lambda-Runtime-Aws-Request-Id": request_id,
            "Lambda-Runtime-Invoked-Function-Arn":
                "arn:aws:lambda:us-east-1:000000000000:function:probe",
            "Content-Type": content_type,
        }
        if trace_id:
            headers["Lambda-Runtime-Trace-Id"] = trace_id
        if client_context is not None:
            # A str goes out as is, so tests can send a header that is not JSON.
            headers["Lambda-Runtime-Client-Context"] = (
                client_context if isinstance(client_context, str) else json.dumps(client_context))
        if cognito_identity is not None:
            headers["Lambda-Runtime-Cognito-Identity"] = json.dumps(cognito_identity)
        item = QueuedEvent(request_id, body, headers, timeout_ms)
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        return request_id

    def wait_for_result(self, request_id: str, timeout_s: float = 5.0) -> RecordedRequest:
        """The response or error the client posted for `request_id`."""
        return self._wait_for(
            lambda r: r.kind in ("response", "error") and r.request_id == request_id,
            timeout_s, f"a result for {request_id}")

    def wait_for_init_error(self, timeout_s: float = 5.0) -> RecordedRequest:
        return self._wait_for(lambda r: r.kind == "init_error", timeout_s, "an init error")

    def wait_for_requests(self, kind: str, count: int, timeout_s: float = 5.0) -> list[RecordedRequest]:
        """Wait until `count` requests of `kind` have arrived; return them."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while len(matching := self.requests(kind)) < count:
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    raise TimeoutError(f"{len(matching)} of {count} {kind} requests within {timeout_s} s")
                self._changed.wait(remaining_s)
            return matching

    def requests(self, kind: str | None = None) -> list[RecordedRequest]:
        with self._changed:
            return [r for r in self._recorded if kind is None or r.kind == kind]

    def _wait_for(self, predicate, timeout_s: float, what: str) -> RecordedRequest:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for recorded in self._recorded:
                    if predicate(recorded):
                        return recorded
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    raise TimeoutError(f"no {what} within {timeout_s} s; got {self._recorded!r}")
                self._changed.wait(remaining_s)

    # -- handlers ----------------------------------------------------------

    async def _record(self, request: web.Request, kind: str) -> RecordedRequest:
        recorded = RecordedRequest(
            kind=kind,
            method=request.method,
            path=request.path,
            request_id=request.match_info.get("request_id"),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.read(),
            client_port=request.transport.get_extra_info("peername")[1],
        )
        with self._changed:
            self._recorded.append(recorded)
            self._changed.notify_all()
        return recorded

    async def _next(self, request: web.Request) -> web.Response:
        await self._record(request, "next")
        item = await self._queue.get()
        headers = dict(item.headers)
        # As RAPID: the deadline counts from when the event is handed over.
        headers["Lambda-Runtime-Deadline-Ms"] = str(int(time.time() * 1000) + item.timeout_ms)
        return web.Response(status=200, body=item.body, headers=headers)

    async def _result(self, request: web.Request) -> web.Response:
        kind = "response" if request.path.endswith("/response") else "error"
        await self._record(request, kind)
        return self._post_answer()

    async def _init_error(self, request: web.Request) -> web.Response:
        await self._record(request, "init_error")
        return self._post_answer()

    def _post_answer(self) -> web.Response:
        if 200 <= self.post_status < 300:
            return web.json_response({"status": "OK"}, status=self.post_status)
        return web.json_response(
            {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"},
            status=self.post_status)
