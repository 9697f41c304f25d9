"""Enumerations shared by every layer."""

from __future__ import annotations

from enum import StrEnum


class UnitState(StrEnum):
    """State of one unit of work in ``events.jsonl``."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class RunStatus(StrEnum):
    """Overall status of a pipeline run in ``summary.json``."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ClusterKind(StrEnum):
    """Where the Dask workers of a run come from."""

    LOCAL = "local"
    SLURM = "slurm"
    PBS = "pbs"
    SGE = "sge"
    LSF = "lsf"
    MPI = "mpi"
