"""The job lifecycle: states and the one table of allowed transitions.

::

    created ─► uploading ─► ready ─► queued ─► running ─► succeeded
       │           │          │        │          ├─────► failed
       └───────────┴──────────┴────────┴──────────┴─────► cancelled
    failed | cancelled | succeeded ─► queued   (restart: the engine skips finished units)

    before the start, as the input changes (see JobState.for_input):
    created ─► ready       (start of a job with nothing uploaded)
    ready ─► uploading     (another file declared)
    uploading ─► created   (the last upload discarded, and no input file finished)
    ready ─► created       (the last input file deleted)

Before a job starts, its input decides between the first three states
(:meth:`JobState.for_input`): ``uploading`` while an upload is unfinished, else ``ready`` with
at least one finished input file, else ``created``.

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

    @classmethod
    def for_input(cls, *, uploads: bool, files: bool) -> JobState:
        """The state a job that has not started is in, given its input.

        Parameters
        ----------
        uploads
            Whether an upload of the job is unfinished (declared, not finished or discarded).
        files
            Whether the job has at least one finished input file.

        Returns
        -------
        JobState
            ``uploading`` while an upload is unfinished, else ``ready`` with a finished input
            file, else ``created``. Every move between these three is in :data:`TRANSITIONS`.
        """
        if uploads:
            return cls.UPLOADING
        return cls.READY if files else cls.CREATED


_S = JobState
_RESTART = frozenset({_S.QUEUED})

TRANSITIONS: Mapping[JobState, frozenset[JobState]] = MappingProxyType(
    {
        _S.CREATED: frozenset({_S.UPLOADING, _S.READY, _S.CANCELLED}),
        _S.UPLOADING: frozenset({_S.READY, _S.CREATED, _S.CANCELLED}),
        _S.READY: frozenset({_S.QUEUED, _S.CANCELLED, _S.UPLOADING, _S.CREATED}),
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
