"""Dask cluster backends: where the workers of a run come from.

One small :class:`ClusterBackend` per family, looked up by :class:`~scopeflow.core.ClusterKind`:

- ``local``: a :class:`distributed.LocalCluster` of worker processes sized to the machine;
- ``slurm``, ``pbs``, ``sge``, ``lsf``: dask-jobqueue; every worker is a batch job;
- ``mpi``: dask-mpi under ``mpirun``/``srun`` (rank 0 scheduler, rank 1 this driver, the rest
  workers);
- an existing scheduler by address (``--scheduler tcp://HOST:PORT``).
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import dask
import psutil
from pydantic import Field

from scopeflow.core import ClusterError, ClusterKind, UnknownNameError
from scopeflow.core import runlayout as layout
from scopeflow.core.config import StrictModel

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)


class ClusterSpec(StrictModel):
    """Where and with which resources a run's Dask workers run (``cluster:`` in config.yaml).

    Command-line options override the values of the configuration file.
    """

    kind: ClusterKind = Field(ClusterKind.LOCAL, description="local, slurm, pbs, sge, lsf or mpi")
    scheduler: str | None = Field(
        None, description="address of an existing Dask scheduler (tcp://HOST:PORT); overrides kind"
    )
    workers: int | None = Field(
        None,
        ge=1,
        description="local: worker processes (default: one per core); "
        "batch systems: number of jobs; mpi: ignored (ranks - 2)",
    )
    threads_per_worker: int = Field(1, ge=1, description="threads in each worker process")
    cores: int = Field(1, ge=1, description="batch systems: cores per job")
    processes: int = Field(1, ge=1, description="batch systems: worker processes per job")
    memory: str | None = Field(
        None, description="memory per worker (local) or per job (batch systems), e.g. '4GB'"
    )
    walltime: str = Field("01:00:00", description="batch systems: wall time per job")
    queue: str | None = Field(None, description="batch systems: partition / queue")
    account: str | None = Field(None, description="batch systems: account / project")
    job_extra: list[str] = Field(
        default_factory=list, description="batch systems: extra directives, e.g. '--qos=normal'"
    )
    interface: str | None = Field(
        None, description="network interface workers and scheduler use (e.g. 'lo', 'ib0')"
    )
    python: str | None = Field(None, description="python on the compute nodes (default: this one)")
    startup_timeout: float = Field(
        600.0, gt=0, description="seconds to wait for the first worker before giving up"
    )


class ClusterBackend(abc.ABC):
    """A way to obtain a Dask client; subclasses declare their kinds."""

    kinds: ClassVar[tuple[ClusterKind, ...]] = ()

    def __init__(self, spec: ClusterSpec, run_dir: Path, *, retries: int = 2) -> None:
        self.spec = spec
        self.run_dir = run_dir
        self.retries = retries

    @abc.abstractmethod
    @contextlib.contextmanager
    def client(self) -> Iterator[Client]:
        """Start (or join) the cluster and yield a connected client; tear down on exit."""


# Dask's statistical profiler samples every worker thread's stack every 10 ms for the
# dashboard; it costs numerical units up to 1.6x (measured, docs/benchmarks.md) and nobody
# looks at it in a batch run.
WORKER_CONFIG: dict[str, Any] = {"distributed.worker.profile.enabled": False}
# the same settings as Dask reads them from the environment (for batch-job workers)
WORKER_ENV = {
    "DASK_" + key.upper().replace(".", "__").replace("-", "_"): str(value)
    for key, value in WORKER_CONFIG.items()
}


def _dask_config(retries: int) -> dict[str, Any]:
    # the scheduler reschedules a task whose worker died at most this many times
    return {"distributed.scheduler.allowed-failures": max(retries, 0), **WORKER_CONFIG}


class LocalBackend(ClusterBackend):
    """A LocalCluster of single-threaded worker processes, one per core by default."""

    kinds = (ClusterKind.LOCAL,)

    @contextlib.contextmanager
    def client(self) -> Iterator[Client]:
        """Start a LocalCluster, yield its client, close both."""
        from distributed import Client, LocalCluster

        n = self.spec.workers or len(os.sched_getaffinity(0))
        memory: str | int = self.spec.memory or int(psutil.virtual_memory().total * 0.9 / n)
        with dask.config.set(_dask_config(self.retries)):
            cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=self.spec.threads_per_worker,
                processes=True,
                memory_limit=memory,
                dashboard_address=None,
                host=None if self.spec.interface else "127.0.0.1",
                interface=self.spec.interface,
                silence_logs=logging.CRITICAL,
            )
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()


class JobqueueBackend(ClusterBackend):
    """Workers as batch jobs through dask-jobqueue (Slurm, PBS, SGE, LSF)."""

    kinds = (ClusterKind.SLURM, ClusterKind.PBS, ClusterKind.SGE, ClusterKind.LSF)

    def cluster_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the dask-jobqueue cluster class."""
        spec = self.spec
        walltime = spec.walltime
        if spec.kind is ClusterKind.LSF and walltime.count(":") == 2:
            walltime = walltime.rsplit(":", 1)[0]  # bsub -W takes [hours:]minutes
        kwargs: dict[str, Any] = {
            "cores": spec.cores,
            "processes": spec.processes,
            "memory": spec.memory or "2GB",
            "walltime": walltime,
            "python": spec.python or sys.executable,
            "log_directory": str(self.run_dir / layout.LOGS / "_cluster"),
            "job_extra_directives": list(spec.job_extra),
            "job_name": "scopeflow-worker",
            "job_script_prologue": [f"export {k}={v}" for k, v in WORKER_ENV.items()],
        }
        if spec.queue:
            kwargs["queue"] = spec.queue
        if spec.account:
            # Slurm and PBS call it an account; SGE and LSF a project
            key = "account" if spec.kind in (ClusterKind.SLURM, ClusterKind.PBS) else "project"
            kwargs[key] = spec.account
        if spec.interface:
            kwargs["interface"] = spec.interface
        return kwargs

    @contextlib.contextmanager
    def client(self) -> Iterator[Client]:
        """Submit the worker jobs, wait for the first worker, yield the client, cancel the jobs."""
        import dask_jobqueue
        from distributed import Client

        classes = {
            ClusterKind.SLURM: dask_jobqueue.SLURMCluster,
            ClusterKind.PBS: dask_jobqueue.PBSCluster,
            ClusterKind.SGE: dask_jobqueue.SGECluster,
            ClusterKind.LSF: dask_jobqueue.LSFCluster,
        }
        (self.run_dir / layout.LOGS / "_cluster").mkdir(parents=True, exist_ok=True)
        with dask.config.set(_dask_config(self.retries)):
            try:
                cluster = classes[self.spec.kind](**self.cluster_kwargs())
            except Exception as exc:
                raise ClusterError(f"could not set up a {self.spec.kind} cluster: {exc}") from exc
        try:
            log.info("job script:\n%s", cluster.job_script())
            cluster.scale(jobs=self.spec.workers or 1)
            with Client(cluster) as client:
                _wait_for_first_worker(client, self.spec.startup_timeout, str(self.spec.kind))
                yield client
        finally:
            cluster.close()


