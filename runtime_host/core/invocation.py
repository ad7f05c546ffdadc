"""One invocation: its event, its clock, its outcome, its log.

Owns: what the caller and the runtime exchange for one request id, and the
timestamps billing needs. The state lives in `life` (see states.py).
Must not: choose sandboxes, wait for anything or know about an event loop.
Who waits for an invocation's answer and end subclasses it and overrides
`_answered` and `_ended` (scheduler/invocation.py: LiveInvocation).
"""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from runtime_host.core.protocol import LOG_TAIL_BYTES
from runtime_host.core.states import InvocationEvent, InvocationLife, InvocationState
from runtime_host.core.streaming import StreamEnd


class Stream(Protocol):
    """A response the runtime streams (scheduler/stream.py: ResponseStream)."""
    content_type: str
    size: int

    def finish(self, end: StreamEnd) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """What the caller gets back. `error_type` is set for every failure."""
    body: bytes
    content_type: str = "application/json"
    error_type: str | None = None      # None = success
    status: str = "success"            # success | error | timeout | failure (telemetry §5.4)
    platform: bool = False             # built by the host (timeout, crash), not posted by the runtime
    # A streamed response (spec §2): the caller reads it from here as the
    # runtime sends it; `body` is empty and the stream says how it ended.
    stream: Stream | None = field(default=None, compare=False)

    @property
    def is_error(self) -> bool:
        return self.error_type is not None


def platform_error(request_id: str | None, error_type: str, detail: str, status: str = "error") -> Outcome:
    """An error the platform builds itself (spec §3.4: RequestId prefix, `Error:` detail)."""
    prefix = f"RequestId: {request_id} Error: " if request_id else "Error: "
    body = json.dumps({"errorType": error_type, "errorMessage": prefix + detail}).encode()
    return Outcome(body=body, error_type=error_type, status=status, platform=True)


def _message_of(outcome: Outcome) -> str:
    try:
        return json.loads(outcome.body).get("errorMessage", "")
    except (ValueError, AttributeError):
        return outcome.body.decode("utf-8", "replace")


def keep_tail(buffer: bytearray, data: bytes, limit: int = LOG_TAIL_BYTES) -> None:
    """Appends data to buffer, keeping only its last `limit` bytes."""
    if len(data) >= limit:
        buffer[:] = data[-limit:]
        return
    buffer += data
    if len(buffer) > limit:
        del buffer[:len(buffer) - limit]


def new_trace_id() -> str:
    """An X-Ray trace header as Lambda hands one to every invocation (Sampled=0: no tracing here)."""
    return f"Root=1-{int(time.time()):08x}-{os.urandom(12).hex()};Parent={os.urandom(8).hex()};Sampled=0"


