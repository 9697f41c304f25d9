"""The job state machine: one table of transitions, checked in one place."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scopeflow.core import InvalidTransitionError, ScopeflowError
from scopeflow.service.states import (
    TRANSITIONS,
    JobState,
    allowed_transitions,
    can_delete,
    can_restart,
    check_transition,
    is_terminal,
)

S = JobState

# the specification (issue 6), written out independently of the implementation's table
ALLOWED = {
    (S.CREATED, S.UPLOADING),
    (S.CREATED, S.READY),
    (S.CREATED, S.CANCELLED),
    (S.UPLOADING, S.READY),
    (S.UPLOADING, S.CREATED),  # the last upload discarded and no input file finished
    (S.UPLOADING, S.CANCELLED),
    (S.READY, S.QUEUED),
    (S.READY, S.CANCELLED),
    (S.READY, S.UPLOADING),
    (S.READY, S.CREATED),  # the last input file deleted
    (S.QUEUED, S.RUNNING),
    (S.QUEUED, S.FAILED),
    (S.QUEUED, S.CANCELLED),
    (S.RUNNING, S.SUCCEEDED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.CANCELLED),
    (S.FAILED, S.QUEUED),
    (S.CANCELLED, S.QUEUED),
    (S.SUCCEEDED, S.QUEUED),
}
ALL_PAIRS = list(itertools.product(JobState, JobState))


def test_states_and_values() -> None:
    assert [s.value for s in JobState] == [
        "created",
        "uploading",
        "ready",
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    ]
    assert JobState("running") is S.RUNNING


def test_table_is_the_specification() -> None:
    assert set(TRANSITIONS) == set(JobState)
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == ALLOWED


@pytest.mark.parametrize(("old", "new"), sorted(ALLOWED))
def test_allowed(old: JobState, new: JobState) -> None:
    check_transition(old, new)
    check_transition(old.value, new.value)  # plain strings (as stored) work too
    assert new in allowed_transitions(old)


@pytest.mark.parametrize(
    ("old", "new"), [(a, b) for a, b in ALL_PAIRS if (a, b) not in ALLOWED], ids=str
)
def test_refused(old: JobState, new: JobState) -> None:
    with pytest.raises(InvalidTransitionError) as info:
        check_transition(old, new, job_id="abc")
    err = info.value
    assert isinstance(err, ScopeflowError)
    assert isinstance(err, ValueError)
    assert (err.old, err.new, err.job_id) == (old.value, new.value, "abc")
    assert f"'{old}'" in str(err)
    assert f"'{new}'" in str(err)


@pytest.mark.parametrize(
    ("uploads", "files", "state"),
    [
        (False, False, S.CREATED),
        (False, True, S.READY),
        (True, False, S.UPLOADING),
        (True, True, S.UPLOADING),
    ],
)
def test_the_input_decides_the_state_before_the_start(
    uploads: bool, files: bool, state: JobState
) -> None:
    assert JobState.for_input(uploads=uploads, files=files) is state


@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=20))
def test_every_change_of_input_is_an_allowed_move(changes: list[tuple[bool, bool]]) -> None:
    """Uploads declared, finished, discarded, files deleted in any order: never a refused move."""
    state = S.CREATED
    for uploads, files in changes:
        new = JobState.for_input(uploads=uploads, files=files)
        if new is not state:
            check_transition(state, new)
            state = new


def test_unknown_state_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="nope"):
        check_transition("nope", S.READY)
    with pytest.raises(ValueError, match="nope"):
        allowed_transitions("nope")


@pytest.mark.parametrize("state", list(JobState))
def test_helpers(state: JobState) -> None:
    terminal = state in {S.SUCCEEDED, S.FAILED, S.CANCELLED}
    assert is_terminal(state) is terminal
    assert can_restart(state) is terminal
    assert can_delete(state) is (state not in {S.QUEUED, S.RUNNING})


def _reachable(start: JobState) -> set[JobState]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_every_state_reachable_and_every_job_can_end() -> None:
    assert _reachable(S.CREATED) == set(JobState)
    for state in JobState:
        assert _reachable(state) & {S.SUCCEEDED, S.FAILED, S.CANCELLED}
        # cancelling is possible from every state that is not final
        assert is_terminal(state) or S.CANCELLED in TRANSITIONS[state]


@given(st.lists(st.sampled_from(list(JobState)), max_size=30))
def test_random_walks_follow_the_table(moves: list[JobState]) -> None:
    state = S.CREATED
    for target in moves:
        if (state, target) in ALLOWED:
            check_transition(state, target)
            state = target
        else:
            with pytest.raises(InvalidTransitionError):
                check_transition(state, target)
    # a running or queued job is never deletable, whatever the path to it
    assert can_delete(state) is (state not in {S.QUEUED, S.RUNNING})
