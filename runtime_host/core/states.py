"""Every legal move of a sandbox, an invocation and a stem cell, as tables of data.

Two rules, as in h11's _state.py:
- Everything that changes a sandbox's, an invocation's or a stem cell's state
  goes through `SandboxLife.apply` / `InvocationLife.apply` / `StemLife.apply`;
  nothing else assigns `.state`.
- This file does not know about Docker, HTTP or timers. It only says which
  event is legal in which state, and what the state becomes.

Theory of operation. A sandbox is STARTING while its container is created,
INITIALIZING from the moment the container is told to start (its runtime may
call before Docker says the start is done) until the runtime first asks for
work (GET next), then
READY (waiting in GET next, no invocation), BUSY while it holds one
invocation, and back to READY when the runtime asks for the next one. A
runtime that posts init/error is INIT_FAILED until its process exits. Any
state may go to SHUTTING_DOWN (the host decided to remove it) and to DEAD (its
container is gone). FROZEN is the READY sandbox whose cgroup is frozen.

An invocation is PENDING until the runtime fetches it, RUNNING while the
handler runs, RESPONDED once the runtime posted response or error (the caller
may have its answer), DONE once the runtime is back in GET next, or FAILED
(timeout, crash, init failure). A refusal raises IllegalTransition naming the
machine, the state and the event; the Runtime API turns that into the 403 a
runtime sees.

A stem cell (a container started ahead of need, scheduler/stems.py) is
STARTING until two things have happened, in either order: its container has
started with its Runtime API listener set up (STARTED), and its stem program
has asked for a function (ASKED). With both it is READY and may be TAKEN by a
cold start, after which it belongs to the sandbox it becomes. It is DEAD once
its container exits and DISCARDED once the host stops keeping it.
"""
from __future__ import annotations

import enum


class SandboxState(enum.Enum):
    STARTING = "STARTING"
    INITIALIZING = "INITIALIZING"
    INIT_FAILED = "INIT_FAILED"
    READY = "READY"
    FROZEN = "FROZEN"
    BUSY = "BUSY"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    DEAD = "DEAD"


class SandboxEvent(enum.Enum):
    LAUNCH = "launch"                      # the container is being started: its runtime may call from now on
    RUNTIME_READY = "runtime_ready"        # first GET next: init is over
    INIT_ERROR = "init_error"              # runtime posted init/error
    ASSIGN = "assign"                      # the pool hands it an invocation
    INVOCATION_DONE = "invocation_done"    # runtime back in GET next after its result
    FREEZE = "freeze"
    THAW = "thaw"
    SHUTDOWN = "shutdown"
    EXITED = "exited"                      # container or runtime process gone


