"""Routes of a job's files: resumable uploads into its input folder, results out of its run.

Upload protocol (see docs/service-templates-files.md): ``POST /jobs/{id}/files`` declares a file
(path, size, SHA-256) and answers how many bytes the server already holds; ``PUT
/jobs/{id}/files/{path}?offset=N`` appends a chunk at that offset (409 with the expected offset
otherwise); ``GET /jobs/{id}/files/{path}`` tells the offset to resume from; ``POST
/jobs/{id}/files/{path}/finish`` verifies size and digest (422 and the bytes are discarded on a
mismatch); ``DELETE /jobs/{id}/files/{path}`` discards an unfinished upload (a cancel), else
deletes a finished input file, before the job starts. Names
go through :func:`scopeflow.service.files.safe_relpath` (400 on ``..``, absolute paths,
symlinks …).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from scopeflow.core.errors import InvalidTransitionError
from scopeflow.service.db import Job, User, set_state
from scopeflow.service.deps import CurrentUser, DbSession, Service, Svc, input_locked, owned_job
from scopeflow.service.files import (
    quota_lock,
    regular_files,
    safe_relpath,
)
from scopeflow.service.jobfiles import JobFiles
from scopeflow.service.results import result_file_response, results_zip_response
from scopeflow.service.states import BEFORE_START, JobState
from scopeflow.service.transfers import list_results
from scopeflow.service.uploads import UploadStore

__all__ = ["router"]

router = APIRouter()
MAX_CHUNK = 64 * 2**20
#: Chunk bodies buffered at once (the others wait): bounds the memory uploads can take.
MAX_CONCURRENT_CHUNKS = 8
#: Seconds a chunk's body may take to arrive.
BODY_TIMEOUT_S = 300.0


def _chunk_slots(request: Request) -> asyncio.Semaphore:
    """The app's semaphore of chunk bodies (made on first use, on the app's event loop)."""
    state = request.app.state
    if getattr(state, "chunk_slots", None) is None:
        state.chunk_slots = asyncio.Semaphore(MAX_CONCURRENT_CHUNKS)
    slots: asyncio.Semaphore = state.chunk_slots
    return slots


class FileDeclaration(BaseModel):
    """Body of ``POST /jobs/{id}/files``."""

    path: str = Field(min_length=1, max_length=4096)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")


@contextmanager
def _changing_input(
    session: Session, user: User, job_id: str, svc: Service, what: str = "no uploads now"
) -> Iterator[tuple[Job, JobFiles]]:
    """The caller's job and its files, under its input lock, if its input may still change.

    The state is checked under the lock (:func:`~scopeflow.service.deps.input_locked`): a
    start that came first makes this a 409.
    """
    job = owned_job(session, user, job_id)
    files = svc.files(job)
    with input_locked(session, job, files):
        if job.state not in BEFORE_START:
            raise HTTPException(status.HTTP_409_CONFLICT, f"job is {job.state}: {what}")
        yield job, files


@router.post("/jobs/{job_id}/files")
def declare_file(
    job_id: str, body: FileDeclaration, user: CurrentUser, session: DbSession, svc: Svc
) -> dict[str, Any]:
    """Declare (or resume) an upload; answers the bytes already held."""
    user_root = svc.settings.jobs_dir / user.name
    with _changing_input(session, user, job_id, svc) as (job, files):
        rel = str(safe_relpath(body.path))
        with quota_lock(user_root):  # the check and the reservation are one step
            offset = files.upload_store().begin(
                rel,
                body.size,
                body.sha256.lower(),
                quota=svc.settings.quota_bytes,
                used=lambda: svc.used_bytes(session, user),  # only for a new upload
                overwrite=True,
            )
        _move(session, job, JobState.UPLOADING)
    return {"path": rel, "offset": offset, "size": body.size}


def _move(
    session: Session, job: Job, new: JobState, *, only_from: frozenset[JobState] | None = None
) -> None:
    """Move the job to ``new`` unless it is there already (or, given ``only_from``, elsewhere).

    A concurrent change that got there first (two uploads finishing at once, the job started
    meanwhile) is not an error.
    """
    session.refresh(job)
    if job.state is new or (only_from is not None and job.state not in only_from):
        return
    try:
        set_state(session, job, new)
        session.commit()
    except InvalidTransitionError:
        session.rollback()
        session.refresh(job)
        if job.state is not new and job.state not in BEFORE_START:
            raise


@router.get("/jobs/{job_id}/files")
def list_files(job_id: str, user: CurrentUser, session: DbSession, svc: Svc) -> dict[str, Any]:
    """Finished input files and unfinished uploads."""
    job = owned_job(session, user, job_id)
    files = svc.files(job)
    done = sorted(
        (
            {"path": p.relative_to(files.input_dir).as_posix(), "size": st.st_size}
            for p, st in regular_files(files.input_dir, skip_temp=False)  # all uploaded
        ),
        key=lambda f: str(f["path"]),
    )
    return {"files": done, "uploads": svc.files(job).upload_store().status()}


@router.get("/jobs/{job_id}/files/{path:path}")
def file_offset(
    job_id: str, path: str, user: CurrentUser, session: DbSession, svc: Svc
) -> dict[str, Any]:
    """How many bytes of an upload the server holds (resume from there)."""
    job = owned_job(session, user, job_id)
    rel = str(safe_relpath(path))
    return {"path": rel, "offset": svc.files(job).upload_store().offset(rel)}


@router.put("/jobs/{job_id}/files/{path:path}")
async def upload_chunk(
    job_id: str,
    path: str,
    request: Request,
    user: CurrentUser,
    session: DbSession,
    svc: Svc,
    offset: int = Query(ge=0),
) -> dict[str, Any]:
    """Append the request body at ``offset`` (409 with the expected offset otherwise).

    The database is only used for the owner check, in the thread pool, and its connection is
    given back before the body is read: a slow or stalled client holds no connection. At most
    :data:`MAX_CONCURRENT_CHUNKS` bodies are buffered at once, each read within
    :data:`BODY_TIMEOUT_S`.
    """

    def check() -> UploadStore:
        job = owned_job(session, user, job_id)
        if job.state not in BEFORE_START:  # (a declared upload is needed anyway: see start)
            raise HTTPException(status.HTTP_409_CONFLICT, f"job is {job.state}: no uploads now")
        store = svc.files(job).upload_store()
        session.close()
        return store

    store = await run_in_threadpool(check)
    rel = str(safe_relpath(path))
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "bad Content-Length") from None
    if declared > MAX_CHUNK:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"chunks up to {MAX_CHUNK}")
    async with _chunk_slots(request):
        body = bytearray()
        try:
            async with asyncio.timeout(BODY_TIMEOUT_S):
                async for part in request.stream():
                    body += part
                    if len(body) > MAX_CHUNK:
                        raise HTTPException(
                            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "chunk too large"
                        )
        except TimeoutError:
            raise HTTPException(
                status.HTTP_408_REQUEST_TIMEOUT, f"the chunk took over {BODY_TIMEOUT_S} s"
            ) from None
        new = await run_in_threadpool(store.append, rel, offset, bytes(body))
    return {"path": rel, "offset": new}


@router.post("/jobs/{job_id}/files/{path:path}/finish")
def finish_file(
    job_id: str, path: str, user: CurrentUser, session: DbSession, svc: Svc
) -> dict[str, Any]:
    """Verify size and SHA-256 and move the file into place (422 on a mismatch)."""
    with _changing_input(session, user, job_id, svc) as (job, files):
        rel = str(safe_relpath(path))
        store = files.upload_store()
        final = store.finish(rel)  # DigestMismatchError -> 422, the bytes discarded
        size = final.stat().st_size
        _move(session, job, store.input_state(), only_from=BEFORE_START)
    return {"path": rel, "size": size}


@router.delete("/jobs/{job_id}/files/{path:path}")
def discard_upload(
    job_id: str, path: str, user: CurrentUser, session: DbSession, svc: Svc
) -> dict[str, Any]:
    """Discard an unfinished upload, else delete a finished input file, before the job starts.

    An unfinished upload of that name goes first (its bytes and record; a cancel): answers
    ``{"path", "discarded": true}``. Otherwise the finished input file is deleted, with the
    folders it leaves empty: ``{"path", "deleted": true, "size"}``. 404 when there is neither,
    400 for a folder, a symbolic link or a name against the path rules, 409 once the job has
    started. The job's state then follows its input (:meth:`JobState.for_input`): ``uploading``
    while an upload is unfinished, ``ready`` with a finished input file, else ``created``.
    """
    with _changing_input(session, user, job_id, svc, "its input is fixed") as (job, files):
        rel = str(safe_relpath(path))
        store = files.upload_store()
        answer: dict[str, Any]
        if store.pending(rel):
            store.abort(rel)
            answer = {"path": rel, "discarded": True}
        else:
            try:
                size = store.remove(rel)  # BadPathError -> 400
            except FileNotFoundError:  # InputNotFoundError
                raise HTTPException(
                    status.HTTP_404_NOT_FOUND, f"no input file or unfinished upload {rel!r}"
                ) from None
            answer = {"path": rel, "deleted": True, "size": size}
        _move(session, job, store.input_state(), only_from=BEFORE_START)
    return answer


@router.get("/jobs/{job_id}/results")
def results(job_id: str, user: CurrentUser, session: DbSession, svc: Svc) -> list[dict[str, Any]]:
    """The run's result files (``outputs/`` and ``summary.json``)."""
    job = owned_job(session, user, job_id)
    return list_results(svc.files(job).run_dir)


@router.get("/jobs/{job_id}/results.zip")
def results_zip(
    job_id: str,
    request: Request,
    user: CurrentUser,
    session: DbSession,
    svc: Svc,
    prefix: str | None = Query(
        None,
        max_length=4096,
        description="Only the result files under this folder, e.g. outputs/fused.ome.zarr "
        "(400 for a bad name, 404 when it holds none).",
    ),
) -> Response:
    """Every result file (and the summary) as one streamed zip, or those of one folder."""
    job = owned_job(session, user, job_id)
    run_dir, name = svc.files(job).run_dir, job.id
    return results_zip_response(run_dir, name, request, prefix=prefix)


@router.get("/jobs/{job_id}/results/{path:path}")
def result_file(
    job_id: str, path: str, request: Request, user: CurrentUser, session: DbSession, svc: Svc
) -> Response:
    """One result file, with HTTP Range (206) and ``If-Range`` support.

    The ``ETag`` (size and modification time) lets a client resume a download only when the
    file is still the one it started: with an ``If-Range`` that does not match, the whole file
    comes back (200).
    """
    job = owned_job(session, user, job_id)
    run_dir = svc.files(job).run_dir
    return result_file_response(run_dir, path, request)
