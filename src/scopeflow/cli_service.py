"""Commands that act on the service's own database: ``scopeflow db …`` and ``scopeflow admin …``.

They run on the service's machine, with the service's settings, and open the database directly
(unlike ``scopeflow jobs …``, which talk to a server over HTTP). Heavy imports happen inside the
commands, so that ``scopeflow --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from scopeflow.service.settings import ServiceSettings

__all__ = ["admin_app", "db_app", "load_settings"]

db_app = typer.Typer(help="Manage the service's database.", no_args_is_help=True)
admin_app = typer.Typer(help="Manage the service's users and API keys.", no_args_is_help=True)

out = Console()

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar="SCOPEFLOW_CONFIG",
        help="Service settings file (YAML).",
        show_default=False,
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="The service's data folder [env SCOPEFLOW_DATA_DIR; default ./scopeflow-data].",
        show_default=False,
    ),
]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL [env SCOPEFLOW_DB_URL; default SQLite in the data folder].",
        show_default=False,
    ),
]


def load_settings(
    config: Path | None = None, data_dir: Path | None = None, db: str | None = None
) -> ServiceSettings:
    """The service settings: the file ``config``, environment variables, then these options.

    Parameters
    ----------
    config
        A YAML settings file, or None.
    data_dir
        ``--data-dir``, if given.
    db
        ``--db``, if given.
    """
    from scopeflow.service.settings import ServiceSettings

    return ServiceSettings.load(config, data_dir=data_dir, db_url=db)


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def _migrated_session(settings: ServiceSettings) -> Iterator[Session]:
    """A session on the migrated database; committed at the end unless an error escapes."""
    from scopeflow.service.db import make_engine, session_factory
    from scopeflow.service.migrate import upgrade

    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine).begin() as session:
            yield session
    finally:
        engine.dispose()


@db_app.command("upgrade")
def db_upgrade(
    config: ConfigOption = None, data_dir: DataDirOption = None, db: DbOption = None
) -> None:
    """Create the database, or migrate it to the newest schema."""
    from scopeflow.service.migrate import current_revision, upgrade

    settings = load_settings(config, data_dir, db)
    upgrade(settings.database_url)
    revision = current_revision(settings.database_url)
    out.print(f"database {_shown(settings.database_url)} is at revision {revision}")


@admin_app.command("create-user")
def create_user_cmd(
    name: Annotated[str, typer.Argument(help="Login name.")],
    admin: Annotated[bool, typer.Option("--admin", help="Give the admin role.")] = False,
    password: Annotated[
        str | None,
        typer.Option(help="Password (asked for, hidden, when not given).", show_default=False),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(help="Group or project (chooses the cluster account).", show_default=False),
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    db: DbOption = None,
) -> None:
    """Add a user to the service (the database is migrated first)."""
    from scopeflow.core.errors import ScopeflowError
    from scopeflow.service.auth import create_user

    settings = load_settings(config, data_dir, db)
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise typer.BadParameter("the password must not be empty", param_hint="--password")
    with _migrated_session(settings) as session:
        try:
            user = create_user(session, name, password, is_admin=admin, group=group)
        except ScopeflowError:  # e.g. the user exists: main() reports it
            raise
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="NAME") from None
        role = "admin" if user.is_admin else "user"
    out.print(f"created {role} {name!r} in {_shown(settings.database_url)}")


@admin_app.command("create-api-key")
def create_api_key_cmd(
    name: Annotated[str, typer.Argument(help="The user the key belongs to.")],
    label: Annotated[
        str | None, typer.Option(help="What the key is for.", show_default=False)
    ] = None,
    days: Annotated[
        int | None,
        typer.Option(
            min=1, help="Days until the key expires (default: never).", show_default=False
        ),
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    db: DbOption = None,
) -> None:
    """Make an API key for a user and print it; it cannot be shown again."""
    from sqlalchemy import select

    from scopeflow.service.auth import issue_token
    from scopeflow.service.db import TokenKind, User

    settings = load_settings(config, data_dir, db)
    with _migrated_session(settings) as session:
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            raise typer.BadParameter(f"no user named {name!r}", param_hint="NAME")
        key = issue_token(
            session, user, TokenKind.API_KEY, None if days is None else days * 86400.0, name=label
        )
    typer.echo(key)