class MPIBackend(ClusterBackend):
    """dask-mpi: this process is rank 1 of an ``mpirun``; rank 0 schedules, the rest work."""

    kinds = (ClusterKind.MPI,)

    @contextlib.contextmanager
    def client(self) -> Iterator[Client]:
        """Join the MPI ranks' cluster (starting it if the CLI has not), yield the client."""
        from distributed import Client

        start_mpi_cluster(self.spec)
        with Client() as client:
            _wait_for_first_worker(client, self.spec.startup_timeout, "mpi")
            yield client


_MPI_STARTED = False


def start_mpi_cluster(spec: ClusterSpec) -> None:
    """Turn the ranks of this MPI job into a Dask cluster (dask-mpi); once per process.

    Ranks other than 1 become the scheduler (0) or workers and never return from this call;
    they exit when the client rank closes the cluster. Must be called before any other Dask
    client is created, and before the run directory is touched (only rank 1 may do that).
    """
    global _MPI_STARTED  # noqa: PLW0603 - dask-mpi's initialize() must run once per process
    if _MPI_STARTED:
        return
    try:
        from dask_mpi import initialize
    except ImportError as exc:
        raise ClusterError(
            f"--cluster mpi needs the 'mpi' extra (dask-mpi and mpi4py) and an MPI library: {exc}"
        ) from None
    dask.config.set(WORKER_CONFIG)  # this process may become a worker
    initialize(
        interface=spec.interface,
        nthreads=spec.threads_per_worker,
        memory_limit=spec.memory or "auto",
        dashboard=False,
        dashboard_address=":0",  # never collide with a dashboard already on :8787
        exit=True,
    )
    _MPI_STARTED = True


class AddressBackend(ClusterBackend):
    """An existing scheduler, given by its address; the cluster is not ours to stop."""

    @contextlib.contextmanager
    def client(self) -> Iterator[Client]:
        """Connect to the scheduler at ``spec.scheduler``; leave the cluster running."""
        from distributed import Client

        assert self.spec.scheduler is not None
        try:
            client = Client(self.spec.scheduler, timeout=min(30.0, self.spec.startup_timeout))
        except OSError as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {self.spec.scheduler}: {exc}"
            ) from None
        with client:
            yield client


def _wait_for_first_worker(client: Client, timeout: float, what: str) -> None:
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise ClusterError(
            f"no {what} worker started within {timeout:.0f} s; check the queue and the job "
            "logs in logs/_cluster/"
        ) from None


BACKENDS: dict[ClusterKind, type[ClusterBackend]] = {
    kind: cls for cls in (LocalBackend, JobqueueBackend, MPIBackend) for kind in cls.kinds
}


def backend_for(spec: ClusterSpec, run_dir: Path, *, retries: int = 2) -> ClusterBackend:
    """The backend that provides the workers described by ``spec``."""
    if spec.scheduler:
        return AddressBackend(spec, run_dir, retries=retries)
    try:
        cls = BACKENDS[ClusterKind(spec.kind)]
    except (KeyError, ValueError):
        raise UnknownNameError("cluster kind", str(spec.kind), [str(k) for k in BACKENDS]) from None
    return cls(spec, run_dir, retries=retries)
