"""The worker's submission side: the template registry, a job's command, the submission record.

:func:`job_spec` turns a job into what a scheduler adapter runs: the configuration built from
the job's template and parameters is written to ``config.yaml`` and the command is an argv
list naming it (user input reaches the job only as data in that file). The worker writes
``scheduler/submission.json`` (:func:`write_submission`) right after the scheduler accepted a
job and before the database knows its scheduler id, so that a worker which loses its database
connection in between does not submit the same attempt twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

import yaml

from scopeflow.core.fileio import atomic_write_json, atomic_write_text
from scopeflow.service.db import Job
from scopeflow.service.jobfiles import JobFiles
from scopeflow.service.schedulers import JobSpec
from scopeflow.service.settings import ServiceSettings
from scopeflow.service.templates import TemplateRegistry, build_argv

__all__ = [
    "Submission",
    "job_spec",
    "read_submission",
    "stderr_size",
    "write_submission",
]

log = logging.getLogger("scopeflow.service.worker")


def job_spec(
    settings: ServiceSettings,
    job: Job,
    files: JobFiles,
    registry: TemplateRegistry,
    python: str,
) -> JobSpec:
    """Write the job's ``config.yaml`` and return what the scheduler runs.

    Parameters
    ----------
    settings
        The service settings (the owner's cluster account mapping).
    job
        The job (its template, parameters, name and owner).
    files
        The job's files.
    registry
        The command templates.
    python
        The interpreter that runs ``scopeflow run`` where the job runs.

    Raises
    ------
    UnknownNameError
        The job's template is not in the registry (any more).
    ConfigError
        The configuration is not valid (e.g. an input file is missing).
    """
    template = registry.get(job.template)
    config = template.build_config(job.params or {}, files.input_dir)
    files.create()
    atomic_write_text(files.config, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    mapping = settings.account_for(job.owner.name, job.owner.group)
    account = mapping.model_dump(exclude_none=True) if mapping is not None else {}
    argv = build_argv(template, files.config, files.run_dir, python, account=account.get("account"))
    return JobSpec(
        name=f"{job.name}-{job.id[:8]}",
        argv=argv,
        job_dir=files.root,
        resources=template.resources.model_dump(exclude_none=True),
        account=account,
    )


@dataclass(frozen=True)
class Submission:
    """One attempt handed to a scheduler: which attempt, where, and when.

    Attributes
    ----------
    job_id, attempt
        The job and its attempt number (``Job.attempts`` when it was submitted).
    scheduler, scheduler_id
        The adapter's name and its id for the job.
    submitted
        Time of the submission (seconds since the epoch).
    stderr_offset
        Size of ``scheduler/stderr.log`` before this attempt (it is appended to).
    """

    job_id: str
    attempt: int
    scheduler: str
    scheduler_id: str
    submitted: float
    stderr_offset: int


def stderr_size(files: JobFiles) -> int:
    """Current size of the scheduler's ``stderr.log`` (0 when there is none)."""
    try:
        return files.log("stderr").stat().st_size
    except FileNotFoundError:
        return 0


def write_submission(files: JobFiles, submission: Submission) -> None:
    """Record a submission atomically in ``scheduler/submission.json``."""
    atomic_write_json(files.submission_record, asdict(submission))


def read_submission(files: JobFiles, job: Job) -> Submission | None:
    """The recorded submission of ``job``'s current attempt, or None (none, or an older one)."""
    try:
        data: dict[str, Any] = json.loads(files.submission_record.read_text(encoding="utf-8"))
        record = Submission(
            job_id=str(data["job_id"]),
            attempt=int(data["attempt"]),
            scheduler=str(data["scheduler"]),
            scheduler_id=str(data["scheduler_id"]),
            submitted=float(data["submitted"]),
            stderr_offset=int(data["stderr_offset"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if record.job_id != job.id or record.attempt != job.attempts:
        return None
    return record
