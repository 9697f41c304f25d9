"""The worker's sweep: a job the API ended while its scheduler job still runs is stopped for good.

The API can cancel a queued job while the worker submits it (a race); the sweep then cancels
the scheduler's job. A local job that ignores SIGTERM must still end: the sweep keeps the claim
while the job runs, so later rounds ask the local adapter again, and its status SIGKILLs the job
once the grace period is over. Only then is the claim released.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy.orm import Session

from scopeflow.service.db import Job, make_engine, session_factory, set_state
from scopeflow.service.jobfiles import JobFiles
from scopeflow.service.schedulers import JobSpec, LocalScheduler
from scopeflow.service.settings import ServiceSettings
from scopeflow.service.states import JobState
from scopeflow.service.worker import Worker
from tests.conftest import add_job, add_user, migrated_settings, wait_for

_IGNORES_TERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ignoring TERM', flush=True); time.sleep(120)"
)


class _Stubborn(LocalScheduler):
    """The local adapter, running a command that ignores SIGTERM instead of the job's own."""

    def submit(self, spec: JobSpec) -> str:
        return super().submit(dataclasses.replace(spec, argv=[sys.executable, "-c", _IGNORES_TERM]))


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[ServiceSettings]:
    settings = migrated_settings(tmp_path / "data")
    yield settings
    for path in settings.jobs_dir.glob("*/*/scheduler/pid.json"):  # what a failed test left
        with contextlib.suppress(ValueError, KeyError, OSError, psutil.Error):
            record = json.loads(path.read_text())
            proc = psutil.Process(int(record["pid"]))
            if abs(proc.create_time() - float(record["create_time"])) < 0.01:
                os.killpg(proc.pid, signal.SIGKILL)


def _queued_job(settings: ServiceSettings) -> str:
    """A new job of alice, queued as the API queues it; its id."""
    with _session(settings) as session:
        owner = add_user(session, "alice", group="imaging")
        job = add_job(session, owner, jobs_dir=settings.jobs_dir, params={"units": 1})
        set_state(session, job, JobState.READY)
        set_state(session, job, JobState.QUEUED)
        session.commit()
        return job.id


def _job(settings: ServiceSettings, job_id: str, move_to: JobState | None = None) -> Job:
    """The job as the database has it (first moved to ``move_to``, as the API moves it)."""
    with _session(settings) as session:
        job = session.get(Job, job_id)
        assert job is not None
        if move_to is not None:
            set_state(session, job, move_to)
            session.commit()
        session.refresh(job)
        session.expunge(job)
        return job


@contextlib.contextmanager
def _session(settings: ServiceSettings) -> Iterator[Session]:
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
    return out


def test_a_job_ignoring_sigterm_is_killed_before_the_sweep_releases_its_claim(
    settings: ServiceSettings,
) -> None:
    job_id = _queued_job(settings)
    with Worker(settings, worker_id="w", scheduler=_Stubborn(grace_s=1.0)) as worker:
        worker.tick()  # submitted
        submitted = _job(settings, job_id)
        assert submitted.scheduler_id is not None and submitted.claimed_by == "w"
        files = JobFiles.of(settings.jobs_dir, "alice", job_id)
        wrapper = psutil.Process(int(submitted.scheduler_id))
        # the wrapper has started the command, and the command has set its SIGTERM handler
        stdout = files.log("stdout")
        wait_for(
            lambda: stdout.exists() and "ignoring TERM" in stdout.read_text(), 30, "the command"
        )
        pids = [wrapper.pid, *(c.pid for c in wrapper.children(recursive=True))]
        _job(settings, job_id, move_to=JobState.CANCELLED)  # the API's cancel won the race

        worker.tick()  # the sweep sends SIGTERM: ignored
        time.sleep(0.3)
        assert _alive(pids) == pids
        assert _job(settings, job_id).claimed_by == "w"  # kept while the job runs

        deadline = time.monotonic() + 20
        while _job(settings, job_id).claimed_by is not None:
            assert time.monotonic() < deadline, f"claim still held; alive: {_alive(pids)}"
            worker.tick()
            time.sleep(0.2)
    assert _alive(pids) == []  # SIGKILLed after the grace period, then released
    assert files.cancel_marker.exists()
