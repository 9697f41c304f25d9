"""Commands of the service's machine: ``scopeflow db …``, ``admin …``, ``server``, ``worker``.

They run on the service's machine, with the service's settings, and open the database directly
(unlike ``scopeflow jobs …``, which talk to a server over HTTP). Heavy imports happen inside the
commands, so that ``scopeflow --help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from scopeflow.service.settings import ServiceSettings

__all__ = ["admin_app", "db_app", "load_settings", "server_cmd", "worker_cmd"]

db_app = typer.Typer(help="Manage the service's database.", no_args_is_help=True)
admin_app = typer.Typer(help="Manage the service's users and API keys.", no_args_is_help=True)

out = Console()
err = Console(stderr=True)

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
    from scopeflow.service.auth import find_user, issue_token
    from scopeflow.service.db import TokenKind

    settings = load_settings(config, data_dir, db)
    with _migrated_session(settings) as session:
        user = find_user(session, name)
        if user is None:
            raise typer.BadParameter(f"no user named {name!r}", param_hint="NAME")
        key = issue_token(
            session, user, TokenKind.API_KEY, None if days is None else days * 86400.0, name=label
        )
    typer.echo(key)


@admin_app.command("api-keys")
def api_keys_cmd(
    user: Annotated[
        str | None, typer.Option(help="Only this user's keys.", show_default=False)
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    db: DbOption = None,
) -> None:
    """List API keys: id, user, label, created, expires, last used (never the keys)."""
    from scopeflow.service.auth import api_key_json, api_keys, find_user

    settings = load_settings(config, data_dir, db)
    with _migrated_session(settings) as session:
        owner = None
        if user is not None:
            owner = find_user(session, user)
            if owner is None:
                raise typer.BadParameter(f"no user named {user!r}", param_hint="--user")
        rows = [api_key_json(k) for k in api_keys(session, owner)]
    if not rows:
        out.print("no API keys")
        return
    cols = ("id", "user", "name", "created_at", "expires_at", "last_used_at")
    typer.echo("\t".join(cols))
    for row in rows:
        typer.echo("\t".join("-" if row[c] is None else str(row[c]) for c in cols))


@admin_app.command("revoke-api-key")
def revoke_api_key_cmd(
    key_id: Annotated[int, typer.Argument(help="The key's id (see 'scopeflow admin api-keys').")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    db: DbOption = None,
) -> None:
    """Revoke an API key now: requests with it get 401 from then on."""
    from scopeflow.service.auth import revoke_api_key

    settings = load_settings(config, data_dir, db)
    with _migrated_session(settings) as session:
        if not revoke_api_key(session, key_id):
            raise typer.BadParameter(f"no API key with id {key_id}", param_hint="KEY_ID")
    out.print(f"revoked API key {key_id}")


@admin_app.command("templates")
def templates_cmd(
    load: Annotated[
        Path | None,
        typer.Option(
            help="Check this YAML registry and install it as the service's templates.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    db: DbOption = None,
) -> None:
    """List the command templates (the only things jobs can run), or install a new registry.

    ``--load`` validates every template against its pipeline first; nothing is replaced when
    one is wrong. The API and the worker read the file again when it changes (no restart).
    """
    from rich.table import Table

    from scopeflow.core.fileio import atomic_write_text
    from scopeflow.service.templates import TemplateRegistry

    settings = load_settings(config, data_dir, db)
    target = settings.templates_path
    if load is not None:
        registry = TemplateRegistry.load(load)  # ConfigError names the template and field
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, load.read_text(encoding="utf-8"))
        out.print(f"installed {len(registry)} templates into {target}")
    elif target.exists():
        registry = TemplateRegistry.load(target)
    else:
        out.print(f"no templates yet: install some with --load FILE (into {target})")
        return
    table = Table("template", "pipeline", "user parameters", "resources")
    for t in registry:
        res = t.resources
        table.add_row(
            t.name,
            t.pipeline,
            ", ".join(t.user_parameters),
            f"{res.cores} cores, {res.memory or '-'}, {res.walltime or '-'}",
        )
    out.print(table)


# -- the server and its worker -----------------------------------------------------------------


class LogLevel(StrEnum):
    """How much the server and the worker log."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


