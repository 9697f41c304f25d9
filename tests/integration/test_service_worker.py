"""The job worker against real processes: the local adapter, a real Slurm, SQLite and PostgreSQL.

Jobs are made directly with the database functions (as the API makes them: ``add_user`` and
``add_job`` of tests/conftest.py) and moved to ``queued``; the worker then runs the ``toy``
template (no input files, seconds per job) through the scheduler adapter and the real
``scopeflow run``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from scopeflow.service.auth import find_user
from scopeflow.service.db import Job, claim_jobs, make_engine, session_factory, set_state
from scopeflow.service.jobfiles import JobFiles
from scopeflow.service.schedulers import (
    LocalScheduler,
    SchedulerState,
    SchedulerStatus,
)
from scopeflow.service.settings import ServiceSettings
from scopeflow.service.states import JobState
from scopeflow.service.worker import Worker, WorkerProcess
from scopeflow.testing import Server
from tests.conftest import (
    add_job,
    add_user,
    cli_env,
    migrated_settings,
    scopeflow_cmd,
)

FINAL = {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}


@dataclass
class Service:
    """A service's settings and a session factory on its migrated database."""

    settings: ServiceSettings
    engine: Engine
    sessions: sessionmaker[Session]

    def add_job(
        self,
        params: dict[str, Any] | None = None,
        *,
        template: str = "toy",
        name: str = "toy-job",
        user: str = "alice",
    ) -> str:
        """A job created, made ready and queued, as the API does it; returns its id."""
        with self.sessions() as session:
            owner = find_user(session, user) or add_user(session, user, group="imaging")
            job = add_job(
                session,
                owner,
                jobs_dir=self.settings.jobs_dir,
                name=name,
                template=template,
                params=params,
            )
            set_state(session, job, JobState.READY)
            set_state(session, job, JobState.QUEUED)
            job_id = job.id
            session.commit()
        return job_id

    def job(self, job_id: str) -> Job:
        with self.sessions() as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job

    def files(self, job_id: str) -> JobFiles:
        with self.sessions() as session:
            job = session.get(Job, job_id)
            assert job is not None
            return JobFiles.of_job(self.settings.jobs_dir, job)

    def set_state(self, job_id: str, state: JobState, **fields: Any) -> None:
        with self.sessions() as session:
            job = session.get(Job, job_id)
            assert job is not None
            set_state(session, job, state, **fields)
            session.commit()

    def wait(
        self,
        job_id: str,
        states: set[JobState],
        *,
        tick: Callable[[], object] | None = None,
        timeout: float = 90.0,
    ) -> tuple[Job, list[JobState]]:
        """Run ``tick`` (a worker round) until the job is in one of ``states``; the states seen."""
        seen: list[JobState] = []
        deadline = time.monotonic() + timeout
        while True:
            if tick is not None:
                tick()
            job = self.job(job_id)
            if not seen or seen[-1] != job.state:
                seen.append(job.state)
            if job.state in states:
                return job, seen
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job.state} after {timeout} s: {seen}")
            time.sleep(0.2)


def _service(tmp_path: Path, db_url: str | None, **settings: Any) -> Iterator[Service]:
    service_settings = migrated_settings(tmp_path / "data", db_url=db_url, **settings)
    engine = make_engine(service_settings.database_url)
    try:
        yield Service(service_settings, engine, session_factory(engine))
    finally:
        engine.dispose()
        _kill_leftover_jobs(service_settings.jobs_dir)


def _kill_leftover_jobs(jobs_dir: Path) -> None:
    """Stop the local jobs a failed test left running (their process groups)."""
    for path in jobs_dir.glob("*/*/scheduler/pid.json"):
        with contextlib.suppress(ValueError, KeyError, OSError, psutil.Error):
            record = json.loads(path.read_text())
            proc = psutil.Process(int(record["pid"]))
            if abs(proc.create_time() - float(record["create_time"])) < 0.01:  # not a reused pid
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def service(db_url: str, tmp_path: Path) -> Iterator[Service]:
    """A service with the example templates, on SQLite and (when configured) PostgreSQL."""
    yield from _service(tmp_path, db_url)


@pytest.fixture
def sqlite_service(tmp_path: Path) -> Iterator[Service]:
    """A service with the example templates on SQLite (for tests of processes, not databases)."""
    yield from _service(tmp_path, None)


