"""Apply the service's Alembic migrations, configured in code (no alembic.ini needed).

The migration scripts live in ``scopeflow/service/migrations`` and ship in the wheel. New
revisions are written by hand (or with ``alembic revision --autogenerate`` on a config made by
:func:`alembic_config`) and must leave the schema equal to the models in
:mod:`scopeflow.service.db`; a test checks that.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from scopeflow.service.db import make_engine

__all__ = ["MIGRATIONS_DIR", "alembic_config", "current_revision", "head_revision", "upgrade"]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
"""Folder of the Alembic environment and its ``versions/``."""


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration for ``database_url`` and the service's migrations.

    Parameters
    ----------
    database_url
        SQLAlchemy URL of the database.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolates '%': a URL-encoded password must survive it
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database at ``database_url`` to ``revision`` (default: the newest).

    Creates the database's tables when it is new; the folder of a SQLite file is created too.

    Parameters
    ----------
    database_url
        SQLAlchemy URL of the database.
    revision
        Alembic revision to migrate to.
    """
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            config = alembic_config(database_url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def current_revision(database_url: str) -> str | None:
    """The revision the database at ``database_url`` is at (None: never migrated)."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str:
    """The newest revision of the migration scripts."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:  # pragma: no cover - the package always ships its migrations
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head
