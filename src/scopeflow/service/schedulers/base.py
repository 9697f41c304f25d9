"""The scheduler interface, the job description it takes and the state it reports.

A job's files live under its *scheduler directory* (``JobSpec.job_dir / "scheduler"``; the
names are :class:`~scopeflow.service.jobfiles.JobFiles`'s):

``exit.json``
    Written atomically by :mod:`~scopeflow.service.schedulers.wrapper` when the command ends:
    ``exit_code`` (negative: killed by that signal), ``started``, ``finished`` (UTC ISO),
    ``cancelled``.
``stdout.log``, ``stderr.log``
    The command's output (the service serves them as the scheduler's logs).
``cancel``
    Present once a cancel was asked for. The wrapper copies it into the record's ``cancelled``
    when the command ends; a marker that appears later (a cancel racing a job that had already
    ended) changes nothing, except for a command that died of a signal.

Jobs never inherit the service's secrets (:data:`SECRET_ENV`, e.g. the database URL with its
password): adapters start them with :func:`job_environment`.

Adapters keep no job state in memory (the ``slurm`` adapter only reuses the controller's
answers for a few seconds): a worker that restarts re-attaches to a job from its scheduler id
and directory alone.

The worker asks for the state of all its active jobs at once (:meth:`Scheduler.statuses`): the
base class asks :meth:`Scheduler.status` job by job; the ``slurm`` adapter answers with one
``squeue`` (and one ``sacct`` for the jobs ``squeue`` no longer lists) per call.
"""

from __future__ import annotations

import json
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from scopeflow.service.jobfiles import JobFiles

__all__ = [
    "SECRET_ENV",
    "JobSpec",
    "Scheduler",
    "SchedulerState",
    "SchedulerStatus",
    "is_secret_env",
    "job_environment",
    "read_exit_record",
    "status_from_exit_record",
]


SECRET_ENV: tuple[str, ...] = ("SCOPEFLOW_DB",)
"""Prefixes of the service's environment variables a job must never see (``SCOPEFLOW_DB_URL``
holds the database password); :func:`job_environment` leaves them out."""


def is_secret_env(name: str) -> bool:
    """Whether the environment variable ``name`` is one of :data:`SECRET_ENV`."""
    return name.upper().startswith(SECRET_ENV)


def job_environment(
    extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment a job (or ``sbatch``, which exports it to the job) runs with.

    Parameters
    ----------
    extra
        Variables of the job (:attr:`JobSpec.env`), set on top.
    base
        The environment to start from; default :data:`os.environ`. Its :data:`SECRET_ENV`
        variables are left out.
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if not is_secret_env(k)}
    env.update(extra or {})
    return env


class SchedulerState(StrEnum):
    """What a scheduler says about a job."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"
    """The scheduler could not be asked (a failed query): ask again later, never completion."""


@dataclass(frozen=True)
class SchedulerStatus:
    """A job's state, its exit code once known, and a human-readable detail."""

    state: SchedulerState
    exit_code: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class JobSpec:
    """What to run: built by the service from a command template, never from user text.

    Attributes
    ----------
    name
        A label for the scheduler (sanitised by the adapter before use).
    argv
        The command as a list; no element is ever interpreted by a shell.
    job_dir
        The job's directory; the scheduler files go to ``job_dir / "scheduler"``.
    cwd
        Working directory of the command (default ``job_dir``).
    resources
        ``cores``, ``memory`` (e.g. ``"16G"``), ``walltime`` (``"HH:MM:SS"``), ``partition``,
        ``gpus``: what the template asks for (Slurm uses them; local ignores them).
    account
        Slurm ``account``, ``partition``, ``qos`` of the user (from the service settings).
    env
        Extra environment variables for the command.
    """

    name: str
    argv: list[str]
    job_dir: Path
    cwd: Path | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    account: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


class Scheduler(ABC):
    """What the worker needs from a scheduler adapter (adapters subclass it)."""

    name: str
    python: str = sys.executable
    """The interpreter that runs the wrapper and ``scopeflow run`` where the jobs run (the
    adapters take it as an option; default: this one)."""

    @abstractmethod
    def submit(self, spec: JobSpec) -> str:
        """Start (or queue) the job; return the scheduler's id for it."""

    @abstractmethod
    def status(self, scheduler_id: str, job_dir: Path) -> SchedulerStatus:
        """The job's state (re-attaching from the id and directory alone)."""

    def statuses(self, jobs: Sequence[tuple[str, Path]]) -> list[SchedulerStatus]:
        """The states of several jobs, in the order of ``jobs``.

        Parameters
        ----------
        jobs
            ``(scheduler_id, job_dir)`` of each job.

        Returns
        -------
        list of SchedulerStatus
            What :meth:`status` says of each. This default asks :meth:`status` job by job (an
            exception of one ends the call); an adapter whose scheduler can answer for many
            jobs at once (``slurm``) overrides it with one query per call.
        """
        return [self.status(scheduler_id, job_dir) for scheduler_id, job_dir in jobs]

    @abstractmethod
    def cancel(self, scheduler_id: str, job_dir: Path) -> None:
        """Ask for the job to stop; its status becomes ``cancelled`` once it has."""


def read_exit_record(job_dir: Path) -> dict[str, Any] | None:
    """The wrapper's exit record, or None while there is none (or it is unreadable)."""
    path = JobFiles(Path(job_dir)).exit_record
    try:
        record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return record


def status_from_exit_record(job_dir: Path) -> SchedulerStatus | None:
    """The final status the exit record gives, or None without one."""
    record = read_exit_record(job_dir)
    if record is None:
        return None
    code = int(record.get("exit_code", -1))
    # The record's own flag says whether a cancel came before the command ended. A marker made
    # later (a cancel racing the end) only counts for a command that a signal killed.
    signalled = code < 0 or code > 128
    if record.get("cancelled") is True or (
        signalled and JobFiles(Path(job_dir)).cancel_marker.exists()
    ):
        return SchedulerStatus(SchedulerState.CANCELLED, code, "cancelled")
    if code == 0:
        return SchedulerStatus(SchedulerState.SUCCEEDED, 0, "exit 0")
    what = f"killed by signal {-code}" if code < 0 else f"exit {code}"
    return SchedulerStatus(SchedulerState.FAILED, code, what)
