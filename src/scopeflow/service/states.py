"""The job lifecycle: states and the one table of allowed transitions.

::

    created ─► uploading ─► ready ─► queued ─► running ─► succeeded
       │           │          │        │          ├─────► failed
       └───────────┴──────────┴────────┴──────────┴─────► cancelled
    failed | cancelled | succeeded ─► queued   (restart: the engine skips finished units)

Every change of a job's state goes through :func:`check_transition` (the database helper
``scopeflow.service.db.set_state`` calls it); nothing else decides what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from scopeflow.core.errors import InvalidTransitionError

__all__ = [
    "ACTIVE",
    "BEFORE_START",
    "TERMINAL",
    "TRANSITIONS",
    "JobState",
    "allowed_transitions",
    "can_delete",
    "can_restart",
    "check_transition",
    "is_terminal",
]


class JobState(StrEnum):
    """State of a job of the service."""

    CREATED = "created"
    UPLOADING = "uploading"
    READY = "ready"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


_S = JobState
_RESTART = frozenset({_S.QUEUED})

TRANSITIONS: Mapping[JobState, frozenset[JobState]] = MappingProxyType(
    {
        _S.CREATED: frozenset({_S.UPLOADING, _S.READY, _S.CANCELLED}),
        _S.UPLOADING: frozenset({_S.READY, _S.CANCELLED}),
        _S.READY: frozenset({_S.QUEUED, _S.CANCELLED, _S.UPLOADING}),
        _S.QUEUED: frozenset({_S.RUNNING, _S.FAILED, _S.CANCELLED}),
        _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.CANCELLED}),
        _S.SUCCEEDED: _RESTART,
        _S.FAILED: _RESTART,
        _S.CANCELLED: _RESTART,
    }
)
"""Allowed transitions: ``TRANSITIONS[old]`` is the set of states a job in ``old`` may enter."""

TERMINAL = frozenset({_S.SUCCEEDED, _S.FAILED, _S.CANCELLED})
"""States that do not change any more (until a restart)."""
ACTIVE = frozenset({_S.QUEUED, _S.RUNNING})
"""States of a job handed to the worker (submitted, or about to be)."""
BEFORE_START = frozenset({_S.CREATED, _S.UPLOADING, _S.READY})
"""States in which files may be uploaded and the job started."""


def allowed_transitions(state: JobState | str) -> frozenset[JobState]:
    """The states a job in ``state`` may move to.

    Raises
    ------
    ValueError
        ``state`` is not a job state.
    """
    return TRANSITIONS[JobState(state)]


def check_transition(
    old: JobState | str, new: JobState | str, *, job_id: str | None = None
) -> None:
    """Raise unless a job may move from ``old`` to ``new``.

    Parameters
    ----------
    old, new
        The current and the requested state.
    job_id
        Named in the error message.

    Raises
    ------
    InvalidTransitionError
        The transition is not in :data:`TRANSITIONS` (staying in the same state is not a
        transition either).
    ValueError
        ``old`` or ``new`` is not a job state.
    """
    old_state, new_state = JobState(old), JobState(new)
    if new_state not in TRANSITIONS[old_state]:
        raise InvalidTransitionError(old_state, new_state, job_id=job_id)


def is_terminal(state: JobState | str) -> bool:
    """Whether ``state`` is final until a restart (succeeded, failed or cancelled)."""
    return JobState(state) in TERMINAL


def can_delete(state: JobState | str) -> bool:
    """Whether a job in ``state`` may be deleted (not while queued or running)."""
    return JobState(state) not in ACTIVE


def can_restart(state: JobState | str) -> bool:
    """Whether a job in ``state`` may be restarted (queued again)."""
    return JobState.QUEUED in TRANSITIONS[JobState(state)] and is_terminal(state)
