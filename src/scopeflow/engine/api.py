"""Entry point of the engine: run a pipeline on a run directory with a cluster backend."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from scopeflow.core import RunStatus, atomic_write_json
from scopeflow.engine.clusters import ClusterSpec, backend_for
from scopeflow.engine.dag import Pipeline
from scopeflow.engine.events import EventLog
from scopeflow.engine.progress import ProgressSink
from scopeflow.engine.rundir import RunDir
from scopeflow.engine.runner import RunOutcome, _Driver, summarize

if TYPE_CHECKING:
    from distributed import Client

DEFAULT_RETRIES = 2


def run_pipeline(
    pipeline: Pipeline,
    config: BaseModel,
    workdir: str | Path,
    *,
    cluster: ClusterSpec | None = None,
    client: Client | None = None,
    retries: int = DEFAULT_RETRIES,
    progress: ProgressSink | None = None,
) -> RunOutcome:
    """Run ``pipeline`` with ``config`` on the run directory ``workdir``.

    Re-running on the same directory resumes: units with a completion record are skipped.

    Parameters
    ----------
    pipeline
        The pipeline to run.
    config
        Its validated configuration (an instance of ``pipeline.config_model``).
    workdir
        The run directory (created when missing).
    cluster
        Where the workers come from; a LocalCluster sized to the machine by default.
    client
        An already connected Dask client to use instead of starting a cluster.
    retries
        How many times a failing unit is tried again (steps may override).
    progress
        Receives unit state changes (e.g. :class:`~scopeflow.engine.progress.RichProgress`).

    Returns
    -------
    RunOutcome
        Status, summary and failures. A run with failed units returns (it does not raise):
        the caller decides the exit code.
    """
    rundir = RunDir(workdir)
    cluster = cluster or ClusterSpec()
    info = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "cluster": cluster.model_dump(mode="json", exclude_defaults=True),
    }
    with rundir.lock():
        run_no = rundir.prepare(pipeline.name, config.model_dump(mode="json"), run_info=info)
        t0 = time.perf_counter()
        with EventLog(rundir.events_path, run=run_no) as events:
            driver = _Driver(pipeline, config, rundir, events, retries=retries, progress=progress)
            status = RunStatus.FAILED

            def write_summary() -> dict[str, Any]:
                summary = summarize(
                    pipeline,
                    rundir,
                    driver,
                    status=status,
                    wall_s=time.perf_counter() - t0,
                    run=run_no,
                )
                atomic_write_json(rundir.summary_path, summary)
                return summary

            try:
                with _client(client, cluster, rundir, retries) as dask_client:
                    try:
                        driver.run(dask_client)
                    except KeyboardInterrupt:
                        # closing the cluster can take longer than a cancel's grace period
                        # before SIGKILL: close the units and write the summary first
                        status = RunStatus.CANCELLED
                        driver.cancel()
                        write_summary()
                        raise
                status = RunStatus.FAILED if driver.failed else RunStatus.SUCCEEDED
            except KeyboardInterrupt:
                status = RunStatus.CANCELLED
                driver.cancel()
                raise
            finally:
                summary = write_summary()
    failed = [(n.step, n.unit, e) for n, e in driver.failed.items()]
    return RunOutcome(status=status, run_dir=rundir.path, summary=summary, failed=failed)


@contextlib.contextmanager
def _client(
    client: Client | None, cluster: ClusterSpec, rundir: RunDir, retries: int
) -> Iterator[Client]:
    if client is not None:
        yield client
        return
    with backend_for(cluster, rundir.path, retries=retries).client() as new_client:
        yield new_client


def load_summary(workdir: str | Path) -> dict[str, Any]:
    """Read ``summary.json`` of a run directory."""
    import json

    return dict(json.loads(RunDir(workdir).summary_path.read_text(encoding="utf-8")))
