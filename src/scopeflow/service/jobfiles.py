"""Where a job's files are: one directory per job, shared by the API and the worker.

::

    DATA/jobs/OWNER/JOB_ID/
      input/            the user's uploaded files (paths relative to it; see service.files)
      .uploads/         unfinished uploads (service.files.UploadStore)
      config.yaml       the pipeline configuration built from the template (worker, at start)
      run/              the engine's run directory (events.jsonl, logs/, outputs/, summary.json)
      scheduler/        the scheduler adapter's files (stdout.log, stderr.log, exit.json, …)

A cancel is asked for by creating ``scheduler/cancel`` (the API may do that; only the worker
talks to the scheduler, which then stops the job).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["JobFiles"]


@dataclass(frozen=True)
class JobFiles:
    """The paths of one job (nothing is created until :meth:`create`)."""

    root: Path

    @classmethod
    def of(cls, jobs_dir: Path, owner: str, job_id: str) -> JobFiles:
        """The job ``job_id`` of user ``owner`` under the service's ``jobs_dir``."""
        return cls(Path(jobs_dir) / owner / job_id)

    @property
    def input_dir(self) -> Path:
        """The uploaded input files."""
        return self.root / "input"

    @property
    def uploads_dir(self) -> Path:
        """State of unfinished uploads."""
        return self.root / ".uploads"

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

    def create(self) -> JobFiles:
        """Make the job's folders (idempotent)."""
        for d in (self.input_dir, self.run_dir, self.scheduler_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self

    def request_cancel(self) -> None:
        """Ask the worker to stop the job."""
        self.scheduler_dir.mkdir(parents=True, exist_ok=True)
        self.cancel_marker.touch()
