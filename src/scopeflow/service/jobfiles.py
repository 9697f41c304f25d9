"""Where a job's files are: one directory per job, shared by the API and the worker.

::

    DATA/jobs/OWNER/JOB_ID/
      input/            the user's uploaded files (paths relative to it; see service.files)
      .uploads/         unfinished uploads (service.files.UploadStore)
      .input.lock       held while the input changes or is checked for a start (input_lock)
      config.yaml       the pipeline configuration built from the template (worker, at start)
      run/              the engine's run directory (events.jsonl, logs/, outputs/, summary.json)
      scheduler/        the scheduler adapter's files:
        stdout.log, stderr.log   the command's output
        exit.json                the wrapper's exit record (schedulers.base)
        cancel                   present once a cancel was asked for
        pid.json                 the local adapter's process record
        submission.json          the worker's record of this attempt's submission

A cancel is asked for by creating ``scheduler/cancel`` (the API may do that; only the worker
talks to the scheduler, which then stops the job).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from scopeflow.service.files import UPLOADS_DIR, file_lock
from scopeflow.service.uploads import UploadStore

if TYPE_CHECKING:
    from scopeflow.service.db import Job

__all__ = ["WRAPPER_MODULE", "JobFiles"]

#: The module that runs a job's command and writes its exit record.
WRAPPER_MODULE = "scopeflow.service.schedulers.wrapper"


@dataclass(frozen=True)
class JobFiles:
    """The paths of one job (nothing is created until :meth:`create`)."""

    root: Path

    @classmethod
    def of(cls, jobs_dir: Path, owner: str, job_id: str) -> JobFiles:
        """The job ``job_id`` of user ``owner`` under the service's ``jobs_dir``."""
        return cls(Path(jobs_dir) / owner / job_id)

    @classmethod
    def of_job(cls, jobs_dir: Path, job: Job) -> JobFiles:
        """The folder of ``job`` under the service's ``jobs_dir``.

        It reads ``job.owner``: load the owners with the jobs (``joinedload(Job.owner)``) when
        going through many jobs.
        """
        return cls.of(jobs_dir, job.owner.name, job.id)

    @property
    def input_dir(self) -> Path:
        """The uploaded input files."""
        return self.root / "input"

    @property
    def uploads_dir(self) -> Path:
        """State of unfinished uploads."""
        return self.root / UPLOADS_DIR

    def upload_store(self) -> UploadStore:
        """The job's uploads: finished files in :attr:`input_dir`, state in :attr:`uploads_dir`."""
        return UploadStore(self.input_dir, state_dir=self.uploads_dir)

    @contextlib.contextmanager
    def input_lock(self) -> Iterator[None]:
        """Hold the job's input lock (an exclusive ``flock`` on ``.input.lock``).

        Whatever changes the input (declaring, finishing or discarding an upload, deleting an
        input file, demo data) and the start's check that the input is complete hold it, each
        re-reading the job's state under it: a start then never queues a job whose input is
        changing, and each change's new state is computed after the one before it.

        Raises
        ------
        FileNotFoundError
            The job's folder is gone (the job was deleted).
        """
        if not self.root.is_dir():
            raise FileNotFoundError(f"job folder {self.root} is gone")
        with file_lock(self.root / ".input.lock"):
            yield

    @property
    def config(self) -> Path:
        """The pipeline configuration of the run."""
        return self.root / "config.yaml"

    @property
    def run_dir(self) -> Path:
        """The engine's run directory."""
        return self.root / "run"

    @property
    def scheduler_dir(self) -> Path:
        """The scheduler adapter's files."""
        return self.root / "scheduler"

    @property
    def cancel_marker(self) -> Path:
        """Exists once a cancel was asked for."""
        return self.scheduler_dir / "cancel"

    @property
    def exit_record(self) -> Path:
        """The wrapper's exit record (``schedulers.base.read_exit_record``)."""
        return self.scheduler_dir / "exit.json"

    @property
    def pid_record(self) -> Path:
        """The local adapter's record of the wrapper process."""
        return self.scheduler_dir / "pid.json"

    @property
    def submission_record(self) -> Path:
        """The worker's record of the current attempt's submission."""
        return self.scheduler_dir / "submission.json"

    def log(self, stream: str) -> Path:
        """The command's ``stdout`` or ``stderr``."""
        if stream not in ("stdout", "stderr"):
            raise ValueError(f"no scheduler log {stream!r}: expected 'stdout' or 'stderr'")
        return self.scheduler_dir / f"{stream}.log"

    def clear_attempt(self, *, pid: bool = False) -> None:
        """Remove a previous attempt's exit record and cancel marker (and process record)."""
        self.scheduler_dir.mkdir(parents=True, exist_ok=True)
        for path in (self.exit_record, self.cancel_marker, *([self.pid_record] if pid else [])):
            path.unlink(missing_ok=True)

    def wrapper_argv(self, python: str, argv: list[str]) -> list[str]:
        """The command that runs ``argv`` under the exit-record wrapper (no shell)."""
        return [python, "-m", WRAPPER_MODULE, str(self.root), "--", *argv]

    def create(self) -> JobFiles:
        """Make the job's folders (idempotent)."""
        for d in (self.input_dir, self.run_dir, self.scheduler_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self

    def request_cancel(self) -> None:
        """Ask the worker to stop the job (the marker's time is that of the first request)."""
        self.scheduler_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            self.cancel_marker.touch(exist_ok=False)
