"""The ``scopeflow`` command line (typer + rich).

Errors that scopeflow raises on purpose are printed as one clear message (no traceback) and exit
with status 2 for bad input and 1 for a run whose units failed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from scopeflow import __version__
from scopeflow.cli_jobs import jobs_app, login_cmd
from scopeflow.cli_service import admin_app, db_app, server_cmd, worker_cmd
from scopeflow.core import (
    ClusterKind,
    ConfigError,
    RunStatus,
    ScopeflowError,
)

if TYPE_CHECKING:
    from types import FrameType

    from scopeflow.engine import RunOutcome

app = typer.Typer(
    name="scopeflow",
    help="Parallel microscopy pipelines on Dask: on a laptop by default, on HPC when needed.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
synth_app = typer.Typer(help="Write synthetic data with known ground truth.", no_args_is_help=True)
app.add_typer(synth_app, name="synth")
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
app.add_typer(jobs_app, name="jobs")
app.command("login")(login_cmd)
app.command("server")(server_cmd)
app.command("worker")(worker_cmd)

out = Console()
err = Console(stderr=True)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _version(value: bool) -> None:
    if value:
        out.print(f"scopeflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Parallel microscopy pipelines on Dask."""


# -- run ---------------------------------------------------------------------------------------


def _cluster_spec(section: dict[str, Any], overrides: dict[str, Any], source: str) -> Any:
    from scopeflow.core.config import validate_config
    from scopeflow.engine import ClusterSpec

    data = dict(section)
    data.update({k: v for k, v in overrides.items() if v is not None and v != []})
    try:
        return validate_config(ClusterSpec, data, source=source, base_dir=None)
    except ConfigError as exc:
        exc.problems = [(f"cluster.{k}" if k else "cluster", m) for k, m in exc.problems]
        raise ConfigError(source, exc.problems) from None


