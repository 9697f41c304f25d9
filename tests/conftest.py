"""Shared fixtures: a real LocalCluster, a runner for the ``scopeflow`` command, and the
service's database (SQLite always, PostgreSQL when one is configured) with users and jobs made
as the service makes them.

Set ``SCOPEFLOW_TEST_POSTGRES_URL`` (e.g. ``postgresql+psycopg://postgres@127.0.0.1/postgres``,
a role allowed to create databases; ``scripts/postgres-up.sh`` prints one) to run the database
tests on PostgreSQL too; each test gets a database of its own there, dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import dask
import pytest
from distributed import Client, LocalCluster

if TYPE_CHECKING:  # the service is imported where it is used: most tests never need it
    from sqlalchemy.orm import Session

    from scopeflow.service.db import Job, User
    from scopeflow.service.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
EXAMPLE_TEMPLATES = REPO / "src/scopeflow/service/templates.example.yaml"
"""The service's example registry of command templates."""


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Client]:
    """A real LocalCluster of two single-threaded worker processes, shared by the session."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 2}):
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
            silence_logs=50,
        )
    # not the default scheduler: tests that compute plain dask arrays keep their local scheduler
    with cluster, Client(cluster, set_as_default=False) as client:
        yield client


def cli_env() -> dict[str, str]:
    """Environment for ``scopeflow`` subprocesses (no colour, wide console)."""
    env = dict(os.environ)
    env.update({"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb", "PYTHONUNBUFFERED": "1"})
    return env


def migrated_settings(data: Path, **settings: Any) -> ServiceSettings:
    """Service settings on a new data folder ``data``, with the example templates and the
    database (the embedded SQLite unless ``db_url`` is given) migrated to the newest revision."""
    from scopeflow.service.migrate import upgrade
    from scopeflow.service.settings import ServiceSettings

    data.mkdir(parents=True)
    shutil.copy(EXAMPLE_TEMPLATES, data / "templates.yaml")
    out = ServiceSettings(data_dir=data, **{"db_url": None, **settings})
    upgrade(out.database_url)
    return out


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` every 0.1 s until it is true; ``AssertionError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def scopeflow_cmd(*args: str | Path) -> list[str]:
    """argv of the installed ``scopeflow`` command."""
    return [sys.executable, "-m", "scopeflow", *map(str, args)]


def run_cli(
    args: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    timeout: float = 240,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``scopeflow ARGS`` (environment: :func:`cli_env` plus ``extra_env``), capture output."""
    return subprocess.run(
        scopeflow_cmd(*args),
        cwd=cwd,
        env={**cli_env(), **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- the service's database ----------------------------------------------------------------------

POSTGRES_ENV = "SCOPEFLOW_TEST_POSTGRES_URL"
"""Names the PostgreSQL server to test against; unset, the PostgreSQL variants are skipped."""


@contextmanager
def postgres_database() -> Iterator[str]:
    """URL of a new, empty PostgreSQL database on the server of :data:`POSTGRES_ENV`.

    The database is dropped on exit. Without :data:`POSTGRES_ENV` the test is skipped, or
    failed under ``SCOPEFLOW_REQUIRE_INFRA=1``.
    """
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from scopeflow.service.db import make_engine

    server = os.environ.get(POSTGRES_ENV)
    if not server:
        reason = f"no PostgreSQL to test against: set {POSTGRES_ENV} to run these"
        if os.environ.get("SCOPEFLOW_REQUIRE_INFRA", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail(f"{reason} (SCOPEFLOW_REQUIRE_INFRA=1)", pytrace=False)
        pytest.skip(reason)
    name = f"scopeflow_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(server).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database: a SQLite file, or a new PostgreSQL database.

    The PostgreSQL variant is skipped without :data:`POSTGRES_ENV` (see
    :func:`postgres_database`).
    """
    if request.param == "sqlite":
        yield f"sqlite:///{(tmp_path / 'db' / 'scopeflow.db').as_posix()}"
    else:
        with postgres_database() as url:
            yield url


@contextmanager
def cheap_password_hashing() -> Iterator[None]:
    """Hash passwords with argon2's cheapest parameters inside the block.

    The default parameters cost about 0.3 s per hash (each user made, each login); what most
    service tests check does not depend on them, and tests/unit/service/test_auth.py checks
    the real ones. Hashes made inside verify outside too (argon2 hashes carry their parameters).
    """
    from argon2 import PasswordHasher

    from scopeflow.service import auth

    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    with mock.patch.object(auth, "_hasher", cheap):
        yield


def add_user(
    session: Session,
    name: str = "alice",
    *,
    password: str = "pw",
    is_admin: bool = False,
    group: str | None = None,
) -> User:
    """A user made by the service's :func:`~scopeflow.service.auth.create_user` (flushed, not
    committed), its password hashed under :func:`cheap_password_hashing`."""
    from scopeflow.service.auth import create_user

    with cheap_password_hashing():
        return create_user(session, name, password, is_admin=is_admin, group=group)


def add_job(
    session: Session,
    owner: User,
    *,
    jobs_dir: Path | None = None,
    name: str = "job",
    template: str = "toy",
    params: dict[str, Any] | None = None,
    **fields: Any,
) -> Job:
    """A job row of ``owner`` in state ``created``, made as ``POST /jobs`` makes it (flushed,
    not committed).

    The id is the model's default; with ``jobs_dir`` the job's folders are created under it, as
    in the service. ``params`` are stored as they are (the API checks them against the template
    first).
    ``fields`` set more columns (``state=``, ``started_at=`` …) directly, bypassing
    :func:`~scopeflow.service.db.set_state`: for tests of the model and of claims.
    """
    from scopeflow.service.db import Job
    from scopeflow.service.jobfiles import JobFiles

    job = Job(
        owner_id=owner.id,
        name=name,
        template=template,
        params=params if params is not None else {},
        **fields,
    )
    session.add(job)
    session.flush()
    job.owner = owner
    if jobs_dir is not None:
        JobFiles.of(jobs_dir, owner.name, job.id).create()
    return job
