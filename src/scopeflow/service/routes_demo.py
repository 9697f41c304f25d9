"""Route of a job's demo data: synthetic inputs instead of an upload (see service.demo_data).

``POST /jobs/{id}/demo-data`` writes the template's demo data into a new job's input folder
and makes the job ``ready``. Only for the job's owner (404 otherwise), only for a template with
a ``demo:`` entry (409), only while the job is ``created`` and holds no file (409); the data
count against the user's quota (413).
"""

from __future__ import annotations

import shutil
from typing import Any

from fastapi import APIRouter, HTTPException, status

from scopeflow.service.db import set_state
from scopeflow.service.demo_data import make_demo_data, move_demo_data
from scopeflow.service.deps import CurrentUser, DbSession, Svc, owned_job
from scopeflow.service.files import (
    QuotaExceededError,
    UploadStore,
    quota_lock,
    regular_files,
    used_bytes,
)
from scopeflow.service.states import JobState

__all__ = ["router"]

router = APIRouter()


@router.post("/jobs/{job_id}/demo-data")
def write_demo_data(job_id: str, user: CurrentUser, session: DbSession, svc: Svc) -> dict[str, Any]:
    """Write the template's demo data into the job's inputs; the job becomes ``ready``."""
    job = owned_job(session, user, job_id)
    template = svc.templates.get(job.template)
    if template.demo is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"template {job.template!r} has no demo data")
    if job.state is not JobState.CREATED:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"demo data go into a new job; this one is {job.state}"
        )
    files = svc.files(job)
    store = UploadStore(files.input_dir, state_dir=files.uploads_dir)
    if store.status() or next(iter(regular_files(files.input_dir)), None) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, "the job has input files already")
    config = template.merged_config(job.params)
    scratch = files.root / ".demo"
    session.close()  # no database connection is held while the data are made (seconds)
    try:
        make_demo_data(template.demo, config, scratch)
    except FileExistsError:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "demo data of this job are being written"
        ) from None
    size = sum(st.st_size for _, st in regular_files(scratch, skip_temp=False))
    user_root = svc.settings.jobs_dir / user.name
    with quota_lock(user_root):
        try:
            job = owned_job(session, user, job_id)  # not deleted meanwhile
            used = used_bytes(user_root)  # the scratch folder included
            quota = svc.settings.quota_bytes
            if job.state is not JobState.CREATED:
                raise HTTPException(status.HTTP_409_CONFLICT, f"the job is {job.state} now")
            if used > quota:
                raise QuotaExceededError("demo data", size, used - size, quota)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        moved = move_demo_data(scratch, files.input_dir)
    set_state(session, job, JobState.READY)
    session.commit()
    return {"files": len(moved), "bytes": size, "state": job.state}
