"""The worker loads the owners of the jobs it goes through with the jobs: no query per owner.

A job's folder is ``jobs/OWNER/JOB_ID`` (``JobFiles.of_job``), so every job the worker handles
needs its owner's name. The claimed jobs (``db.claim_jobs``) and the swept ones come with their
owners (``joinedload``); a lazy load per job would make a round of N jobs N + 1 queries.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from scopeflow.service.db import Job, make_engine, session_factory, set_state
from scopeflow.service.jobfiles import JobFiles
from scopeflow.service.schedulers import JobSpec, Scheduler, SchedulerState, SchedulerStatus
from scopeflow.service.settings import ServiceSettings
from scopeflow.service.states import JobState
from scopeflow.service.worker import Worker
from tests.conftest import add_job, add_user, migrated_settings

_OWNER_LOAD = re.compile(r"\bFROM users\s+WHERE", re.IGNORECASE)


class _Stub(Scheduler):
    """Accepts every job and says ``state`` of each."""

    name = "stub"

    def __init__(self) -> None:
        self.submitted: list[Path] = []
        self.state = SchedulerState.RUNNING

    def submit(self, spec: JobSpec) -> str:
        self.submitted.append(spec.job_dir)
        return str(len(self.submitted))

    def status(self, scheduler_id: str, job_dir: Path) -> SchedulerStatus:
        return SchedulerStatus(self.state, None, "stub")

    def cancel(self, scheduler_id: str, job_dir: Path) -> None:
        JobFiles(job_dir).request_cancel()


@pytest.fixture
def settings(tmp_path: Path) -> ServiceSettings:
    return migrated_settings(tmp_path / "data")


def _queued_jobs_of_different_owners(settings: ServiceSettings, n: int) -> list[str]:
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            ids = []
            for i in range(n):
                owner = add_user(session, f"user{i}")
                job = add_job(session, owner, jobs_dir=settings.jobs_dir, params={"units": 1})
                set_state(session, job, JobState.READY)
                set_state(session, job, JobState.QUEUED)
                ids.append(job.id)
            session.commit()
            return ids
    finally:
        engine.dispose()


def _cancel_all(settings: ServiceSettings) -> None:
    """The API cancels every job (they keep the worker's claim)."""
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            for job in session.scalars(select(Job)):
                set_state(session, job, JobState.CANCELLED)
            session.commit()
    finally:
        engine.dispose()


@pytest.fixture
def owner_loads() -> Iterator[Any]:
    """``count(worker)``: a list that collects the worker's queries of one owner each."""
    listeners: list[tuple[Any, Any]] = []

    def count(worker: Worker) -> list[str]:
        seen: list[str] = []

        def listen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if _OWNER_LOAD.search(statement):
                seen.append(statement)

        event.listen(worker._engine, "before_cursor_execute", listen)
        listeners.append((worker._engine, listen))
        return seen

    yield count
    for engine, listen in listeners:
        event.remove(engine, "before_cursor_execute", listen)


def test_claimed_and_swept_jobs_come_with_their_owners(
    settings: ServiceSettings, owner_loads: Any
) -> None:
    job_ids = _queued_jobs_of_different_owners(settings, 4)
    stub = _Stub()
    with Worker(settings, worker_id="w", scheduler=stub) as worker:
        loads = owner_loads(worker)
        worker.tick()  # claims and submits the 4 jobs, then polls them
        assert len(stub.submitted) == 4
        assert [p.parent.name for p in stub.submitted] == [f"user{i}" for i in range(4)]
        assert [p.name for p in stub.submitted] == job_ids
        assert loads == []
        _cancel_all(settings)
        worker.tick()  # the sweep: each job's folder for its status and cancel
        assert {p.name for p in stub.submitted} == {
            p.parent.parent.name for p in settings.jobs_dir.glob("*/*/scheduler/cancel")
        }
        stub.state = SchedulerState.CANCELLED
        worker.tick()  # released
        assert loads == []
