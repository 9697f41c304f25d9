"""The service's database: models (SQLAlchemy 2), engines, sessions, job state changes, claims.

SQLite (a file in the data directory, the default) and PostgreSQL (``postgresql+psycopg://…``)
are both supported. The schema is created and changed by the Alembic migrations in
``scopeflow/service/migrations`` (see :func:`scopeflow.service.migrate.upgrade`), never by
``create_all`` in production. Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Engine,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    create_engine,
    event,
    or_,
    select,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    joinedload,
    mapped_column,
    relationship,
    sessionmaker,
)
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.elements import ColumnElement

from scopeflow.core.errors import ConfigError, InvalidTransitionError
from scopeflow.service._sqltypes import StrEnumType, UTCDateTime, iso, utcnow
from scopeflow.service.states import JobState, check_transition, is_terminal

__all__ = [
    "Base",
    "Job",
    "Token",
    "TokenKind",
    "User",
    "claim_jobs",
    "iso",
    "make_engine",
    "new_job_id",
    "session_factory",
    "set_state",
    "utcnow",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Constraint names, so that they are the same on every database (and in the migrations)."""


class TokenKind(StrEnum):
    """What a token is: a login session (expires) or an API key for scripts (may not expire)."""

    SESSION = "session"
    API_KEY = "api_key"


class Base(DeclarativeBase):
    """Declarative base of the service's models."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


def new_job_id() -> str:
    """A new job id: 32 hexadecimal digits of a random UUID (version 4)."""
    return uuid.uuid4().hex


class User(Base):
    """A person (or robot) who may log in. Only the argon2 hash of the password is kept."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(default=False)
    group: Mapped[str | None] = mapped_column("group_name", String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    tokens: Mapped[list[Token]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    jobs: Mapped[list[Job]] = relationship(back_populates="owner")

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, name={self.name!r}, is_admin={self.is_admin!r})"


class Token(Base):
    """A bearer token (login session or API key); only the SHA-256 of the token is kept."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[TokenKind] = mapped_column(StrEnumType(TokenKind, 16))
    name: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()

    user: Mapped[User] = relationship(back_populates="tokens")

    def __repr__(self) -> str:
        return f"Token(id={self.id!r}, user_id={self.user_id!r}, kind={self.kind!r})"


class Job(Base):
    """A job: one run of a command template, with its parameters, state and scheduler record."""

    __tablename__ = "jobs"
    __table_args__ = (Index(None, "state", "claimed_by"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_job_id)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    template: Mapped[str] = mapped_column(String(100), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[JobState] = mapped_column(StrEnumType(JobState, 16), default=JobState.CREATED)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    scheduler: Mapped[str] = mapped_column(String(16), default="local")
    scheduler_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(default=0)
    exit_code: Mapped[int | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None] = mapped_column()

    owner: Mapped[User] = relationship(back_populates="jobs")

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, name={self.name!r}, state={self.state!r})"


# -- engines and sessions ----------------------------------------------------------------------


def _sqlite_file(url: URL) -> Path:
    """The file of a SQLite URL; the API and the worker share it, so it must be one."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise ConfigError(
            "database_url",
            [
                (
                    "database_url",
                    f"SQLite needs a file path (e.g. sqlite:////data/scopeflow.db), got {url}",
                )
            ],
        )
    return Path(database)


def make_engine(
    url: str | URL, *, echo: bool = False, pool_size: int = 5, max_overflow: int = 10
) -> Engine:
    """Create the engine of a database URL, set up for the service.

    SQLite: a file (the API and the worker are two processes; in-memory databases and ``file:``
    URIs are refused), whose folder is created; foreign keys are enforced, the journal is in WAL
    mode (the API and the worker read while the other writes) and a writer waits up to 30 s for
    a lock. Other databases: connections are checked before use.

    Parameters
    ----------
    url
        SQLAlchemy URL, e.g. ``sqlite:////data/scopeflow.db`` or
        ``postgresql+psycopg://user:password@host/dbname`` (``postgresql://`` means the same:
        psycopg 3 is the driver scopeflow installs).
    echo
        Log every SQL statement.
    pool_size, max_overflow
        Connections kept open, and how many more may be opened at busy times (the API sizes
        them above its thread pool, so a request never waits for a connection another waiting
        request holds).
    """
    url = make_url(url)
    pool = {"pool_size": pool_size, "max_overflow": max_overflow}
    if url.drivername == "postgresql":  # SQLAlchemy's default driver would be psycopg2
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() != "sqlite":
        return create_engine(url, echo=echo, pool_pre_ping=True, **pool)
    path = _sqlite_file(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo, connect_args={"timeout": 30}, **pool)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to ``engine``; objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


# -- job state ---------------------------------------------------------------------------------

_FIXED = frozenset({"id", "owner_id", "state", "created_at", "updated_at"})
_SETTABLE = frozenset(c.key for c in Job.__table__.columns) - _FIXED
_CLEARED_ON_RESTART = ("started_at", "finished_at", "scheduler_id", "exit_code", "error")


