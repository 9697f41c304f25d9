"""Route of a job's demo data: synthetic inputs instead of an upload (see service.demo_data).

``POST /jobs/{id}/demo-data`` writes the template's demo data into a new job's input folder
and makes the job ``ready``. Only for the job's owner (404 otherwise), only for a template with
a ``demo:`` entry (409), only while the job is ``created`` and holds no file and no upload
(409, checked again under the user's quota lock before the data move in); the data count
against the user's quota (413; nothing is made when it is full already). One request per job
makes data at a time (a lock that dies with its process: a request after a crash starts over).
"""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from typing import Any

from fastapi import APIRouter, HTTPException, status

from scopeflow.service.db import set_state
from scopeflow.service.demo_data import make_demo_data, move_demo_data
from scopeflow.service.deps import CurrentUser, DbSession, Svc, input_locked, owned_job
from scopeflow.service.files import (
    QuotaExceededError,
    file_lock,
    quota_lock,
)
from scopeflow.service.states import JobState
from scopeflow.service.uploads import UploadStore

__all__ = ["router"]

router = APIRouter()


@router.post("/jobs/{job_id}/demo-data")
def write_demo_data(job_id: str, user: CurrentUser, session: DbSession, svc: Svc) -> dict[str, Any]:
    """Write the template's demo data into the job's inputs; the job becomes ``ready``."""
    job = owned_job(session, user, job_id)
    template = svc.templates.get(job.template)
    if template.demo is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"template {job.template!r} has no demo data")
    files = svc.files(job)
    store = files.upload_store()
    _check_new(job.state, store)
    config = template.merged_config(job.params)
    user_root = svc.settings.jobs_dir / user.name
    quota = svc.settings.quota_bytes
    used = svc.used_bytes(session, user)
    if used >= quota:  # full already: make nothing
        raise QuotaExceededError("demo data", 0, used, quota)
    session.close()  # no database connection is held while the data are made (seconds)
    with file_lock(files.root / ".demo.lock", wait=False) as mine:
        if not mine:
            raise HTTPException(status.HTTP_409_CONFLICT, "demo data of this job are being written")
        scratch = files.root / ".demo"
        made = make_demo_data(template.demo, config, scratch)
        size = sum(n for _, n in made)
        with ExitStack() as stack:
            try:
                job = owned_job(session, user, job_id)  # not deleted meanwhile
                stack.enter_context(input_locked(session, job, files))
                stack.enter_context(quota_lock(user_root))
                _check_new(job.state, store)  # no upload began meanwhile
                used = svc.used_bytes(session, user)  # the scratch folder included
                if used > quota:
                    raise QuotaExceededError("demo data", size, used - size, quota)
            except BaseException:
                shutil.rmtree(scratch, ignore_errors=True)
                raise
            move_demo_data(scratch, [name for name, _ in made], files.input_dir)
            set_state(session, job, JobState.READY)
            session.commit()
    return {"files": len(made), "bytes": size, "state": job.state}


def _check_new(state: JobState, store: UploadStore) -> None:
    """409 unless the job is ``created`` with no input file and no upload."""
    if state is not JobState.CREATED:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"demo data go into a new job; this one is {state}"
        )
    if store.input_state() is not JobState.CREATED:
        raise HTTPException(status.HTTP_409_CONFLICT, "the job has input files already")
