"""The batched status query against the real Slurm: one ``squeue`` for many jobs, an id Slurm
never knew among them, and one ``sacct`` for the jobs that ended (tests/unit/service/
test_slurm_batch_poll.py covers the same with fake commands, including other Slurm versions)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from scopeflow.service.schedulers import JobSpec, SchedulerState, SchedulerStatus, SlurmScheduler
from tests.conftest import wait_for
from tests.integration.conftest import SlurmInfo

pytestmark = pytest.mark.slurm

_FINAL = {SchedulerState.SUCCEEDED, SchedulerState.FAILED, SchedulerState.CANCELLED}


class _Counting(SlurmScheduler):
    """The adapter, counting the commands it runs."""

    def __init__(self) -> None:
        super().__init__(timeout_s=30, min_status_s=0)  # a query on every call
        self.tools: list[str] = []

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        self.tools.append(tool)
        return super()._run(tool, *args)


class _Strict(_Counting):
    """As on Slurm versions that refuse a whole ``--jobs`` list holding an id they do not know."""

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        if tool == "squeue" and any(a.startswith("--jobs=") and "," in a for a in args):
            self.tools.append(tool)
            error = "slurm_load_jobs error: Invalid job id specified\n"
            return subprocess.CompletedProcess([tool, *args], 1, "", error)
        return super()._run(tool, *args)


def _spec(tmp_path: Path, name: str, code: str) -> JobSpec:
    job_dir = tmp_path / name
    job_dir.mkdir()
    return JobSpec(
        name=name,
        argv=[sys.executable, "-c", code],
        job_dir=job_dir,
        resources={"cores": 1, "memory": "200M", "walltime": "00:05:00"},
    )


def test_one_squeue_answers_for_every_job_and_sacct_for_the_ended_ones(
    slurm: SlurmInfo, tmp_path: Path
) -> None:
    adapter = _Counting()
    specs = [
        _spec(tmp_path, "sleeps", "import time; time.sleep(300)"),
        _spec(tmp_path, "succeeds", "print('ok')"),
        _spec(tmp_path, "fails", "import sys; sys.exit(3)"),
    ]
    jobs = [(adapter.submit(spec), spec.job_dir) for spec in specs]
    never = (str(int(jobs[-1][0]) + 100_000), tmp_path / "never")  # an id Slurm never gave
    try:
        deadline = time.monotonic() + 120
        while True:
            adapter.tools.clear()
            got = adapter.statuses([*jobs, never])
            assert adapter.tools.count("squeue") == 1 and adapter.tools.count("sacct") <= 1
            done = [s.state for s in got[1:3]]
            if got[0].state is SchedulerState.RUNNING and set(done) <= _FINAL:
                break
            assert time.monotonic() < deadline, got
            time.sleep(0.5)
        assert (got[1].state, got[1].exit_code) == (SchedulerState.SUCCEEDED, 0)
        assert (got[2].state, got[2].exit_code) == (SchedulerState.FAILED, 3)
        assert got[3].state is SchedulerState.UNKNOWN  # never taken as completion
        # the exit records answer for the two that ended; the unknown id goes to sacct
        assert adapter.tools == ["squeue", "sacct"]
        # without the exit records, sacct answers for them (state and exit code)
        for _, job_dir in jobs[1:]:
            (job_dir / "scheduler" / "exit.json").unlink()
        deadline = time.monotonic() + 60
        while True:
            adapter.tools.clear()
            got = adapter.statuses([*jobs, never])
            assert adapter.tools == ["squeue", "sacct"]
            if slurm.accounting is False or got[1].state is not SchedulerState.UNKNOWN:
                break
            assert time.monotonic() < deadline, got  # sacct may lag a moment behind
            time.sleep(0.5)
        if slurm.accounting:
            assert got[1] == SchedulerStatus(SchedulerState.SUCCEEDED, 0, "completed")
            assert got[2] == SchedulerStatus(SchedulerState.FAILED, 3, "failed")
        assert got[0].state is SchedulerState.RUNNING
        strict = _Strict()  # falls back to the real `squeue --user=UID`
        got = strict.statuses([*jobs, never])
        assert strict.tools == ["squeue", "squeue", "sacct"]
        assert got[0].state is SchedulerState.RUNNING and got[3].state is SchedulerState.UNKNOWN
    finally:
        adapter.cancel(*jobs[0])
    wait_for(lambda: adapter.status(*jobs[0]).state is SchedulerState.CANCELLED, 60, "cancel")
