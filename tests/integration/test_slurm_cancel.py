"""Cancelling jobs through the real Slurm: pending, running, and already ended.

The adapter's cancel is one plain ``scancel ID``. A pending job leaves the queue; a running job's
batch step gets SIGTERM (then SIGKILL after ``KillWait``), which the wrapper passes on to the
command, so the command can stop cleanly and the wrapper still writes its exit record; the
batch script execs the wrapper, so the job has not ended for Slurm before that record exists. A job
that has ended has nothing left to cancel: no error (tests/unit/service/test_slurm_batch_poll.py
checks the messages of other Slurm versions with a fake ``scancel``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scopeflow.service.jobfiles import JobFiles
from scopeflow.service.schedulers import JobSpec, SchedulerState, SlurmScheduler
from tests.conftest import wait_for
from tests.integration.conftest import SlurmInfo

pytestmark = pytest.mark.slurm

_FINAL = {SchedulerState.SUCCEEDED, SchedulerState.FAILED, SchedulerState.CANCELLED}

_STOPS_ON_TERM = """\
import signal, sys, time
def stop(signum, frame):
    print("got TERM", flush=True)
    time.sleep(1)
    print("cleaned up", flush=True)
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
print("started", flush=True)
time.sleep(300)
"""


class _Held(SlurmScheduler):
    """The adapter, submitting its jobs held (``sbatch --hold``): they stay pending."""

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        if tool == "sbatch":
            args = ("--hold", *args)
        return super()._run(tool, *args)


def _spec(tmp_path: Path, code: str) -> JobSpec:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    return JobSpec(
        name="cancel-test",
        argv=[sys.executable, "-c", code],
        job_dir=job_dir,
        resources={"cores": 1, "memory": "200M", "walltime": "00:05:00"},
    )


def _wait(
    adapter: SlurmScheduler, sid: str, job_dir: Path, states: set[SchedulerState], t: float = 120
) -> SchedulerState:
    deadline = time.monotonic() + t
    while True:
        state = adapter.status(sid, job_dir).state
        if state in states:
            return state
        assert time.monotonic() < deadline, f"still {state} after {t} s; wanted {states}"
        time.sleep(0.3)


def test_a_pending_job_is_cancelled(slurm: SlurmInfo, tmp_path: Path) -> None:
    adapter = _Held(timeout_s=30, min_status_s=0)
    spec = _spec(tmp_path, "print('never runs')")
    sid = adapter.submit(spec)
    try:
        assert adapter.status(sid, spec.job_dir).state is SchedulerState.PENDING
        adapter.cancel(sid, spec.job_dir)
        assert _wait(adapter, sid, spec.job_dir, _FINAL) is SchedulerState.CANCELLED
    finally:
        subprocess.run(["scancel", sid], check=False, capture_output=True)
    assert not JobFiles(spec.job_dir).exit_record.exists()  # it never ran


def test_a_running_job_gets_sigterm_and_its_exit_is_recorded(
    slurm: SlurmInfo, tmp_path: Path
) -> None:
    adapter = SlurmScheduler(timeout_s=30, min_status_s=0)
    spec = _spec(tmp_path, _STOPS_ON_TERM)
    files = JobFiles(spec.job_dir)
    sid = adapter.submit(spec)
    try:
        _wait(adapter, sid, spec.job_dir, {SchedulerState.RUNNING})
        # Slurm makes the file at the start
        wait_for(lambda: "started" in _text(files.log("stdout")), 60, "the command to start")
        adapter.cancel(sid, spec.job_dir)
        assert _wait(adapter, sid, spec.job_dir, _FINAL) is SchedulerState.CANCELLED
        # the script execs the wrapper: Slurm ends the job only after the record is written
        assert files.exit_record.exists(), "ended without the wrapper's exit record"
        wait_for(lambda: sid not in _squeue(sid), 60, "the job to leave the queue")  # ended
        status = adapter.status(sid, spec.job_dir)
    finally:
        subprocess.run(["scancel", sid], check=False, capture_output=True)
    record = json.loads(files.exit_record.read_text())
    assert record["cancelled"] is True and record["exit_code"] == 143
    assert (status.state, status.exit_code) == (SchedulerState.CANCELLED, 143)
    assert "got TERM\ncleaned up" in files.log("stdout").read_text()


def test_a_cancel_of_a_job_that_ended_is_no_error(slurm: SlurmInfo, tmp_path: Path) -> None:
    adapter = SlurmScheduler(timeout_s=30, min_status_s=0)
    spec = _spec(tmp_path, "print('done')")
    sid = adapter.submit(spec)
    assert _wait(adapter, sid, spec.job_dir, _FINAL) is SchedulerState.SUCCEEDED
    wait_for(lambda: sid not in _squeue(sid), 60, "the job to leave the queue")  # ended
    adapter.cancel(sid, spec.job_dir)  # the user clicked too late: no error
    status = adapter.status(sid, spec.job_dir)
    assert (status.state, status.exit_code) == (SchedulerState.SUCCEEDED, 0)


def _squeue(sid: str) -> str:
    return subprocess.run(
        ["squeue", "--noheader", f"--jobs={sid}", "--format=%i"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
