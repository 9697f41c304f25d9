"""Routes of templates and jobs: create, list, show, start, cancel, restart, delete, progress, logs.

States change only through :func:`scopeflow.service.db.set_state`; the routes never talk to a
scheduler (the worker does): a cancel of a submitted job is asked for with the job's cancel
marker.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field
from sqlalchemy import delete, select

from scopeflow.core import runlayout as layout
from scopeflow.service.db import Job, iso, set_state
from scopeflow.service.deps import CurrentUser, DbSession, Service, Svc, input_locked, owned_job
from scopeflow.service.progress import read_log, run_progress
from scopeflow.service.states import BEFORE_START, JobState, can_delete, can_restart

__all__ = ["job_json", "router"]

router = APIRouter()
#: A step or unit name: letters, digits, ``_ . -``, not only dots.
_NAME = r"^[A-Za-z0-9_.-]*[A-Za-z0-9_-][A-Za-z0-9_.-]*$"


class JobCreate(BaseModel):
    """Body of ``POST /jobs``."""

    template: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)


def job_json(job: Job) -> dict[str, Any]:
    """The job as the API shows it."""
    return {
        "id": job.id,
        "name": job.name,
        "template": job.template,
        "state": str(job.state),
        "params": job.params,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "attempts": job.attempts,
        "scheduler": job.scheduler,
        "exit_code": job.exit_code,
        "error": job.error,
    }


@router.get("/templates")
def list_templates(user: CurrentUser, session: DbSession, svc: Svc) -> list[dict[str, Any]]:
    """Every template with the JSON Schema of its user parameters."""
    return [
        {
            "name": t.name,
            "description": t.description,
            "pipeline": t.pipeline,
            "resources": t.resources.model_dump(mode="json"),
            "schema": t.user_schema(),
            "demo": None
            if t.demo is None
            else {"dataset": t.demo.dataset, "description": t.demo.description},
        }
        for t in svc.templates
    ]


@router.post("/jobs", status_code=status.HTTP_201_CREATED)
def create_job(body: JobCreate, user: CurrentUser, session: DbSession, svc: Svc) -> dict[str, Any]:
    """A new job in state ``created`` (parameters checked against the template: 422)."""
    template = svc.templates.get(body.template)  # UnknownNameError -> 422
    params = template.check_params(body.params)  # ConfigError -> 422 with the field paths
    job = Job(
        owner_id=user.id,
        name=body.name,
        template=template.name,
        params=params,
        scheduler=svc.settings.scheduler,
    )
    session.add(job)
    session.flush()  # the id names the job's folder
    job.owner = user
    svc.files(job).create()
    session.commit()
    return job_json(job)


@router.get("/jobs")
def list_jobs(
    user: CurrentUser,
    session: DbSession,
    state: JobState | None = None,
    template: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = Query(200, ge=1, le=1000),
) -> list[dict[str, Any]]:
    """The caller's jobs, newest first, filtered by state, template and creation date.

    Dates without a time zone are taken as UTC.
    """
    since, until = (
        None if t is None else t if t.tzinfo else t.replace(tzinfo=UTC) for t in (since, until)
    )
    q = select(Job).where(Job.owner_id == user.id)
    if state is not None:
        q = q.where(Job.state == state)
    if template is not None:
        q = q.where(Job.template == template)
    if since is not None:
        q = q.where(Job.created_at >= since)
    if until is not None:
        q = q.where(Job.created_at <= until)
    jobs = session.scalars(q.order_by(Job.created_at.desc(), Job.id).limit(limit))
    return [job_json(j) for j in jobs]


@router.get("/jobs/{job_id}")
def get_job(job_id: str, user: CurrentUser, session: DbSession) -> dict[str, Any]:
    """One job."""
    return job_json(owned_job(session, user, job_id))


@router.delete("/jobs/{job_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_job(job_id: str, user: CurrentUser, session: DbSession, svc: Svc) -> None:
    """Delete a job and its files (409 while it is queued or running)."""
    job = owned_job(session, user, job_id)
    if not can_delete(job.state) or job.claimed_by is not None:
        what = "the worker still holds it" if can_delete(job.state) else f"job is {job.state}"
        raise HTTPException(status.HTTP_409_CONFLICT, f"{what}: cancel it first or retry")
    files = svc.files(job)
    with contextlib.ExitStack() as stack:
        with contextlib.suppress(FileNotFoundError):  # a job whose folder is gone goes too
            stack.enter_context(files.input_lock())  # no upload writes into it meanwhile
        # compare-and-set: nobody may have started or claimed it since it was read
        gone = session.execute(
            delete(Job)
            .where(Job.id == job.id, Job.state == job.state, Job.claimed_by.is_(None))
            .execution_options(synchronize_session=False)
        )
        if getattr(gone, "rowcount", 0) != 1:
            session.rollback()
            raise HTTPException(status.HTTP_409_CONFLICT, "the job changed meanwhile: retry")
        session.commit()
        shutil.rmtree(files.root, ignore_errors=True)


def _check_runnable(svc: Service, job: Job) -> None:
    """No unfinished upload (409), and the full configuration builds (422)."""
    files = svc.files(job)
    pending = [u["path"] for u in files.upload_store().status()]
    if pending:
        raise HTTPException(status.HTTP_409_CONFLICT, f"unfinished uploads: {pending}")
    svc.templates.get(job.template).build_config(job.params, files.input_dir)  # 422


@router.post("/jobs/{job_id}/start")
def start_job(job_id: str, user: CurrentUser, session: DbSession, svc: Svc) -> dict[str, Any]:
    """Queue a job whose uploads are complete; its full configuration is checked first (422)."""
    job = owned_job(session, user, job_id)
    with input_locked(session, job, svc.files(job)):  # no upload or delete meanwhile
        if job.state not in BEFORE_START:
            raise HTTPException(status.HTTP_409_CONFLICT, f"job is {job.state}, not startable")
        _check_runnable(svc, job)
        if job.state is not JobState.READY:
            set_state(session, job, JobState.READY)
        set_state(session, job, JobState.QUEUED)
        session.commit()
    return job_json(job)


@router.post("/jobs/{job_id}/restart")
def restart_job(job_id: str, user: CurrentUser, session: DbSession, svc: Svc) -> dict[str, Any]:
    """Queue a finished job again: the engine reruns only its unfinished units."""
    job = owned_job(session, user, job_id)
    if not can_restart(job.state):
        raise HTTPException(status.HTTP_409_CONFLICT, f"job is {job.state}, not restartable")
    _check_runnable(svc, job)  # e.g. cancelled before it ever started: the start checks apply
    svc.files(job).cancel_marker.unlink(missing_ok=True)
    set_state(session, job, JobState.QUEUED, claimed_by=None, claimed_at=None)
    session.commit()
    return job_json(job)


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: str, user: CurrentUser, session: DbSession, svc: Svc) -> dict[str, Any]:
    """Cancel: at once if never submitted, else through the worker (state follows)."""
    job = owned_job(session, user, job_id)
    if job.state in BEFORE_START or (job.state is JobState.QUEUED and not job.scheduler_id):
        if job.state is JobState.QUEUED:  # the worker may be submitting it right now
            svc.files(job).request_cancel()
        set_state(session, job, JobState.CANCELLED)
    elif job.state in (JobState.QUEUED, JobState.RUNNING):
        svc.files(job).request_cancel()
    else:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job is {job.state} already")
    session.commit()
    return job_json(job)


@router.get("/jobs/{job_id}/progress")
def job_progress(job_id: str, user: CurrentUser, session: DbSession, svc: Svc) -> dict[str, Any]:
    """Per step and unit, the states of the run (from its events), with counts and timings."""
    job = owned_job(session, user, job_id)
    files = svc.files(job)
    return {"id": job.id, "state": str(job.state), **run_progress(files.run_dir)}


@router.get("/jobs/{job_id}/logs")
def job_logs(
    job_id: str,
    user: CurrentUser,
    session: DbSession,
    svc: Svc,
    step: str | None = Query(None, max_length=100, pattern=_NAME),
    unit: str | None = Query(None, max_length=200, pattern=_NAME),
    stream: Literal["stdout", "stderr"] = "stderr",
    offset: int = Query(0, ge=0),
    limit: int = Query(1 << 20, ge=1, le=1 << 24),
) -> dict[str, Any]:
    """Log text from a byte offset: a unit's log (``step`` + ``unit``), else the scheduler's."""
    job = owned_job(session, user, job_id)
    files = svc.files(job)
    if step and unit:
        path = layout.unit_log(files.run_dir, step, unit)
    elif step or unit:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "give both step and unit")
    else:
        path = files.log(stream)
    try:
        return read_log(path, offset, limit)
    except OSError:  # a folder where a log was expected, …: there is no such log
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such log") from None


@router.get("/jobs/{job_id}/summary")
def job_summary(job_id: str, user: CurrentUser, session: DbSession, svc: Svc) -> dict[str, Any]:
    """The run's ``summary.json`` (404 before the run has written one)."""
    job = owned_job(session, user, job_id)
    path = svc.files(job).run_dir / layout.SUMMARY
    try:
        summary: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # not written yet (or being written)
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no summary yet") from None
    return summary
