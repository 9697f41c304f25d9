"""``scopeflow login`` and ``scopeflow jobs …``: the service's actions over HTTP (the client).

The token of ``scopeflow login URL`` is kept in ``$SCOPEFLOW_CONFIG_DIR/credentials.json``
(default ``~/.config/scopeflow``; mode 0600); ``--url`` / ``--token`` (or ``SCOPEFLOW_URL`` /
``SCOPEFLOW_TOKEN``) override it. Uploads and downloads show bytes, rate and time left;
``delete-input`` takes files out of a job's input again before it starts.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from scopeflow.client import APIError, TransferError, TransferProgress

if TYPE_CHECKING:
    from scopeflow.client import Client

__all__ = ["jobs_app", "login_cmd"]

jobs_app = typer.Typer(help="Jobs on a scopeflow service (see `scopeflow login`).")
out = Console()
err = Console(stderr=True)
COLOURS = {"done": "green", "running": "yellow", "failed": "red", "skipped": "blue"}

UrlOpt = Annotated[str | None, typer.Option("--url", envvar="SCOPEFLOW_URL", help="Service URL.")]
TokenOpt = Annotated[
    str | None, typer.Option("--token", envvar="SCOPEFLOW_TOKEN", help="Token or API key.")
]


def _credentials_path() -> Path:
    base = os.environ.get("SCOPEFLOW_CONFIG_DIR") or Path.home() / ".config" / "scopeflow"
    return Path(base) / "credentials.json"


@contextlib.contextmanager
def _client(url: str | None, token: str | None) -> Iterator[Client]:
    """The service's client for a command; an API or transfer error ends it (exit 1)."""
    saved: dict[str, Any] = {}
    path = _credentials_path()
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
    saved_url = saved.get("url")
    if not token:
        # the saved token belongs to the saved service: never send it to another one
        if url and not (saved_url and _same_url(url, saved_url)):
            if saved.get("token"):
                err.print(
                    f"[red]no token for {url}:[/red] the saved login is for {saved_url}; "
                    f"run `scopeflow login {url}` or give --token"
                )
                raise typer.Exit(2)
        else:
            token = saved.get("token")
    url = url or saved_url
    if not url or not token:
        err.print("[red]not logged in:[/red] run `scopeflow login URL` (or give --url/--token)")
        raise typer.Exit(2)
    from scopeflow.client import Client  # httpx is loaded only by the commands that talk HTTP

    with Client(url, token) as client:
        try:
            yield client
        except (APIError, TransferError) as exc:
            raise _fail(exc) from None


def _same_url(a: str, b: str) -> bool:
    """Whether two service URLs name the same service (a trailing ``/`` aside)."""
    return a.rstrip("/") == b.rstrip("/")


def _fail(exc: APIError | TransferError) -> typer.Exit:
    err.print(f"[red]{exc}[/red]")
    return typer.Exit(1)


def login_cmd(
    url: Annotated[str, typer.Argument(help="Service URL, e.g. http://127.0.0.1:8000")],
    name: Annotated[str, typer.Option(prompt=True, help="User name.")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, help="Password.")],
) -> None:
    """Log in to a service and keep the token for `scopeflow jobs`."""
    from scopeflow.client import Client

    client = Client(url)
    try:
        client.login(name, password)
    except APIError as exc:
        raise _fail(exc) from None
    path = _credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode on open: make it private first
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"url": url, "token": client.token, "user": name}, fh)
    out.print(f"logged in to {url} as {name} (token in {path})")