@pytest.fixture
def worker(service: Service) -> Iterator[Worker]:
    with Worker(service.settings, poll_s=0.2) as w:
        yield w


def _events(run_dir: Path, run: int) -> dict[tuple[str, str], str]:
    """The last state of every (step, unit) in run number ``run`` of ``events.jsonl``."""
    states: dict[tuple[str, str], str] = {}
    path = run_dir / "events.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        event = json.loads(line)
        if event.get("run") == run:
            states[(event["step"], event["unit"])] = event["state"]
    return states


# -- the lifecycle ---------------------------------------------------------------------------


def test_a_toy_job_runs_to_succeeded(service: Service, worker: Worker) -> None:
    job_id = service.add_job({"units": 2, "sleep": 1.0})
    job, seen = service.wait(job_id, FINAL, tick=worker.tick)

    assert job.state is JobState.SUCCEEDED, job.error
    assert seen[-2:] == [JobState.RUNNING, JobState.SUCCEEDED]
    assert job.scheduler == "local" and job.scheduler_id
    assert job.exit_code == 0 and job.error is None
    assert job.started_at is not None and job.finished_at is not None
    assert job.started_at <= job.finished_at
    assert job.claimed_by is None and job.claimed_at is None  # a restart can claim it again
    files = service.files(job_id)
    config = files.config.read_text()
    assert "units: 2" in config and "sleep: 1.0" in config
    summary = json.loads((files.run_dir / "summary.json").read_text())
    assert summary["status"] == "succeeded"
    assert json.loads((files.run_dir / "outputs" / "total.json").read_text()) == {
        "units": 2,
        "total": 1,
    }
    record = json.loads((files.scheduler_dir / "exit.json").read_text())
    assert record["exit_code"] == 0 and not record["cancelled"]
    assert "toy: succeeded" in (files.scheduler_dir / "stdout.log").read_text()


def test_a_failing_pipeline_ends_failed_with_the_reason(service: Service, worker: Worker) -> None:
    job_id = service.add_job({"units": 3, "fail_units": ["u0001"]})
    job, _ = service.wait(job_id, FINAL, tick=worker.tick)

    assert job.state is JobState.FAILED
    assert job.exit_code == 1
    assert job.error is not None
    assert "exit 1" in job.error
    assert "1 unit failed: work[u0001]: RuntimeError: injected failure in unit u0001" in job.error
    assert "end of scheduler/stderr.log" in job.error
    assert job.claimed_by is None


def test_a_job_whose_inputs_are_missing_fails_at_submission(
    service: Service, worker: Worker
) -> None:
    job_id = service.add_job(template="example-segment", name="segment")  # nothing uploaded
    unknown = service.add_job(template="no-such-template", name="ghost")
    worker.tick()

    job = service.job(job_id)
    assert job.state is JobState.FAILED
    assert job.scheduler_id is None and job.claimed_by is None
    assert job.error is not None
    assert job.error.startswith("invalid job configuration")
    assert "input: path does not exist" in job.error
    ghost = service.job(unknown)
    assert ghost.state is JobState.FAILED
    assert ghost.error is not None and "no-such-template" in ghost.error


def test_the_cancel_marker_stops_a_running_job(service: Service, worker: Worker) -> None:
    job_id = service.add_job({"units": 2, "sleep": 60.0})
    service.wait(job_id, {JobState.RUNNING}, tick=worker.tick)
    files = service.files(job_id)
    deadline = time.monotonic() + 60
    while ("work", "u0000") not in _events(files.run_dir, 1):  # the engine is at work
        assert time.monotonic() < deadline, "the units did not start"
        time.sleep(0.2)
    files.request_cancel()  # what the API does for a submitted job
    # the wait's limit (30 s) is below the 60 s the units sleep: a cancel that does not stop
    # them times out here
    job, _ = service.wait(job_id, FINAL, tick=worker.tick, timeout=30)

    assert job.state is JobState.CANCELLED
    assert job.finished_at is not None and job.claimed_by is None
    record = json.loads((files.scheduler_dir / "exit.json").read_text())
    assert record["cancelled"] is True  # the engine stopped on SIGTERM, the wrapper recorded it
    work = {
        unit: state for (step, unit), state in _events(files.run_dir, 1).items() if step == "work"
    }
    assert "u0000" in work and "done" not in work.values(), work  # stopped, not waited out