def set_state(
    session: Session,
    job: Job,
    new: JobState | str,
    *,
    now: datetime | None = None,
    **fields: Any,
) -> Job:
    """Move ``job`` to state ``new`` (the one place where job states change), with other fields.

    The transition is checked against :data:`scopeflow.service.states.TRANSITIONS`, then
    written as a compare-and-set (``UPDATE … WHERE state = <old>``), so that of two processes
    changing the same job at once (the API cancelling, the worker starting) one wins and the other
    gets an error. Bookkeeping: ``updated_at`` always; ``started_at`` on entering ``running``;
    ``finished_at`` on entering a final state; entering ``queued`` counts an attempt, and a
    restart clears the previous attempt's times, scheduler id, exit code and error. Explicit
    ``fields`` win over this bookkeeping. The change is flushed, not committed.

    Parameters
    ----------
    session
        The session ``job`` belongs to.
    job
        The job.
    new
        The state to enter.
    now
        The time of the change (default: now).
    **fields
        Other job columns to set at the same time (e.g. ``scheduler_id``, ``exit_code``,
        ``error``).

    Returns
    -------
    Job
        ``job``, updated.

    Raises
    ------
    InvalidTransitionError
        The state table forbids the change, or the job's state in the database is no longer the
        one ``job`` had (it was changed by someone else; ``job`` is refreshed).
    TypeError
        ``fields`` names something that is not a settable job column.
    """
    unknown = set(fields) - _SETTABLE
    if unknown:
        raise TypeError(f"set_state() cannot set {sorted(unknown)}; settable: {sorted(_SETTABLE)}")
    old = job.state
    new_state = JobState(new)
    check_transition(old, new_state, job_id=job.id)
    now = now or utcnow()
    values: dict[str, Any] = {"updated_at": now}
    if new_state is JobState.QUEUED:
        values["attempts"] = job.attempts + 1
        if is_terminal(old):
            values.update(dict.fromkeys(_CLEARED_ON_RESTART))
    if new_state is JobState.RUNNING:
        values["started_at"] = now
    if is_terminal(new_state):
        values["finished_at"] = now
    values.update(fields)
    session.flush()
    result = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.state == old)
        .values(state=new_state, **values)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        session.refresh(job)
        raise InvalidTransitionError(
            old,
            new_state,
            job_id=job.id,
            reason=f"its state changed meanwhile to {str(job.state)!r}",
        )
    set_committed_value(job, "state", new_state)
    for key, value in values.items():
        set_committed_value(job, key, value)
    return job


# -- claims by workers -------------------------------------------------------------------------


def claim_jobs(
    session: Session,
    worker_id: str,
    state: JobState | str | Collection[JobState | str],
    limit: int = 10,
    *,
    now: datetime | None = None,
    stale_after: timedelta | None = None,
) -> list[Job]:
    """Claim up to ``limit`` unclaimed jobs in ``state`` for worker ``worker_id``, and commit.

    Safe with several workers: a job is never claimed by two. PostgreSQL locks the candidate rows
    with ``SELECT … FOR UPDATE SKIP LOCKED``; other databases (SQLite) claim each candidate
    with ``UPDATE … WHERE claimed_by IS NULL`` and keep only the rows that update changed.

    Parameters
    ----------
    session
        A session with no pending work of its own (the claim commits it).
    worker_id
        Who claims (stored in ``claimed_by``).
    state
        The state, or states, of the jobs to claim.
    limit
        The most jobs to claim.
    now
        Time of the claim (default: now).
    stale_after
        Also take over jobs claimed longer than this ago (by a worker that died).

    Returns
    -------
    list of Job
        The claimed jobs, oldest first.
    """
    states = [JobState(state)] if isinstance(state, str) else [JobState(s) for s in state]
    now = now or utcnow()
    free: ColumnElement[bool] = Job.claimed_by.is_(None)
    if stale_after is not None:
        free = or_(free, Job.claimed_at < now - stale_after)
    where = (Job.state.in_(states), free)
    candidates = select(Job.id).where(*where).order_by(Job.created_at, Job.id).limit(limit)
    claim = {"claimed_by": worker_id, "claimed_at": now}
    claimed: list[str] = []
    if session.get_bind().dialect.name == "postgresql":
        claimed = list(session.scalars(candidates.with_for_update(skip_locked=True)))
        if claimed:
            session.execute(
                update(Job)
                .where(Job.id.in_(claimed))
                .values(**claim)
                .execution_options(synchronize_session=False)
            )
    else:
        for job_id in list(session.scalars(candidates)):
            result = session.execute(
                update(Job)
                .where(Job.id == job_id, *where)
                .values(**claim)
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) == 1:
                claimed.append(job_id)
    session.commit()
    if not claimed:
        return []
    query = (
        select(Job)
        .options(joinedload(Job.owner))  # the caller goes through them: no query per owner
        .where(Job.id.in_(claimed))
        .order_by(Job.created_at, Job.id)
    )
    return list(session.scalars(query.execution_options(populate_existing=True)))
