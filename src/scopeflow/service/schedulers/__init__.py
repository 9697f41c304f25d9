"""Scheduler adapters: run a job's argv list on this machine or through Slurm.

One small interface (:class:`~scopeflow.service.schedulers.base.Scheduler`) and two adapters:

``local`` (:class:`LocalScheduler`)
    A detached process group (a new session) that outlives the service; its state is on disk
    (pid record, exit record), so a restarted worker re-attaches by reading it.
``slurm`` (:class:`SlurmScheduler`)
    ``sbatch`` of a script rendered from the template's resources and the user's account
    mapping; ``squeue``/``sacct`` for state (one of each for all the jobs of a polling round,
    and a job at most once every ``min_status_s``), ``scancel``; the exit record written by the
    job itself is consulted first. A failed status query is reported as ``unknown``, never as
    completion.

Both run the job through :mod:`scopeflow.service.schedulers.wrapper`, which writes the exit
record atomically when the command ends.
"""

from __future__ import annotations

from typing import Any

from scopeflow.core.errors import UnknownNameError
from scopeflow.service.schedulers.base import JobSpec, Scheduler, SchedulerState, SchedulerStatus
from scopeflow.service.schedulers.local import LocalScheduler
from scopeflow.service.schedulers.slurm import SlurmScheduler

ADAPTERS: dict[str, type[LocalScheduler] | type[SlurmScheduler]] = {
    "local": LocalScheduler,
    "slurm": SlurmScheduler,
}


def make_scheduler(name: str, **options: Any) -> Scheduler:
    """The adapter called ``name`` (``local`` or ``slurm``) with its options.

    Raises
    ------
    UnknownNameError
        No such adapter.
    """
    if name not in ADAPTERS:
        raise UnknownNameError("scheduler", name, sorted(ADAPTERS))
    return ADAPTERS[name](**options)


__all__ = [
    "JobSpec",
    "LocalScheduler",
    "Scheduler",
    "SchedulerState",
    "SchedulerStatus",
    "SlurmScheduler",
    "make_scheduler",
]