@dataclass(eq=False)
class Invocation:
    function_name: str
    payload: bytes
    invoked_arn: str
    timeout_s: int
    trace_id: str = field(default_factory=new_trace_id)
    client_context: str | None = None
    cognito_identity: str | None = None
    streaming_caller: bool = False            # InvokeWithResponseStream: 200 MB cap, shaped after 6 MiB
    function: object = field(default=None, repr=False)   # the FunctionConfig it runs (a version's, if published)
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    received_at: float = field(default_factory=time.monotonic)
    received_epoch_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    clock_started_at: float = 0.0
    clock_started_epoch_ms: int = 0
    life: InvocationLife = field(default_factory=InvocationLife)
    # Filled in as the invocation moves on (monotonic seconds).
    delivered_at: float | None = None
    responded_at: float | None = None
    ended_at: float | None = None
    init_duration_ms: float | None = None     # set on a cold start
    sandbox_id: str | None = None
    cold: bool = False                        # this invocation started its sandbox
    max_memory_used_mb: int | None = None
    failure: Outcome | None = None            # why it ended badly, even after the caller had its answer
    stream_end: StreamEnd | None = None       # how a streamed response ended
    response_started_at: float | None = None  # the runtime's response began (a stream: its first byte may follow)
    produced_bytes: int = 0                   # the response's size, as the runtime sent it
    # With extensions still working after the runtime is back in next, the
    # invocation (and its Duration) runs on until they are too (spec §3.3).
    extensions_done_at: float | None = None
    # The end of its log, at most LOG_TAIL_BYTES: all that X-Amz-Log-Result
    # carries. The whole log is in the function's log file (store/logs.py);
    # a function printing 100 MB must not cost the host 100 MB.
    log: bytearray = field(default_factory=bytearray)
    log_bytes: int = 0                        # how much it printed in all (platform lines included)

    answer: Outcome | None = None             # what the caller got, once it has it
    report: str | None = None                 # the REPORT line, once written

    @property
    def state(self) -> InvocationState:
        return self.life.state

    def start_clock(self) -> None:
        """The function timeout runs from when a ready sandbox takes the
        invocation: as in Lambda, a cold start's INIT has its own limit and
        does not eat into the timeout."""
        self.clock_started_at = time.monotonic()
        self.clock_started_epoch_ms = int(time.time() * 1000)

    @property
    def deadline_ms(self) -> int:
        """Epoch ms, as the Lambda-Runtime-Deadline-Ms header wants it: invoke time + timeout."""
        return self.clock_started_epoch_ms + self.timeout_s * 1000

    @property
    def duration_ms(self) -> float:
        """From handing the event to the runtime to receiving its result (or
        failing). An invocation that failed before its event was handed over
        (its sandbox could not init) counts from when it was received."""
        start = self.delivered_at if self.delivered_at is not None else self.received_at
        end = self.responded_at or self.ended_at or time.monotonic()
        if self.extensions_done_at is not None:
            end = max(end, self.extensions_done_at)
        return max(0.0, (end - start) * 1000)

    # --- moves; each goes through the table in states.py ---------------------
    def deliver(self) -> None:
        if self.life.state is InvocationState.RUNNING:
            self.life.apply(InvocationEvent.REDELIVER)
            return
        self.life.apply(InvocationEvent.DELIVER)
        self.delivered_at = time.monotonic()

    def respond(self, outcome: Outcome) -> None:
        self.life.apply(InvocationEvent.RESULT)
        self.response_started_at = time.monotonic()
        self.produced_bytes = len(outcome.body)
        if outcome.stream is None:            # a stream's duration runs on to its end (stream_ended)
            self.responded_at = self.response_started_at
        self._answer(outcome)

    def stream_ended(self, end: StreamEnd) -> None:
        """The runtime's streamed response is over (its last chunk, or cut)."""
        if self.stream_end is None:
            self.stream_end = end
            self.produced_bytes = self.answer.stream.size if self.answer is not None else 0
            if self.responded_at is None:
                self.responded_at = time.monotonic()

    def runtime_next(self) -> None:
        self.life.apply(InvocationEvent.RUNTIME_NEXT)
        self._end()

    def fail(self, outcome: Outcome) -> bool:
        """Ends the invocation with a platform error; False if it had already ended."""
        if not self.life.can(InvocationEvent.FAIL):
            return False
        self.life.apply(InvocationEvent.FAIL)
        self.failure = outcome
        if self.answer is not None and self.answer.stream is not None:
            # Mid-stream: the caller already has its 200; the stream's end says why it stopped.
            self.answer.stream.finish(StreamEnd(outcome.error_type, _message_of(outcome)))
        self._answer(outcome)
        self._end()
        return True

    def _answer(self, outcome: Outcome) -> None:
        if self.answer is None:
            self.answer = outcome
            self._answered(outcome)

    def _end(self) -> None:
        self.ended_at = time.monotonic()
        self._ended()

    # --- for whoever waits (overridden; nothing waits on a bare record) -------------
    def _answered(self, outcome: Outcome) -> None:
        """The caller's answer is there (called once)."""

    def _ended(self) -> None:
        """The invocation has ended: the runtime is back in GET next, or it failed (called once)."""

    def append_log(self, data: bytes) -> None:
        self.log_bytes += len(data)
        keep_tail(self.log, data)
