"""The sandbox's and the invocation's lives as the state module's docstring
(and spec §1.11) tell them. The expected tables are written out here, not
read from runtime_host.core.states, so a change to either table fails a test."""
from __future__ import annotations

import itertools

import pytest

from runtime_host.core.states import (IllegalTransition, InvocationEvent as IE, InvocationLife,
                                 InvocationState as I, SandboxEvent as SE, SandboxLife,
                                 SandboxState as S)

ALIVE = [S.STARTING, S.INITIALIZING, S.INIT_FAILED, S.READY, S.FROZEN, S.BUSY]

SANDBOX_MOVES = {
    (S.STARTING, SE.LAUNCH): S.INITIALIZING,
    (S.INITIALIZING, SE.RUNTIME_READY): S.READY,
    (S.INITIALIZING, SE.INIT_ERROR): S.INIT_FAILED,
    (S.READY, SE.ASSIGN): S.BUSY,
    (S.READY, SE.FREEZE): S.FROZEN,
    (S.FROZEN, SE.THAW): S.READY,
    (S.BUSY, SE.INVOCATION_DONE): S.READY,
    **{(state, SE.SHUTDOWN): S.SHUTTING_DOWN for state in ALIVE},
    **{(state, SE.EXITED): S.DEAD for state in [*ALIVE, S.SHUTTING_DOWN]},
}

INVOCATION_MOVES = {
    (I.PENDING, IE.DELIVER): I.RUNNING,
    (I.PENDING, IE.FAIL): I.FAILED,
    (I.RUNNING, IE.REDELIVER): I.RUNNING,
    (I.RUNNING, IE.RESULT): I.RESPONDED,
    (I.RUNNING, IE.FAIL): I.FAILED,
    (I.RESPONDED, IE.RUNTIME_NEXT): I.DONE,
    (I.RESPONDED, IE.FAIL): I.FAILED,
}

# How a new sandbox / invocation reaches each state, through legal events only.
SANDBOX_PATH = {
    S.STARTING: [],
    S.INITIALIZING: [SE.LAUNCH],
    S.INIT_FAILED: [SE.LAUNCH, SE.INIT_ERROR],
    S.READY: [SE.LAUNCH, SE.RUNTIME_READY],
    S.FROZEN: [SE.LAUNCH, SE.RUNTIME_READY, SE.FREEZE],
    S.BUSY: [SE.LAUNCH, SE.RUNTIME_READY, SE.ASSIGN],
    S.SHUTTING_DOWN: [SE.SHUTDOWN],
    S.DEAD: [SE.EXITED],
}
INVOCATION_PATH = {
    I.PENDING: [],
    I.RUNNING: [IE.DELIVER],
    I.RESPONDED: [IE.DELIVER, IE.RESULT],
    I.DONE: [IE.DELIVER, IE.RESULT, IE.RUNTIME_NEXT],
    I.FAILED: [IE.FAIL],
}


def sandbox_in(state: S) -> SandboxLife:
    life = SandboxLife()
    for event in SANDBOX_PATH[state]:
        life.apply(event)
    assert life.state is state
    return life


def invocation_in(state: I) -> InvocationLife:
    life = InvocationLife()
    for event in INVOCATION_PATH[state]:
        life.apply(event)
    assert life.state is state
    return life


def name(param) -> str:
    return getattr(param, "name", str(param))


SANDBOX_ILLEGAL = [pair for pair in itertools.product(S, SE) if pair not in SANDBOX_MOVES]
INVOCATION_ILLEGAL = [pair for pair in itertools.product(I, IE) if pair not in INVOCATION_MOVES]


def test_a_new_sandbox_is_starting():
    assert SandboxLife().state is S.STARTING


def test_a_new_invocation_is_pending():
    assert InvocationLife().state is I.PENDING


@pytest.mark.parametrize("state, event", list(SANDBOX_MOVES), ids=name)
def test_legal_sandbox_event_moves_to_the_state_the_table_says(state, event):
    life = sandbox_in(state)
    assert life.apply(event) is SANDBOX_MOVES[state, event]
    assert life.state is SANDBOX_MOVES[state, event]


