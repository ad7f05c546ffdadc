"""A stem cell's life as core/states.py's docstring tells it. The expected
table is written out here, not read from the module, so a change to either
fails a test."""
from __future__ import annotations

import itertools

import pytest

from runtime_host.core.states import IllegalTransition, StemEvent as E, StemLife, StemState as T

WAITING = [T.STARTING, T.ASKED_EARLY, T.STARTED, T.READY]

STEM_MOVES = {
    (T.STARTING, E.STARTED): T.STARTED,
    (T.STARTING, E.ASKED): T.ASKED_EARLY,
    (T.ASKED_EARLY, E.STARTED): T.READY,
    (T.STARTED, E.ASKED): T.READY,
    (T.READY, E.TAKE): T.TAKEN,
    (T.DEAD, E.DISCARD): T.DISCARDED,
    **{(state, E.EXITED): T.DEAD for state in WAITING},
    **{(state, E.DISCARD): T.DISCARDED for state in WAITING},
}

STEM_PATH = {
    T.STARTING: [],
    T.ASKED_EARLY: [E.ASKED],
    T.STARTED: [E.STARTED],
    T.READY: [E.STARTED, E.ASKED],
    T.TAKEN: [E.STARTED, E.ASKED, E.TAKE],
    T.DEAD: [E.EXITED],
    T.DISCARDED: [E.DISCARD],
}


def stem_in(state: T) -> StemLife:
    life = StemLife()
    for event in STEM_PATH[state]:
        life.apply(event)
    assert life.state is state
    return life


def name(param) -> str:
    return getattr(param, "name", str(param))


def test_a_new_stem_is_starting():
    assert StemLife().state is T.STARTING


def test_ready_needs_both_the_start_and_the_ask_in_either_order():
    assert stem_in(T.STARTED).apply(E.ASKED) is T.READY
    assert stem_in(T.ASKED_EARLY).apply(E.STARTED) is T.READY


@pytest.mark.parametrize("state, event", list(STEM_MOVES), ids=name)
def test_legal_stem_event_moves_to_the_state_the_table_says(state, event):
    life = stem_in(state)
    assert life.apply(event) is STEM_MOVES[state, event]


@pytest.mark.parametrize("state, event", [p for p in itertools.product(T, E) if p not in STEM_MOVES], ids=name)
def test_illegal_stem_event_is_refused_and_leaves_the_state_unchanged(state, event):
    life = stem_in(state)
    with pytest.raises(IllegalTransition) as exc_info:
        life.apply(event)
    assert str(exc_info.value) == f"stem cell in state {state.value} cannot take event {event.value}"
    assert life.state is state


@pytest.mark.parametrize("state, event", list(itertools.product(T, E)), ids=name)
def test_stem_can_answers_exactly_what_apply_allows(state, event):
    assert stem_in(state).can(event) == ((state, event) in STEM_MOVES)