@app.command()
def run(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name (see 'scopeflow pipelines').")],
    config: Annotated[Path, typer.Option("--config", "-c", help="The pipeline's config.yaml.")],
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--workdir",
            "-w",
            help="Run directory; run again on it to resume. "
            "Default: runs/<pipeline> next to the config file.",
        ),
    ] = None,
    cluster: Annotated[
        ClusterKind | None, typer.Option("--cluster", help="Where the workers run.")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="Address of an existing Dask scheduler.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-n", min=1, help="Worker processes / batch jobs.")
    ] = None,
    cores: Annotated[int | None, typer.Option(min=1, help="Batch systems: cores per job.")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory per worker/job, e.g. 4GB.")] = None,
    walltime: Annotated[str | None, typer.Option(help="Batch systems: wall time per job.")] = None,
    queue: Annotated[str | None, typer.Option(help="Batch systems: partition / queue.")] = None,
    account: Annotated[str | None, typer.Option(help="Batch systems: account / project.")] = None,
    job_extra: Annotated[
        list[str] | None, typer.Option(help="Batch systems: extra directive (repeatable).")
    ] = None,
    interface: Annotated[
        str | None, typer.Option(help="Network interface for scheduler and workers (e.g. lo).")
    ] = None,
    retries: Annotated[
        int | None, typer.Option(min=0, help="Times a failing unit is tried again (default 2).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar per step.")] = True,
) -> None:
    """Run PIPELINE on the configuration file; resume if the run directory has finished units."""
    _stop_on_sigterm()
    from scopeflow.core.config import read_yaml_mapping, validate_config
    from scopeflow.engine import DEFAULT_RETRIES, RichProgress, run_pipeline, start_mpi_cluster
    from scopeflow.pipelines import get_pipeline

    pipe = get_pipeline(pipeline)
    data = read_yaml_mapping(config)
    cluster_section = data.pop("cluster", None) or {}
    engine_section = data.pop("engine", None) or {}
    if not isinstance(cluster_section, dict):
        raise ConfigError(config, [("cluster", "expected a mapping of cluster settings")])
    if not isinstance(engine_section, dict) or set(engine_section) - {"retries"}:
        raise ConfigError(config, [("engine", "expected a mapping with only 'retries'")])
    cfg = validate_config(pipe.config_model, data, source=config, base_dir=config.parent.absolute())
    spec = _cluster_spec(
        cluster_section,
        {
            "kind": cluster,
            "scheduler": scheduler,
            "workers": workers,
            "cores": cores,
            "memory": memory,
            "walltime": walltime,
            "queue": queue,
            "account": account,
            "job_extra": job_extra or [],
            "interface": interface,
        },
        str(config),
    )
    n_retries = (
        retries if retries is not None else int(engine_section.get("retries", DEFAULT_RETRIES))
    )
    if spec.kind is ClusterKind.MPI and not spec.scheduler:
        start_mpi_cluster(spec)  # ranks other than 1 serve the cluster and exit inside
    workdir = workdir or config.parent / "runs" / pipe.name
    pipe.units(cfg)  # list the units now: missing inputs are reported before any cluster starts
    try:
        outcome = run_pipeline(
            pipe,
            cfg,
            workdir,
            cluster=spec,
            retries=n_retries,
            progress=RichProgress(err) if progress else None,
        )
    except KeyboardInterrupt:  # typer would turn it into a silent exit 130
        err.print(
            f"[yellow]cancelled[/yellow]; run directory {workdir}; "
            "run the same command again to resume"
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    _print_outcome(outcome.summary, outcome.run_dir)
    if outcome.status is not RunStatus.SUCCEEDED:
        for step, unit, error in outcome.failed:
            err.print(Text.assemble(("failed ", "red"), f"{step}[{unit}]: {error}"))
            err.print(f"  log: {outcome.run_dir / 'logs' / step / (unit + '.log')}")
        raise typer.Exit(EXIT_FAILED)


def _stop_on_sigterm() -> None:
    """Let SIGTERM stop a run as Ctrl-C does.

    A cancelled service job gets SIGTERM (the local scheduler signals the process group, the
    wrapper passes it on, ``scancel`` sends it). With Python's default handling the process
    would die at once: no ``summary.json``, units left ``running`` in ``events.jsonl``, the
    workers' batch jobs not closed. As a KeyboardInterrupt it takes the engine's interrupt path
    (units closed, summary with status ``cancelled``, cluster closed). Only the first SIGTERM
    counts: a cancel can deliver it twice (to the process group, and again by the wrapper), and
    a second one would interrupt that clean-up; the scheduler's SIGKILL after its grace period
    still ends a run that does not stop.
    """
    import signal
    import threading

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.default_int_handler(signum, frame)

    if threading.current_thread() is threading.main_thread():  # handlers are main-thread only
        signal.signal(signal.SIGTERM, on_sigterm)


def _print_outcome(summary: dict[str, Any], run_dir: Path) -> None:
    table = Table(title=f"{summary['pipeline']}: {summary['status']} in {summary['wall_s']:.1f} s")
    for col in ("step", "units", "done", "failed", "not started", "mean s", "max s"):
        table.add_column(col, justify="left" if col == "step" else "right")
    for name, st in summary["steps"].items():
        table.add_row(
            name,
            str(st["units"]),
            str(st["done"]),
            str(st["failed"]),
            str(st["not_started"]),
            "-" if st["mean_s"] is None else f"{st['mean_s']:.3f}",
            "-" if st["max_s"] is None else f"{st['max_s']:.3f}",
        )
    out.print(table)
    out.print(f"run directory: {run_dir}")
    out.print(f"summary:       {run_dir / 'summary.json'}")
    for name, rel in summary.get("outputs", {}).items():
        out.print(f"output {name}: {run_dir / rel}")


@app.command("pipelines")
def pipelines_cmd() -> None:
    """List the built-in pipelines."""
    from scopeflow.pipelines import available, get_pipeline

    for name in available():
        out.print(f"{name:12s} {get_pipeline(name).description}")


# -- synth -------------------------------------------------------------------------------------


def _shape(value: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected Z,Y,X integers, got {value!r}") from None
    if len(parts) != 3 or min(parts) < 16:
        raise typer.BadParameter(f"expected three sizes >= 16 as Z,Y,X, got {value!r}")
    return (parts[0], parts[1], parts[2])


@synth_app.command("spim")
def synth_spim(
    out_dir: Annotated[Path, typer.Argument(help="Output folder.")],
    views: Annotated[int, typer.Option(min=1, max=36, help="Number of views (angles).")] = 4,
    timepoints: Annotated[int, typer.Option(min=1, help="Number of time points.")] = 3,
    shape: Annotated[str, typer.Option(help="View volume size Z,Y,X.")] = "64,128,128",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    czi: Annotated[bool, typer.Option(help="Also write CZI files (one illumination).")] = True,
    channels: Annotated[
        int, typer.Option(min=1, max=8, help="Channels (beads in the first only).")
    ] = 1,
    illuminations: Annotated[
        int, typer.Option(min=1, max=4, help="Illuminations (one-sided light sheets).")
    ] = 1,
) -> None:
    """Multiview light-sheet time-lapse with beads, known view affines and drift."""
    from scopeflow.testing import make_spim_dataset

    make_spim_dataset(
        out_dir,
        views=views,
        timepoints=timepoints,
        shape=_shape(shape),
        seed=seed,
        write_czi=czi and illuminations == 1,
        channels=channels,
        illuminations=illuminations,
    )
    out.print(f"wrote SPIM data to {out_dir} (truth.json, config.yaml)")


@synth_app.command("cyto")
def synth_cyto(
    out_dir: Annotated[Path, typer.Argument(help="Output folder.")],
    kind: Annotated[str, typer.Option(help="ifc (single cells) or confocal (fields).")] = "ifc",
    n: Annotated[int, typer.Option(min=1, help="Number of images.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Single-cell images (ifc) or multi-cell fields (confocal) with true label masks."""
    from scopeflow.testing import make_cyto_dataset

    if kind not in ("ifc", "confocal"):
        raise typer.BadParameter(f"expected 'ifc' or 'confocal', got {kind!r}", param_hint="--kind")
    make_cyto_dataset(out_dir, kind=kind, n=n, seed=seed)
    out.print(f"wrote {kind} data to {out_dir} (truth.csv, labels)")


# -- demo --------------------------------------------------------------------------------------


@app.command()
def demo(
    workdir: Annotated[
        Path, typer.Option("--workdir", "-w", help="Folder for data and runs.")
    ] = Path("scopeflow-demo"),
    workers: Annotated[int | None, typer.Option("--workers", "-n", min=1)] = None,
    n_ifc: Annotated[int, typer.Option("--ifc-images", min=1, help="IFC images to make.")] = 1000,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Make synthetic data with known truth and run the pipelines on it, locally.

    Three runs: imaging-flow-cytometry images (one cell each), confocal fields of touching
    cells, and a small multiview light-sheet time-lapse (4 views, 2 time points).
    """
    import pandas as pd

    from scopeflow.testing import make_cyto_dataset, make_spim_dataset

    failed = False
    for kind, n in (("ifc", n_ifc), ("confocal", 2)):
        data = workdir / kind
        if not (data / "truth.csv").exists():
            out.print(f"making {n} synthetic {kind} images with ground truth in {data} ...")
            make_cyto_dataset(data, kind=kind, n=n, seed=0)
        outcome = _demo_run("cyto", data, workers, progress)
        failed |= outcome.status is not RunStatus.SUCCEEDED
        if "features" in outcome.summary["outputs"]:
            features = pd.read_parquet(outcome.run_dir / outcome.summary["outputs"]["features"])
            truth = pd.read_csv(data / "truth.csv")
            out.print(
                f"{kind}: {len(features)} cells found, {len(truth)} in the ground truth; "
                f"{features.shape[1]} columns per cell"
            )
        out.print(f"[bold]{kind} results are in {outcome.run_dir / 'outputs'}[/bold]")
    data = workdir / "spim"
    if not (data / "truth.json").exists():
        out.print(f"making a synthetic 4-view, 2-time-point light-sheet dataset in {data} ...")
        make_spim_dataset(data, views=4, timepoints=2, seed=0, write_czi=False)
    outcome = _demo_run("spim", data, workers, progress)
    failed |= outcome.status is not RunStatus.SUCCEEDED
    out.print(f"[bold]spim results are in {outcome.run_dir / 'outputs'}[/bold]")
    if failed:
        raise typer.Exit(EXIT_FAILED)


def _demo_run(name: str, data: Path, workers: int | None, progress: bool) -> RunOutcome:
    """Run pipeline ``name`` on ``data/config.yaml`` into ``data/run``; print its outcome."""
    from scopeflow.core.config import load_config
    from scopeflow.engine import ClusterSpec, RichProgress, run_pipeline
    from scopeflow.pipelines import get_pipeline

    pipe = get_pipeline(name)
    cfg = load_config(pipe.config_model, data / "config.yaml")
    outcome = run_pipeline(
        pipe,
        cfg,
        data / "run",
        cluster=ClusterSpec(workers=workers),
        progress=RichProgress(err) if progress else None,
    )
    _print_outcome(outcome.summary, outcome.run_dir)
    return outcome


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning scopeflow errors into clear messages."""
    try:
        app(args=argv, standalone_mode=True)
    except ScopeflowError as exc:
        err.print(Text.assemble(("error: ", "bold red"), str(exc)), highlight=False)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/yellow]; run the same command again to resume")
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