@pytest.mark.parametrize("state, event", list(INVOCATION_MOVES), ids=name)
def test_legal_invocation_event_moves_to_the_state_the_table_says(state, event):
    life = invocation_in(state)
    assert life.apply(event) is INVOCATION_MOVES[state, event]
    assert life.state is INVOCATION_MOVES[state, event]


@pytest.mark.parametrize("state, event", SANDBOX_ILLEGAL, ids=name)
def test_illegal_sandbox_event_is_refused_naming_machine_state_and_event(state, event):
    life = sandbox_in(state)
    with pytest.raises(IllegalTransition) as exc_info:
        life.apply(event)
    assert str(exc_info.value) == f"sandbox in state {state.value} cannot take event {event.value}"
    assert (exc_info.value.machine, exc_info.value.state, exc_info.value.event) == ("sandbox", state, event)


@pytest.mark.parametrize("state, event", SANDBOX_ILLEGAL, ids=name)
def test_illegal_sandbox_event_leaves_the_state_unchanged(state, event):
    life = sandbox_in(state)
    with pytest.raises(IllegalTransition):
        life.apply(event)
    assert life.state is state


@pytest.mark.parametrize("state, event", INVOCATION_ILLEGAL, ids=name)
def test_illegal_invocation_event_is_refused_naming_machine_state_and_event(state, event):
    life = invocation_in(state)
    with pytest.raises(IllegalTransition) as exc_info:
        life.apply(event)
    assert str(exc_info.value) == f"invocation in state {state.value} cannot take event {event.value}"
    assert (exc_info.value.machine, exc_info.value.state, exc_info.value.event) == ("invocation", state, event)


@pytest.mark.parametrize("state, event", INVOCATION_ILLEGAL, ids=name)
def test_illegal_invocation_event_leaves_the_state_unchanged(state, event):
    life = invocation_in(state)
    with pytest.raises(IllegalTransition):
        life.apply(event)
    assert life.state is state


@pytest.mark.parametrize("state, event", list(itertools.product(S, SE)), ids=name)
def test_sandbox_can_answers_exactly_what_apply_allows(state, event):
    assert sandbox_in(state).can(event) == ((state, event) in SANDBOX_MOVES)


@pytest.mark.parametrize("state, event", list(itertools.product(I, IE)), ids=name)
def test_invocation_can_answers_exactly_what_apply_allows(state, event):
    assert invocation_in(state).can(event) == ((state, event) in INVOCATION_MOVES)


def test_dead_sandbox_takes_no_event():
    assert [event for event in SE if sandbox_in(S.DEAD).can(event)] == []


def test_shutting_down_sandbox_can_only_die():
    assert [event for event in SE if sandbox_in(S.SHUTTING_DOWN).can(event)] == [SE.EXITED]


def test_init_failed_sandbox_can_only_be_shut_down_or_die():
    assert {event for event in SE if sandbox_in(S.INIT_FAILED).can(event)} == {SE.SHUTDOWN, SE.EXITED}


@pytest.mark.parametrize("state", [I.DONE, I.FAILED], ids=name)
def test_finished_invocation_takes_no_event(state):
    assert [event for event in IE if invocation_in(state).can(event)] == []


@pytest.mark.parametrize("state", ALIVE, ids=name)
def test_every_alive_sandbox_can_be_shut_down(state):
    assert sandbox_in(state).apply(SE.SHUTDOWN) is S.SHUTTING_DOWN


@pytest.mark.parametrize("state", ALIVE, ids=name)
def test_every_alive_sandbox_can_exit(state):
    assert sandbox_in(state).apply(SE.EXITED) is S.DEAD


def test_a_sandbox_serves_invocations_in_a_loop():
    life = sandbox_in(S.READY)
    for _ in range(3):
        life.apply(SE.ASSIGN)
        life.apply(SE.INVOCATION_DONE)
    assert life.state is S.READY


def test_a_runtime_asking_again_before_its_result_keeps_the_invocation_running():
    life = invocation_in(I.RUNNING)
    life.apply(IE.REDELIVER)
    life.apply(IE.REDELIVER)
    assert life.apply(IE.RESULT) is I.RESPONDED