def _params(pairs: list[str], file: Path | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if file is not None:
        params.update(yaml.safe_load(file.read_text(encoding="utf-8")) or {})
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--param")
        params[key] = yaml.safe_load(value)
    return params


@jobs_app.command("templates")
def templates_cmd(url: UrlOpt = None, token: TokenOpt = None) -> None:
    """The templates a job can use, with their parameters."""
    with _client(url, token) as c:
        table = Table("template", "pipeline", "parameters", "description")
        for t in c.templates():
            table.add_row(
                t["name"],
                t["pipeline"],
                ", ".join(t["schema"].get("properties", {})),
                t["description"],
            )
        out.print(table)


@jobs_app.command("create")
def create_cmd(
    template: Annotated[str, typer.Argument(help="Template name.")],
    name: Annotated[str, typer.Argument(help="A name for the job.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE (YAML value)")
    ] = None,
    params_file: Annotated[Path | None, typer.Option(help="YAML file of parameters.")] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Use the template's demo data instead of an upload.")
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Create a job; prints its id."""
    with _client(url, token) as c:
        job = c.create_job(template, name, _params(param or [], params_file))
        if demo:
            try:
                c.demo_data(job["id"])
            except APIError:
                err.print(f"job {job['id']} was created, but not its demo data:")
                raise
    out.print(job["id"])


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=out,
    )


@jobs_app.command("upload")
def upload_cmd(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    paths: Annotated[list[Path], typer.Argument(help="Files, or folders (uploaded recursively).")],
    to: Annotated[str, typer.Option("--to", help="Folder in the job's input.")] = "",
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Upload files (resuming interrupted uploads) with progress, rate and time left."""
    items: list[tuple[Path, str]] = []
    for p in paths:
        if p.is_dir():
            items += [
                (f, (Path(to) / p.name / f.relative_to(p)).as_posix())
                for f in sorted(p.rglob("*"))
                if f.is_file()
            ]
        else:
            items.append((p, (Path(to) / p.name).as_posix()))
    with _client(url, token) as c, _bar() as bar:
        for local, remote in items:
            task = bar.add_task(remote, total=local.stat().st_size)

            def show(s: TransferProgress, task: Any = task) -> None:
                bar.update(task, completed=s.done)

            c.upload(job_id, local, remote, progress=show)


def _simple(action: str, job_id: str, url: str | None, token: str | None) -> None:
    with _client(url, token) as c:
        job = getattr(c, action)(job_id)
    if job is not None:
        out.print(f"{job['id']}: {job['state']}")


@jobs_app.command("start")
def start_cmd(job_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Queue a job."""
    _simple("start", job_id, url, token)


@jobs_app.command("cancel")
def cancel_cmd(job_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Cancel a job."""
    _simple("cancel", job_id, url, token)


@jobs_app.command("restart")
def restart_cmd(job_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Queue a finished job again (only unfinished units rerun)."""
    _simple("restart", job_id, url, token)


@jobs_app.command("delete")
def delete_cmd(job_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Delete a job and its files."""
    _simple("delete", job_id, url, token)
    out.print(f"{job_id}: deleted")


@jobs_app.command("delete-input")
def delete_input_cmd(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    paths: Annotated[
        list[str], typer.Argument(help="Paths in the job's input, e.g. images/a.tif.")
    ],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Delete input files (or unfinished uploads) of a job that has not started."""
    with _client(url, token) as c:
        for path in paths:
            answer = c.delete_input(job_id, path)
            if answer.get("discarded"):
                out.print(f"{answer['path']}: unfinished upload discarded")
            else:
                out.print(f"{answer['path']}: deleted ({answer['size']} bytes)")


@jobs_app.command("list")
def list_cmd(
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """The user's jobs."""
    with _client(url, token) as c:
        table = Table("id", "name", "template", "state", "created")
        for j in c.jobs(state=state):
            table.add_row(j["id"], j["name"], j["template"], j["state"], j["created_at"])
        out.print(table)


@jobs_app.command("status")
def status_cmd(
    job_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print the job as JSON.")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """A job's state and its steps' progress."""
    with _client(url, token) as c:
        job, prog = c.job(job_id), c.progress(job_id)
    if as_json:
        out.print_json(json.dumps({**job, "progress": prog}))
        return
    out.print(f"{job['id']} {job['name']!r} ({job['template']}): [bold]{job['state']}[/bold]")
    if job.get("error"):
        out.print(f"[red]{job['error']}[/red]")
    out.print(_grid(prog))


def _grid(prog: dict[str, Any]) -> Table:
    table = Table("step", "units", "done", "running", "failed", "seconds")
    for s in prog.get("steps", []):
        counts = s["counts"]
        cells = "".join(
            f"[{COLOURS.get(state, 'white')}]■[/]" for state in list(s["units"].values())[:60]
        )
        table.add_row(
            s["step"],
            cells,
            str(counts.get("done", 0) + counts.get("skipped", 0)),
            str(counts.get("running", 0)),
            str(counts.get("failed", 0)),
            f"{s['seconds']:.1f}",
        )
    return table


@jobs_app.command("watch")
def watch_cmd(
    job_id: str,
    poll: Annotated[float, typer.Option(help="Seconds between polls.")] = 1.0,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Follow a job's step x unit grid live until it ends (exit 1 unless it succeeded)."""
    with _client(url, token) as c, Live(console=out, auto_refresh=False) as live:

        def show(prog: dict[str, Any], job: dict[str, Any]) -> None:
            table = _grid(prog)
            table.title = f"{job['name']} ({job['id'][:8]}): {job['state']}"
            live.update(table, refresh=True)

        job = c.wait(job_id, poll_s=poll, on_progress=show)
    if job["state"] != "succeeded":
        err.print(f"[red]{job['state']}[/red] {job.get('error') or ''}")
        raise typer.Exit(1)


@jobs_app.command("logs")
def logs_cmd(
    job_id: str,
    step: Annotated[str | None, typer.Option(help="Step (with --unit): a unit's log.")] = None,
    unit: Annotated[str | None, typer.Option(help="Unit (with --step).")] = None,
    stream: Annotated[str, typer.Option(help="stdout or stderr of the job.")] = "stderr",
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Until the job ends.")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """A unit's log or the job's scheduler output, all of it (or, with -f, until the job ends)."""
    which: dict[str, Any] = {"step": step, "unit": unit} if step and unit else {"stream": stream}
    with _client(url, token) as c:
        pages = c.follow_logs(job_id, **which) if follow else c.read_logs(job_id, **which)
        for text in pages:  # as it is: rich's rendering would cost seconds per MB
            out.file.write(text)
            out.file.flush()


@jobs_app.command("download")
def download_cmd(
    job_id: str,
    dest: Annotated[Path | None, typer.Argument(help="Target (default JOB-results.zip).")] = None,
    file: Annotated[str | None, typer.Option(help="One result file instead of the zip.")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Download the results as a zip (or one file, resuming a partial download)."""
    with _client(url, token) as c, _bar() as bar:
        target = dest or Path(f"{job_id}-results.zip" if file is None else Path(file).name)
        task = bar.add_task(str(target), total=None)

        def show(s: TransferProgress) -> None:
            bar.update(task, completed=s.done, total=s.total or None)

        if file is None:
            c.download_zip(job_id, target, progress=show)
        else:
            c.download(job_id, file, target, progress=show)
    out.print(f"saved {target}")
