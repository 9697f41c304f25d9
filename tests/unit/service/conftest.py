"""Database fixtures of the service tests: SQLite always, PostgreSQL when one is configured.

Set ``SCOPEFLOW_TEST_POSTGRES_URL`` (e.g. ``postgresql+psycopg://postgres@127.0.0.1/postgres``,
a role allowed to create databases) to run the database tests on PostgreSQL too; each test gets
a database of its own there, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from scopeflow.service.db import make_engine, session_factory
from scopeflow.service.migrate import upgrade

POSTGRES_ENV = "SCOPEFLOW_TEST_POSTGRES_URL"


def _postgres_database() -> Iterator[str]:
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
    """URL of an empty database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{(tmp_path / 'db' / 'scopeflow.db').as_posix()}"
    else:
        yield from _postgres_database()


@pytest.fixture
def migrated_url(db_url: str) -> str:
    """URL of a database migrated to the newest schema."""
    upgrade(db_url)
    return db_url


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    """Engine of a migrated database."""
    eng = make_engine(migrated_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on a migrated database."""
    with session_factory(engine)() as s:
        yield s