def test_a_restarted_job_resumes_from_the_engine_checkpoints(
    service: Service, worker: Worker
) -> None:
    job_id = service.add_job({"units": 3})
    first, _ = service.wait(job_id, FINAL, tick=worker.tick)
    assert first.state is JobState.SUCCEEDED, first.error

    service.set_state(job_id, JobState.QUEUED)  # the API's restart
    restarted = service.job(job_id)
    assert restarted.scheduler_id is None and restarted.attempts == 2
    job, _ = service.wait(job_id, FINAL, tick=worker.tick)

    assert job.state is JobState.SUCCEEDED, job.error
    assert job.scheduler_id != first.scheduler_id
    run_dir = service.files(job_id).run_dir
    second = _events(run_dir, 2)
    assert second, "the second attempt wrote no events"
    assert set(second.values()) == {"skipped"}
    assert json.loads((run_dir / "summary.json").read_text())["run"] == 2


def test_a_restarted_failed_job_reruns_only_the_failed_unit(
    sqlite_service: Service,
) -> None:
    service = sqlite_service
    with Worker(service.settings) as worker:
        job_id = service.add_job({"units": 2, "fail_units": ["u0001"]})
        first, _ = service.wait(job_id, FINAL, tick=worker.tick)
        assert first.state is JobState.FAILED
        service.set_state(job_id, JobState.QUEUED)
        job, _ = service.wait(job_id, FINAL, tick=worker.tick)

    assert job.state is JobState.FAILED and job.attempts == 2
    assert job.error is not None and "work[u0001]" in job.error
    second = _events(service.files(job_id).run_dir, 2)
    assert second[("prepare", "u0000")] == "skipped"
    assert second[("work", "u0000")] == "skipped"
    assert second[("work", "u0001")] == "failed"


# -- restarts of the worker ------------------------------------------------------------------


def test_a_new_worker_finishes_the_bookkeeping_of_a_job_another_submitted(
    service: Service,
) -> None:
    job_id = service.add_job({"units": 2, "sleep": 1.5})
    with Worker(service.settings, worker_id="first") as first:
        service.wait(job_id, {JobState.RUNNING}, tick=first.tick)
    submitted = service.job(job_id)
    assert submitted.claimed_by == "first"
    exit_record = service.files(job_id).scheduler_dir / "exit.json"
    deadline = time.monotonic() + 60
    while not exit_record.exists():  # the job ends while no worker looks
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.2)

    with Worker(service.settings, worker_id="second") as second:
        job, _ = service.wait(job_id, FINAL, tick=second.tick)

    assert job.state is JobState.SUCCEEDED, job.error
    assert job.scheduler_id == submitted.scheduler_id  # re-attached, not resubmitted
    assert job.exit_code == 0 and job.claimed_by is None
    assert job.started_at is not None and job.finished_at is not None


def test_a_claim_of_a_dead_worker_is_taken_over(sqlite_service: Service) -> None:
    service = sqlite_service
    job_id = service.add_job({"units": 1})
    with service.sessions() as session:  # a worker that claimed the job and died
        claimed = claim_jobs(session, "dead", JobState.QUEUED, 1)
        assert [j.id for j in claimed] == [job_id]
    with Worker(service.settings, claim_timeout_s=300) as patient:
        assert patient.tick() == 0  # the claim is fresh: not taken
    with Worker(service.settings, claim_timeout_s=0) as worker:
        job, _ = service.wait(job_id, FINAL, tick=worker.tick)
    assert job.state is JobState.SUCCEEDED, job.error


def test_a_job_cancelled_behind_the_workers_back_is_stopped(sqlite_service: Service) -> None:
    """The API cancels a queued job it saw without a scheduler id, racing the submission."""
    service = sqlite_service
    job_id = service.add_job({"units": 1, "sleep": 60.0})
    with Worker(service.settings) as worker:
        assert worker.tick() >= 1
        submitted = service.job(job_id)
        assert submitted.scheduler_id is not None and submitted.claimed_by == worker.worker_id
        service.set_state(job_id, JobState.CANCELLED)  # the API's compare-and-set won
        # the sweep stops the scheduler job and keeps the claim until that job has ended
        for _ in range(600):
            worker.tick()
            if service.job(job_id).claimed_by is None:
                break
            time.sleep(0.1)
        job = service.job(job_id)
        assert job.state is JobState.CANCELLED and job.claimed_by is None
        status = worker.scheduler.status(str(submitted.scheduler_id), service.files(job_id).root)
        assert status.state is SchedulerState.CANCELLED


