"""The ``local`` scheduler: a detached process group per job, re-attached from its records.

``submit`` starts the wrapper in a new session (``setsid``: its own process group, no
controlling terminal), so it survives the service and its worker. ``scheduler/pid.json`` holds
the wrapper's pid and process start time: a later ``status`` (from any process) knows the job is
still running only if a process with that pid *and* that start time exists, so a recycled pid is
never mistaken for the job. A job whose process is gone without an exit record failed (killed
with SIGKILL, machine rebooted).

``cancel`` sends SIGTERM to the job's process group and returns at once; a job that still runs
``grace_s`` after the cancel was asked for is killed (SIGKILL) by the next ``status``, so the
worker's round never waits for a job to stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from scopeflow.core.fileio import atomic_write_json
from scopeflow.service.jobfiles import JobFiles
from scopeflow.service.schedulers.base import (
    JobSpec,
    Scheduler,
    SchedulerState,
    SchedulerStatus,
    job_environment,
    status_from_exit_record,
)

__all__ = ["LocalScheduler"]


class LocalScheduler(Scheduler):
    """Jobs as detached local processes.

    Parameters
    ----------
    python
        Interpreter that runs the wrapper (default: this one).
    grace_s
        Seconds between SIGTERM and SIGKILL on cancel (the worker uses this default).
    """

    name = "local"

    def __init__(self, python: str | None = None, grace_s: float = 5.0) -> None:
        self.python = python or sys.executable
        self.grace_s = grace_s

    def submit(self, spec: JobSpec) -> str:
        """Start the job detached; return its wrapper's pid as the scheduler id."""
        files = JobFiles(spec.job_dir)
        files.clear_attempt(pid=True)
        env = job_environment(spec.env)  # without the service's secrets
        with files.log("stdout").open("ab") as out, files.log("stderr").open("ab") as err:
            proc = subprocess.Popen(  # an argv list: no shell
                files.wrapper_argv(self.python, spec.argv),
                cwd=spec.cwd or spec.job_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
            )
        created = psutil.Process(proc.pid).create_time()
        atomic_write_json(files.pid_record, {"pid": proc.pid, "create_time": created})
        return str(proc.pid)

    def _kill_after_grace(self, proc: psutil.Process, job_dir: Path) -> None:
        """SIGKILL a job whose cancel was asked for over ``grace_s`` ago (it ignored SIGTERM)."""
        age = _cancel_age(job_dir)
        if age is not None and age >= self.grace_s:
            _signal_group(proc.pid, signal.SIGKILL)
            _reap(proc.pid)

    def status(self, scheduler_id: str, job_dir: Path) -> SchedulerStatus:
        """From the exit record; else running while the recorded process lives; else failed."""
        final = status_from_exit_record(job_dir)
        if final is not None:
            _reap(int(scheduler_id))
            return final
        proc = _process(job_dir, scheduler_id)
        if proc is not None:
            self._kill_after_grace(proc, job_dir)
            return SchedulerStatus(SchedulerState.RUNNING, None, f"pid {scheduler_id}")
        final = status_from_exit_record(job_dir)  # it may have finished in between
        if final is not None:
            return final
        if JobFiles(job_dir).cancel_marker.exists():
            return SchedulerStatus(SchedulerState.CANCELLED, None, "killed after cancel")
        return SchedulerStatus(
            SchedulerState.FAILED, None, "the process ended without an exit record (killed?)"
        )

    def cancel(self, scheduler_id: str, job_dir: Path) -> None:
        """SIGTERM to the job's process group; returns at once.

        A job still running ``grace_s`` after the cancel was asked for (the cancel marker's
        time) gets SIGKILL from the next :meth:`status`, so a worker never waits here.
        """
        JobFiles(job_dir).request_cancel()
        proc = _process(job_dir, scheduler_id)
        if proc is not None:
            _signal_group(proc.pid, signal.SIGTERM)


def _cancel_age(job_dir: Path) -> float | None:
    """Seconds since the cancel was asked for, or None without a cancel."""
    try:
        return time.time() - JobFiles(job_dir).cancel_marker.stat().st_mtime
    except FileNotFoundError:
        return None


def _process(job_dir: Path, scheduler_id: str) -> psutil.Process | None:
    """The job's wrapper process if it still runs (same pid *and* start time)."""
    try:
        rec = json.loads(JobFiles(job_dir).pid_record.read_text(encoding="utf-8"))
        if str(rec["pid"]) != scheduler_id or not re.fullmatch(r"\d+", scheduler_id):
            return None
        proc = psutil.Process(int(rec["pid"]))
        if abs(proc.create_time() - float(rec["create_time"])) > 0.01:
            return None  # the pid was reused
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(proc.pid)
            return None
    except (FileNotFoundError, ValueError, KeyError, psutil.Error):
        return None
    return proc


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # the wrapper leads its own session and process group


def _reap(pid: int) -> None:
    """Collect the exit status of a wrapper that is our own child (no zombie left)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
