"""Database fixtures of the service tests: SQLite always, PostgreSQL when one is configured.

Set ``SCOPEFLOW_TEST_POSTGRES_URL`` (e.g. ``postgresql+psycopg://postgres@127.0.0.1/postgres``,
a role allowed to create databases) to run the database tests on PostgreSQL too; each test gets
a database of its own there, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from scopeflow.service import auth
from scopeflow.service.app import API_PREFIX, create_app
from scopeflow.service.db import make_engine, session_factory
from scopeflow.service.migrate import upgrade
from scopeflow.service.settings import ServiceSettings
from tests.conftest import EXAMPLE_TEMPLATES

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


# -- the REST API in process ---------------------------------------------------------------------

EXAMPLE = EXAMPLE_TEMPLATES


def password(name: str) -> str:
    """The password of user ``name`` in :func:`service_app`."""
    return f"{name}-password"


class Clock:
    """A settable clock (seconds) for the download signer or the login throttle."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@contextmanager
def service_app(
    db_url: str, tmp_path: Path, *, templates: str | None = None, **settings: Any
) -> Iterator[tuple[TestClient, ServiceSettings]]:
    """The service's app on a real database, with users ``alice``, ``bob`` and ``root``
    (an administrator), each with :func:`password`, behind FastAPI's TestClient.

    ``templates`` is the registry's YAML text (default: :data:`EXAMPLE`); ``settings`` go to
    :class:`ServiceSettings`. Passwords are hashed with argon2's cheapest parameters here
    (the default ones cost about 0.3 s per user and login): what these tests check does not
    depend on them, and tests/unit/service/test_auth.py checks the real ones.
    """
    data = tmp_path / "data"
    data.mkdir()
    (data / "templates.yaml").write_text(templates or EXAMPLE.read_text(encoding="utf-8"))
    config = ServiceSettings(data_dir=data, db_url=db_url, **settings)
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    with mock.patch.object(auth, "_hasher", cheap):
        app = create_app(config)
        with session_factory(make_engine(config.database_url))() as s:
            for name in ("alice", "bob", "root"):
                auth.create_user(s, name, password(name), is_admin=name == "root")
            s.commit()
        with TestClient(app) as client:
            yield client, config


def login(client: TestClient, name: str) -> dict[str, str]:
    """The bearer header of a fresh login of ``name`` (a user of :func:`service_app`)."""
    r = client.post(f"{API_PREFIX}/auth/login", json={"name": name, "password": password(name)})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}