class _Flaky(LocalScheduler):
    """The local adapter, but its status queries fail ('unknown') or raise while told to."""

    def __init__(self) -> None:
        super().__init__(grace_s=5)
        self.unknown = True
        self.broken: set[str] = set()

    def status(self, scheduler_id: str, job_dir: Path) -> SchedulerStatus:
        if job_dir.name in self.broken:
            raise RuntimeError("status query exploded")
        if self.unknown:
            return SchedulerStatus(SchedulerState.UNKNOWN, None, "squeue: timed out")
        return super().status(scheduler_id, job_dir)


def test_a_submission_recorded_but_not_committed_is_not_repeated(
    sqlite_service: Service,
) -> None:
    """A worker that lost the database after submitting: the next round re-uses the job."""
    service = sqlite_service
    flaky = _Flaky()  # status 'unknown': the job stays queued
    job_id = service.add_job({"units": 1})
    with Worker(service.settings, worker_id="w", scheduler=flaky) as worker:
        assert worker.tick() == 1
        submitted = service.job(job_id)
        assert submitted.state is JobState.QUEUED and submitted.scheduler_id is not None
        with service.sessions() as session:  # as if the commit of the scheduler id was lost
            job = session.get(Job, job_id)
            assert job is not None
            job.scheduler_id = None
            session.commit()
        assert worker.tick() == 1
        assert service.job(job_id).scheduler_id == submitted.scheduler_id
        flaky.unknown = False
        job, _ = service.wait(job_id, FINAL, tick=worker.tick)
    assert job.state is JobState.SUCCEEDED, job.error
    assert job.scheduler_id == submitted.scheduler_id
    stdout = (service.files(job_id).scheduler_dir / "stdout.log").read_text()
    assert stdout.count("toy: succeeded") == 1  # one run, not two


def test_unknown_is_never_completion_and_one_broken_job_stops_no_other(
    sqlite_service: Service,
) -> None:
    service = sqlite_service
    flaky = _Flaky()
    broken = service.add_job({"units": 1}, name="broken")
    healthy = service.add_job({"units": 1}, name="healthy")
    flaky.broken.add(broken)
    with Worker(service.settings, scheduler=flaky) as worker:
        worker.tick()
        exit_record = service.files(healthy).scheduler_dir / "exit.json"
        deadline = time.monotonic() + 60
        while not exit_record.exists():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        worker.tick()
        assert service.job(healthy).state is JobState.QUEUED  # finished, but nobody could tell
        flaky.unknown = False
        job, _ = service.wait(healthy, FINAL, tick=worker.tick)
        assert job.state is JobState.SUCCEEDED, job.error
        assert service.job(broken).state is JobState.QUEUED  # its errors are only logged


# -- the worker as a process -----------------------------------------------------------------


def _worker_cmd(data: Path) -> list[str]:
    return scopeflow_cmd("worker", "--data-dir", data, "--poll", "0.2")


