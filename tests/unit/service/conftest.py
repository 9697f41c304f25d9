"""Fixtures of the service tests: migrated databases, and the REST API in process.

The databases come from :func:`tests.conftest.db_url` (SQLite always, PostgreSQL when
``SCOPEFLOW_TEST_POSTGRES_URL`` is set).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from scopeflow.service import auth
from scopeflow.service.app import API_PREFIX, create_app
from scopeflow.service.db import make_engine, session_factory
from scopeflow.service.migrate import upgrade
from scopeflow.service.settings import ServiceSettings
from tests.conftest import EXAMPLE_TEMPLATES, cheap_password_hashing


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
    (:func:`~tests.conftest.cheap_password_hashing`).
    """
    data = tmp_path / "data"
    data.mkdir()
    (data / "templates.yaml").write_text(templates or EXAMPLE.read_text(encoding="utf-8"))
    config = ServiceSettings(data_dir=data, db_url=db_url, **settings)
    with cheap_password_hashing():
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


def create_job(
    client: TestClient, auth: dict[str, str], template: str = "toy", **params: Any
) -> dict[str, Any]:
    """A job made through ``POST /jobs`` by the user of ``auth`` (201): the API's answer.

    ``params`` are the job's parameters; the template's defaults fill in the rest.
    """
    body = {"template": template, "name": f"a {template} job", "params": params}
    r = client.post(f"{API_PREFIX}/jobs", json=body, headers=auth)
    assert r.status_code == 201, r.text
    job: dict[str, Any] = r.json()
    return job
