"""The adapters a worker uses: :func:`make_scheduler`'s, with the adapters' own defaults."""

from __future__ import annotations

import sys
from pathlib import Path

from scopeflow.service.db import make_engine, session_factory, set_state
from scopeflow.service.schedulers import (
    JobSpec,
    LocalScheduler,
    Scheduler,
    SchedulerState,
    SchedulerStatus,
    SlurmScheduler,
    make_scheduler,
)
from scopeflow.service.settings import ServiceSettings
from scopeflow.service.states import JobState
from scopeflow.service.worker import Worker
from tests.conftest import add_job, add_user, migrated_settings


def _settings(tmp_path: Path, scheduler: str) -> ServiceSettings:
    return migrated_settings(tmp_path / scheduler, scheduler=scheduler)


def test_the_local_cancel_grace_has_one_default(tmp_path: Path) -> None:
    """The worker's local adapter waits as long as any other between SIGTERM and SIGKILL."""
    with Worker(_settings(tmp_path, "local")) as worker:
        adapter = worker.scheduler
        assert isinstance(adapter, LocalScheduler)
        assert adapter.grace_s == LocalScheduler().grace_s == 5.0
        assert worker._scheduler_for("slurm").name == "slurm"  # a job submitted elsewhere
    local = make_scheduler("local")
    assert isinstance(local, LocalScheduler) and local.grace_s == adapter.grace_s
    with Worker(_settings(tmp_path, "slurm")) as worker:
        assert isinstance(worker.scheduler, SlurmScheduler)
        other = worker._scheduler_for("local")  # a job submitted to the local adapter
        assert isinstance(other, LocalScheduler) and other.grace_s == LocalScheduler().grace_s


class _Stub(Scheduler):
    """An adapter without a ``python`` of its own; records what it is asked to run."""

    name = "stub"

    def __init__(self) -> None:
        self.specs: list[JobSpec] = []

    def submit(self, spec: JobSpec) -> str:
        self.specs.append(spec)
        return "1"

    def status(self, scheduler_id: str, job_dir: Path) -> SchedulerStatus:
        return SchedulerStatus(SchedulerState.PENDING)

    def cancel(self, scheduler_id: str, job_dir: Path) -> None:
        raise AssertionError("not used")


def test_the_job_runs_with_the_adapters_python(tmp_path: Path) -> None:
    """``Scheduler.python`` (default: this interpreter) runs ``scopeflow run`` in the job."""
    assert _Stub().python == sys.executable
    assert LocalScheduler("/opt/py/bin/python3").python == "/opt/py/bin/python3"
    for python in (None, "/opt/py/bin/python3"):
        settings = _settings(tmp_path / str(python is None), "local")
        engine = make_engine(settings.database_url)
        with session_factory(engine)() as session:
            owner = add_user(session)
            job = add_job(session, owner, jobs_dir=settings.jobs_dir, params={"units": 1})
            set_state(session, job, JobState.READY)
            set_state(session, job, JobState.QUEUED)
            session.commit()
        engine.dispose()
        stub = _Stub()
        if python is not None:
            stub.python = python
        with Worker(settings, scheduler=stub) as worker:
            worker.tick()
        (spec,) = stub.specs
        assert spec.argv[0] == (python or sys.executable)
        assert spec.argv[1:4] == ["-m", "scopeflow", "run"]