class InvocationState(enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    RESPONDED = "RESPONDED"
    DONE = "DONE"
    FAILED = "FAILED"


class InvocationEvent(enum.Enum):
    DELIVER = "deliver"          # runtime's GET next returned this event
    REDELIVER = "redeliver"      # GET next again before a result: same event (RAPID)
    RESULT = "result"            # POST response or error accepted
    RUNTIME_NEXT = "runtime_next"
    FAIL = "fail"


S, SE = SandboxState, SandboxEvent
_ALIVE = (S.STARTING, S.INITIALIZING, S.INIT_FAILED, S.READY, S.FROZEN, S.BUSY)

SANDBOX_TRANSITIONS: dict[SandboxState, dict[SandboxEvent, SandboxState]] = {
    S.STARTING: {SE.LAUNCH: S.INITIALIZING},
    S.INITIALIZING: {SE.RUNTIME_READY: S.READY, SE.INIT_ERROR: S.INIT_FAILED},
    S.INIT_FAILED: {},
    S.READY: {SE.ASSIGN: S.BUSY, SE.FREEZE: S.FROZEN},
    S.FROZEN: {SE.THAW: S.READY},
    S.BUSY: {SE.INVOCATION_DONE: S.READY},
    S.SHUTTING_DOWN: {},
    S.DEAD: {},
}
for _state in _ALIVE:
    SANDBOX_TRANSITIONS[_state][SE.SHUTDOWN] = S.SHUTTING_DOWN
for _state in (*_ALIVE, S.SHUTTING_DOWN):
    SANDBOX_TRANSITIONS[_state][SE.EXITED] = S.DEAD

I, IE = InvocationState, InvocationEvent
INVOCATION_TRANSITIONS: dict[InvocationState, dict[InvocationEvent, InvocationState]] = {
    I.PENDING: {IE.DELIVER: I.RUNNING, IE.FAIL: I.FAILED},
    I.RUNNING: {IE.REDELIVER: I.RUNNING, IE.RESULT: I.RESPONDED, IE.FAIL: I.FAILED},
    I.RESPONDED: {IE.RUNTIME_NEXT: I.DONE, IE.FAIL: I.FAILED},
    I.DONE: {},
    I.FAILED: {},
}

# The names RAPID prints in its 403 messages (spec §1.11), for runtimes that log them.
RAPID_NAMES = {
    I.PENDING: "Ready", I.RUNNING: "Running", I.RESPONDED: "RuntimeResponseSentState",
    I.DONE: "Ready", I.FAILED: "Ready",
    S.INIT_FAILED: "InitError", S.INITIALIZING: "Started", S.READY: "Ready", S.BUSY: "Running",
}


class StemState(enum.Enum):
    STARTING = "STARTING"
    ASKED_EARLY = "ASKED_EARLY"       # its program asked before the host finished starting it
    STARTED = "STARTED"               # started and listening; its program has not asked yet
    READY = "READY"                   # both: a cold start may take it
    TAKEN = "TAKEN"                   # specialized into a sandbox: no longer the stem cells' to keep
    DEAD = "DEAD"
    DISCARDED = "DISCARDED"


class StemEvent(enum.Enum):
    STARTED = "started"               # container started, its loopback listener set up (or given up)
    ASKED = "asked"                   # its program's GET /runtime-host/stem arrived
    TAKE = "take"
    EXITED = "exited"
    DISCARD = "discard"


T, TE = StemState, StemEvent
STEM_TRANSITIONS: dict[StemState, dict[StemEvent, StemState]] = {
    T.STARTING: {TE.STARTED: T.STARTED, TE.ASKED: T.ASKED_EARLY},
    T.ASKED_EARLY: {TE.STARTED: T.READY},
    T.STARTED: {TE.ASKED: T.READY},
    T.READY: {TE.TAKE: T.TAKEN},
    T.TAKEN: {},
    T.DEAD: {TE.DISCARD: T.DISCARDED},
    T.DISCARDED: {},
}
for _state in (T.STARTING, T.ASKED_EARLY, T.STARTED, T.READY):
    STEM_TRANSITIONS[_state][TE.EXITED] = T.DEAD
    STEM_TRANSITIONS[_state][TE.DISCARD] = T.DISCARDED


class IllegalTransition(Exception):
    def __init__(self, machine: str, state: enum.Enum, event: enum.Enum):
        super().__init__(f"{machine} in state {state.value} cannot take event {event.value}")
        self.machine, self.state, self.event = machine, state, event


class _Life:
    """One machine's state; `apply` is the only way to change it. Each
    machine names itself, its table and its first state."""

    __slots__ = ("state",)
    MACHINE: str
    TABLE: dict
    FIRST: enum.Enum

    def __init__(self) -> None:
        self.state = self.FIRST

    def can(self, event: enum.Enum) -> bool:
        return event in self.TABLE[self.state]

    def apply(self, event: enum.Enum):
        try:
            self.state = self.TABLE[self.state][event]
        except KeyError:
            raise IllegalTransition(self.MACHINE, self.state, event) from None
        return self.state


class SandboxLife(_Life):
    __slots__ = ()
    MACHINE, TABLE, FIRST = "sandbox", SANDBOX_TRANSITIONS, SandboxState.STARTING


class InvocationLife(_Life):
    __slots__ = ()
    MACHINE, TABLE, FIRST = "invocation", INVOCATION_TRANSITIONS, InvocationState.PENDING


class StemLife(_Life):
    __slots__ = ()
    MACHINE, TABLE, FIRST = "stem cell", STEM_TRANSITIONS, StemState.STARTING