def _env() -> dict[str, str]:
    env = cli_env()
    for var in ("SCOPEFLOW_DATA_DIR", "SCOPEFLOW_DB_URL", "SCOPEFLOW_CONFIG"):
        env.pop(var, None)
    return env


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def test_scopeflow_worker_killed_while_a_job_runs_and_started_again(
    sqlite_service: Service, tmp_path: Path
) -> None:
    service = sqlite_service
    job_id = service.add_job({"units": 2, "sleep": 3.0})
    log = (tmp_path / "worker.log").open("wb")
    first = subprocess.Popen(_worker_cmd(service.settings.data_dir), env=_env(), stderr=log)
    try:
        running, _ = service.wait(job_id, {JobState.RUNNING}, timeout=60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert running.claimed_by is not None and str(first.pid) in running.claimed_by
    pid = int(str(running.scheduler_id))
    assert psutil.pid_exists(pid), "the job died with its worker"

    second = subprocess.Popen(_worker_cmd(service.settings.data_dir), env=_env(), stderr=log)
    try:
        job, _ = service.wait(job_id, FINAL, timeout=90)
    finally:
        code = _stop(second)
        log.close()
    logged = (tmp_path / "worker.log").read_text()
    assert job.state is JobState.SUCCEEDED, f"{job.error}\n{logged}"
    assert job.scheduler_id == running.scheduler_id and job.exit_code == 0
    assert code == 0, logged  # SIGTERM: the worker ends its round and exits cleanly
    assert "stopped" in logged


def test_worker_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    done = subprocess.run(
        _worker_cmd(tmp_path / "empty"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "scopeflow db upgrade" in done.stderr


def test_the_worker_process_is_restarted_when_it_dies_and_stopped_at_the_end(
    sqlite_service: Service,
) -> None:
    argv = _worker_cmd(sqlite_service.settings.data_dir)
    supervisor = WorkerProcess(argv, env=_env(), restart_delay_s=0.1, grace_s=20)
    with supervisor:
        first = supervisor.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while supervisor.pid in (None, first):
            assert time.monotonic() < deadline, "the worker was not restarted"
            time.sleep(0.1)
        second = supervisor.pid
        assert second is not None and supervisor.restarts == 1
        restarted = psutil.Process(second)  # this very process, even if its pid is reused later
        job_id = sqlite_service.add_job({"units": 1})
        job, _ = sqlite_service.wait(job_id, FINAL, timeout=90)
        assert job.state is JobState.SUCCEEDED, job.error
    assert supervisor.pid is None
    assert not restarted.is_running() or restarted.status() == psutil.STATUS_ZOMBIE


# -- the server --------------------------------------------------------------------------------


def test_scopeflow_server_runs_the_api_and_a_worker_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = Server(data, env=_env()).start()  # its own process group: the worker is in it
    assert srv.proc is not None
    try:
        children = psutil.Process(srv.proc.pid).children()
        workers = [c for c in children if "worker" in c.cmdline()]
        assert len(workers) == 1
        assert (data / "scopeflow.db").exists()
    finally:
        code = _stop(srv.proc)  # SIGTERM to the server's process alone, not to its group
    try:
        output = srv.log(tail=10**6)  # all of it: the address is logged first
        assert code == 0, output
        assert srv.url in output
        assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    finally:
        with contextlib.suppress(ProcessLookupError):  # a worker left behind by a failure
            os.killpg(srv.proc.pid, signal.SIGKILL)


# -- Slurm -----------------------------------------------------------------------------------


@pytest.mark.slurm
def test_a_toy_job_runs_through_slurm(slurm: Any, tmp_path: Path) -> None:
    for service in _service(tmp_path, None, scheduler="slurm"):
        with Worker(service.settings) as worker:
            assert worker.scheduler.name == "slurm"
            job_id = service.add_job({"units": 2})
            job, seen = service.wait(job_id, FINAL, tick=worker.tick, timeout=180)
        assert job.state is JobState.SUCCEEDED, job.error
        assert job.scheduler == "slurm" and str(job.scheduler_id).isdigit()
        assert JobState.SUCCEEDED in seen
        files = service.files(job_id)
        script = (files.scheduler_dir / "job.sbatch").read_text()
        assert "#SBATCH --time=00:10:00" in script and "#SBATCH --mem=1G" in script
        assert json.loads((files.run_dir / "summary.json").read_text())["status"] == "succeeded"
        assert "slurm job" in "".join(
            p.read_text() for p in (files.run_dir / "logs" / "work").glob("*.log")
        )


def test_the_worker_deletes_expired_tokens(sqlite_service: Service) -> None:
    from datetime import timedelta

    from sqlalchemy import func, select

    from scopeflow.service.auth import create_user, issue_token
    from scopeflow.service.db import Token, utcnow

    with sqlite_service.sessions() as s:
        user = create_user(s, "tokens", "pw")
        issue_token(s, user, ttl=timedelta(hours=1), now=utcnow() - timedelta(hours=2))
        issue_token(s, user, ttl=timedelta(hours=1))
        s.commit()
    with Worker(sqlite_service.settings) as worker:
        worker.tick()
    with sqlite_service.sessions() as s:
        assert s.scalar(select(func.count(Token.id))) == 1  # only the unexpired one is left
