"""The worker's polling side: a scheduler's status becomes the job's state and record.

:func:`apply_status` moves a job the way its scheduler says (``pending`` and ``unknown``
change nothing; a job that ran passes through ``running``, so ``started_at`` is set), with the
exit code and the times of the wrapper's exit record. A failure's ``error`` text
(:func:`failure_reason`) is assembled from the adapter's status, the run's ``summary.json``
(failed units) and the end of the scheduler's ``stderr.log`` (only what this attempt wrote).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from scopeflow.core import runlayout as layout
from scopeflow.service._worker_submit import Submission, read_submission
from scopeflow.service.db import Job, set_state, utcnow
from scopeflow.service.jobfiles import JobFiles
from scopeflow.service.schedulers.base import SchedulerState, SchedulerStatus, read_exit_record
from scopeflow.service.states import JobState

__all__ = ["MAX_ERROR_CHARS", "apply_status", "exit_times", "failure_reason"]

MAX_ERROR_CHARS = 4000
"""Longest ``error`` text the worker stores."""

_STDERR_LINES = 15
_STDERR_CHARS = 2000
_FAILED_UNITS = 5
_FINAL = {
    SchedulerState.SUCCEEDED: JobState.SUCCEEDED,
    SchedulerState.FAILED: JobState.FAILED,
    SchedulerState.CANCELLED: JobState.CANCELLED,
}


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def exit_times(files: JobFiles) -> tuple[datetime | None, datetime | None]:
    """``(started, finished)`` of the command from the wrapper's exit record, when it has one."""
    record = read_exit_record(files.root)
    if record is None:
        return None, None
    return _parse_time(record.get("started")), _parse_time(record.get("finished"))


def _failed_units(files: JobFiles, since: float | None) -> str:
    """``N unit(s) failed: step[unit]: error; …`` from this attempt's ``summary.json``."""
    path = files.run_dir / layout.SUMMARY
    try:
        if since is not None and path.stat().st_mtime < since - 1.0:
            return ""  # left by an earlier attempt
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    failed = summary.get("failed") if isinstance(summary, dict) else None
    if not isinstance(failed, list) or not failed:
        return ""
    shown = []
    for item in failed[:_FAILED_UNITS]:
        if isinstance(item, dict):
            where = f"{item.get('step', '?')}[{item.get('unit', '?')}]"
            shown.append(f"{where}: {str(item.get('error', '')).strip()}")
    more = f"; and {len(failed) - _FAILED_UNITS} more" if len(failed) > _FAILED_UNITS else ""
    noun = "unit" if len(failed) == 1 else "units"
    return f"{len(failed)} {noun} failed: " + "; ".join(shown) + more


def _stderr_tail(files: JobFiles, offset: int) -> str:
    """The last lines the command wrote to ``stderr.log`` since ``offset``."""
    path = files.log("stderr")
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            start = max(offset if offset <= size else 0, size - 64 * 1024)
            fh.seek(start)
            data = fh.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", errors="replace").strip().splitlines()
    tail = "\n".join(lines[-_STDERR_LINES:])
    return tail[-_STDERR_CHARS:]


def failure_reason(
    status: SchedulerStatus, files: JobFiles, submission: Submission | None = None
) -> str:
    """A short text saying why a job failed (stored as the job's ``error``).

    Parameters
    ----------
    status
        The adapter's final status (its ``detail``, e.g. ``exit 1``).
    files
        The job's files.
    submission
        The attempt's submission record: only what this attempt wrote is reported.
    """
    since = submission.submitted if submission is not None else None
    offset = submission.stderr_offset if submission is not None else 0
    parts = [f"the job failed: {status.detail or status.state}"]
    units = _failed_units(files, since)
    if units:
        parts.append(units)
    tail = _stderr_tail(files, offset)
    if tail:
        parts.append(f"end of scheduler/stderr.log:\n{tail}")
    text = "\n".join(parts)
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    return text


def apply_status(
    session: Session,
    job: Job,
    files: JobFiles,
    status: SchedulerStatus,
) -> JobState | None:
    """Move ``job`` to the state its scheduler reports (flushed, not committed).

    ``pending`` and ``unknown`` change nothing (a failed query is never taken as completion).
    ``running`` moves a queued job to ``running``. A final status sets ``exit_code``,
    ``finished_at`` (from the exit record) and, for ``failed``, ``error``, and drops the job's
    claim so that a restarted job can be claimed again; a queued job that ran passes through
    ``running`` first.

    Parameters
    ----------
    session
        The session of ``job``.
    job
        A ``queued`` or ``running`` job.
    files
        Its files.
    status
        What the scheduler says.

    Returns
    -------
    JobState or None
        The state entered last, or None when nothing changed.

    Raises
    ------
    InvalidTransitionError
        The job changed meanwhile (e.g. the API cancelled it).
    """
    if status.state in (SchedulerState.PENDING, SchedulerState.UNKNOWN):
        return None
    if status.state is SchedulerState.RUNNING and job.state is JobState.RUNNING:
        return None  # the poll of a job that runs: no file to read
    started, finished = exit_times(files)
    target = _FINAL.get(status.state)
    entered: JobState | None = None
    if job.state is JobState.QUEUED and (
        status.state is SchedulerState.RUNNING
        or started is not None
        or target is JobState.SUCCEEDED
    ):
        entered = set_state(session, job, JobState.RUNNING, started_at=started or utcnow()).state
    if target is None:
        return entered
    fields: dict[str, Any] = {"exit_code": status.exit_code, "claimed_by": None, "claimed_at": None}
    if finished is not None:
        fields["finished_at"] = finished
    if target is JobState.FAILED:
        fields["error"] = failure_reason(status, files, read_submission(files, job))
    return set_state(session, job, target, **fields).state