LogLevelOption = Annotated[
    LogLevel, typer.Option("--log-level", case_sensitive=False, help="What to log.")
]


def _setup_logging(level: LogLevel) -> None:
    """Log scopeflow's messages at ``level`` to stderr (other libraries: warnings only)."""
    import logging

    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("scopeflow").setLevel(level.upper())


def _require_head(url: str) -> None:
    """Exit with status 2 unless the database is migrated to the newest schema."""
    from scopeflow.service.migrate import current_revision, head_revision

    current, head = current_revision(url), head_revision()
    if current != head:
        err.print(
            f"error: database {_shown(url)} is at revision {current or 'none (empty)'}, "
            f"not {head}; run `scopeflow db upgrade` (or `scopeflow server`, which does)",
            highlight=False,
        )
        raise typer.Exit(2)


def worker_cmd(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    db: DbOption = None,
    poll: Annotated[
        float, typer.Option("--poll", min=0.05, help="Seconds between rounds when idle.")
    ] = 1.0,
    log_level: LogLevelOption = LogLevel.INFO,
    parent: Annotated[
        int | None,
        typer.Option(
            "--parent", hidden=True, help="Stop when this process is no longer the parent."
        ),
    ] = None,
) -> None:
    """Run the job worker in the foreground: submit queued jobs, follow them to their end.

    'scopeflow server' starts one; more may run (sharing the data folder and database). Stop it
    with Ctrl+C or SIGTERM: running jobs go on, and a worker started later re-attaches to them.
    """
    import os
    import signal
    import threading

    from scopeflow.service.worker import Worker

    settings = load_settings(config, data_dir, db)
    _setup_logging(log_level)
    _require_head(settings.database_url)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if parent is not None:

        def watch_parent() -> None:
            while not stop.wait(1.0):
                if os.getppid() != parent:
                    stop.set()

        threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    with Worker(settings, poll_s=poll) as worker:
        worker.run(stop)


def server_cmd(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    db: DbOption = None,
    log_level: LogLevelOption = LogLevel.INFO,
) -> None:
    """Run the service: the HTTP API here and the job worker as a separate process.

    The database is migrated first. The worker ('scopeflow worker' with the same settings) is
    restarted if it dies and stopped when the server stops (Ctrl+C or SIGTERM); running jobs
    go on and are picked up again at the next start.
    """
    import importlib
    import os
    import signal

    import uvicorn

    from scopeflow.service.migrate import upgrade
    from scopeflow.service.worker import WorkerProcess

    settings = load_settings(config, data_dir, db)
    _setup_logging(log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    # the API module is imported by name: it is the one place that knows FastAPI
    api = importlib.import_module("scopeflow.service.app").create_app(settings, migrate=False)

    argv = [sys.executable, "-m", "scopeflow", "worker", "--data-dir", str(settings.data_dir)]
    if config is not None:
        argv += ["--config", str(config.absolute())]
    argv += ["--log-level", str(log_level), "--parent", str(os.getpid())]
    # the URL (it may hold a password) goes by environment, not on the command line
    env = {**os.environ, "SCOPEFLOW_DB_URL": settings.database_url}

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}"
    worker = WorkerProcess(argv, env=env)
    try:
        worker.start()
        for line in (
            f"scopeflow server on {url}  (API docs: {url}/docs)",
            f"data:      {settings.data_dir}",
            f"database:  {_shown(settings.database_url)}",
            f"templates: {settings.templates_path}",
            f"worker:    pid {worker.pid}, scheduler {settings.scheduler}",
        ):
            out.print(line, highlight=False, soft_wrap=True, markup=False)
        server = uvicorn.Server(uvicorn.Config(api, host=host, port=port, log_level=str(log_level)))
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        for sig in previous:  # a second Ctrl+C must not leave the worker behind
            signal.signal(sig, signal.SIG_IGN)
        worker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    out.print("scopeflow server stopped", highlight=False)
