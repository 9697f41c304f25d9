"""FastAPI dependencies: the database session, the calling user, the service's objects.

Every route but ``GET /health`` and ``POST /auth/login`` depends on :func:`current_user`, which
accepts ``Authorization: Bearer <token>`` with a session token or an API key; anything else (no
header, garbage, an expired or revoked token) is a 401, never a 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import Engine, select
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session, sessionmaker

from scopeflow.service.auth import resolve_token
from scopeflow.service.db import Job, User, utcnow
from scopeflow.service.files import SettledSizes, used_bytes
from scopeflow.service.jobfiles import JobFiles
from scopeflow.service.settings import ServiceSettings
from scopeflow.service.states import TERMINAL
from scopeflow.service.templates import TemplateCache, TemplateRegistry
from scopeflow.service.throttle import LoginThrottle

__all__ = [
    "CurrentUser",
    "DbSession",
    "Service",
    "Svc",
    "bearer_token",
    "current_user",
    "db_session",
    "owned_job",
    "service",
]


#: How long after its end a job's folder counts as settled (no process writes in it any more).
SETTLED_AFTER = timedelta(minutes=2)


@dataclass
class Service:
    """What the routes share: settings, database and the template registry."""

    settings: ServiceSettings
    engine: Engine
    sessions: sessionmaker[Session]
    template_cache: TemplateCache
    #: sizes of the folders of jobs finished a while ago, for the quota (:meth:`used_bytes`)
    sizes: SettledSizes = field(default_factory=SettledSizes)
    #: the limit on failed logins (:mod:`scopeflow.service.throttle`)
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)

    @property
    def templates(self) -> TemplateRegistry:
        """The registry as the file says now (reloaded when it changes, as the worker's is)."""
        return self.template_cache.get() or TemplateRegistry()

    def files(self, job: Job) -> JobFiles:
        """The directory of ``job``."""
        return JobFiles.of_job(self.settings.jobs_dir, job)

    def used_bytes(self, session: Session, user: User) -> int:
        """Bytes the user's folder holds, for the quota (:func:`files.used_bytes`).

        The folders of jobs that finished over :data:`SETTLED_AFTER` ago are walked once per
        update of the job (a restart changes it) and remembered; the others every time.
        """
        cutoff = utcnow() - SETTLED_AFTER
        rows = session.execute(
            select(Job.id, Job.updated_at).where(
                Job.owner_id == user.id,
                Job.state.in_(TERMINAL),
                Job.finished_at.is_not(None),
                Job.finished_at < cutoff,
            )
        )
        settled = {job_id: updated.isoformat() for job_id, updated in rows}
        root = self.settings.jobs_dir / user.name
        return used_bytes(root, settled=settled, sizes=self.sizes)


def service(request: Request) -> Service:
    """The app's :class:`Service`."""
    svc: Service = request.app.state.service
    return svc


async def db_session(svc: Annotated[Service, Depends(service)]) -> AsyncIterator[Session]:
    """A session per request (closed afterwards; routes commit what they change).

    An async generator on purpose: its closing runs on the event loop. A sync one is closed in
    the thread pool, and with every pool thread taken by requests waiting for a database
    connection, the requests holding connections could not give them back (measured: 100
    concurrent clients, every request timed out).
    """
    session = svc.sessions()
    try:
        yield session
    finally:
        session.close()


#: ``scope="function"``: closed when the route function returns, before a streamed body is
#: sent, so no route holds a database connection while a client reads (or stalls).
DbSession = Annotated[Session, Depends(db_session, scope="function")]
Svc = Annotated[Service, Depends(service)]


def bearer_token(request: Request) -> str | None:
    """The token of the request's ``Authorization: Bearer …`` header, or None."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def current_user(request: Request, session: DbSession) -> User:
    """The user of the request's bearer token.

    Raises
    ------
    HTTPException
        401 without a valid, unexpired token.
    """
    token = bearer_token(request)
    user = resolve_token(session, token) if token is not None else None
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid bearer token is needed",
            headers={"WWW-Authenticate": "Bearer"},
        )
    # End the transaction either way (it may hold last_used_at): the connection goes back to
    # the pool before the route waits for a thread of its own. Held across that wait, 50
    # connections by requests waiting for threads and 40 threads waiting for connections
    # deadlocked the API under 100 concurrent clients (every request timed out after 30 s).
    session.commit()  # objects stay readable (expire_on_commit=False)
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def owned_job(session: Session, user: User, job_id: str) -> Job:
    """The job ``job_id`` if ``user`` owns it.

    Raises
    ------
    HTTPException
        404 when there is no such job *or* it belongs to someone else (the same answer, so ids
        of other users' jobs cannot be probed).
    """
    job = session.scalar(select(Job).where(Job.id == job_id, Job.owner_id == user.id))
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r}")
    return job


@contextmanager
def input_locked(session: Session, job: Job, files: JobFiles) -> Iterator[Job]:
    """Hold the job's input lock (:meth:`JobFiles.input_lock`) with the job re-read under it.

    Raises
    ------
    HTTPException
        404 when the job was deleted meanwhile.
    """
    gone = HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job.id!r}")
    with ExitStack() as stack:
        try:
            stack.enter_context(files.input_lock())
            session.refresh(job)
        except (FileNotFoundError, InvalidRequestError):  # folder or row deleted meanwhile
            raise gone from None
        yield job
