"""One test suite for every scheduler adapter: local processes and a real Slurm.

Each adapter runs real commands (the Python interpreter) through the exit-record wrapper; the
Slurm variant needs the single-node Slurm that ``.ci/run`` starts (see conftest.py).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from scopeflow.service.schedulers import (
    JobSpec,
    LocalScheduler,
    Scheduler,
    SchedulerState,
    SlurmScheduler,
    make_scheduler,
)
from scopeflow.service.schedulers.slurm import render_script

FINAL = {SchedulerState.SUCCEEDED, SchedulerState.FAILED, SchedulerState.CANCELLED}


@pytest.fixture(params=["local", "slurm"])
def adapter(request: pytest.FixtureRequest) -> Callable[[], Scheduler]:
    """A factory of fresh adapter objects (a new one = a restarted worker re-attaching)."""
    if request.param == "slurm":
        info = request.getfixturevalue("slurm")
        assert info.partition
        return lambda: SlurmScheduler(timeout_s=30)
    return lambda: LocalScheduler(grace_s=5)


def _spec(tmp_path: Path, *code: str, name: str = "job") -> JobSpec:
    job_dir = tmp_path / "job"
    job_dir.mkdir(exist_ok=True)
    return JobSpec(
        name=name,
        argv=[sys.executable, "-c", *code],
        job_dir=job_dir,
        resources={"cores": 1, "memory": "200M", "walltime": "00:05:00"},
    )


def _wait(
    make: Callable[[], Scheduler], sid: str, job_dir: Path, states: set[SchedulerState], t: float
) -> SchedulerState:
    deadline = time.monotonic() + t
    state = SchedulerState.UNKNOWN
    while time.monotonic() < deadline:
        state = make().status(sid, job_dir).state
        if state in states:
            return state
        time.sleep(0.3)
    raise AssertionError(f"still {state} after {t} s; wanted {states}")


def test_a_job_succeeds_and_its_output_is_kept(
    adapter: Callable[[], Scheduler], tmp_path: Path
) -> None:
    spec = _spec(tmp_path, "print('hello from the job')")
    sid = adapter().submit(spec)
    assert _wait(adapter, sid, spec.job_dir, FINAL, 120) == SchedulerState.SUCCEEDED
    status = adapter().status(sid, spec.job_dir)
    assert status.exit_code == 0
    out = (spec.job_dir / "scheduler" / "stdout.log").read_text()
    assert "hello from the job" in out
    record = json.loads((spec.job_dir / "scheduler" / "exit.json").read_text())
    assert record["exit_code"] == 0 and record["finished"] >= record["started"]


def test_a_failing_job_reports_its_exit_code(
    adapter: Callable[[], Scheduler], tmp_path: Path
) -> None:
    spec = _spec(tmp_path, "import sys; sys.stderr.write('boom'); sys.exit(3)")
    sid = adapter().submit(spec)
    assert _wait(adapter, sid, spec.job_dir, FINAL, 120) == SchedulerState.FAILED
    assert adapter().status(sid, spec.job_dir).exit_code == 3
    assert "boom" in (spec.job_dir / "scheduler" / "stderr.log").read_text()


def test_a_running_job_is_seen_by_a_new_adapter_and_cancelled(
    adapter: Callable[[], Scheduler], tmp_path: Path
) -> None:
    """Re-attach from the id and directory alone (a restarted worker), then cancel."""
    spec = _spec(tmp_path, "import time; print('started', flush=True); time.sleep(300)")
    sid = adapter().submit(spec)
    _wait(adapter, sid, spec.job_dir, {SchedulerState.RUNNING}, 120)
    adapter().cancel(sid, spec.job_dir)
    assert _wait(adapter, sid, spec.job_dir, FINAL, 120) == SchedulerState.CANCELLED


def test_shell_metacharacters_stay_one_inert_argument(
    adapter: Callable[[], Scheduler], tmp_path: Path
) -> None:
    """A value like ``; rm -rf / $(touch x)`` reaches the command as one literal argv element."""
    marker = tmp_path / "pwned"
    nasty = f"; touch {marker} $(touch {marker}) `touch {marker}` && echo"
    spec = _spec(tmp_path, "import sys, json; print(json.dumps(sys.argv[1:]))", name=nasty)
    spec = JobSpec(
        name=spec.name, argv=[*spec.argv, nasty, "two"], job_dir=spec.job_dir, env={"X": nasty}
    )
    sid = adapter().submit(spec)
    assert _wait(adapter, sid, spec.job_dir, FINAL, 120) == SchedulerState.SUCCEEDED
    printed = (spec.job_dir / "scheduler" / "stdout.log").read_text().strip().splitlines()[-1]
    assert json.loads(printed) == [nasty, "two"]
    assert not marker.exists()


def test_a_killed_local_job_fails_instead_of_running_forever(tmp_path: Path) -> None:
    """SIGKILL of the whole process group leaves no exit record: failed, not running."""
    spec = _spec(tmp_path, "import time; time.sleep(300)")
    sched = LocalScheduler()
    sid = sched.submit(spec)
    _wait(lambda: sched, sid, spec.job_dir, {SchedulerState.RUNNING}, 30)
    os.killpg(int(sid), signal.SIGKILL)
    status = _wait(LocalScheduler, sid, spec.job_dir, FINAL, 30)
    assert status == SchedulerState.FAILED
    assert "without an exit record" in LocalScheduler().status(sid, spec.job_dir).detail


def test_a_failed_slurm_query_is_unknown_not_done(tmp_path: Path) -> None:
    """squeue failing (here: the `false` command) must never read as completion."""
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    broken = SlurmScheduler(squeue="false", sacct="false")
    assert broken.status("12345", job_dir).state == SchedulerState.UNKNOWN
    missing = SlurmScheduler(squeue=str(tmp_path / "no-such-squeue"))
    assert missing.status("12345", job_dir).state == SchedulerState.UNKNOWN


def test_the_batch_script_takes_resources_and_account_and_refuses_odd_values(
    tmp_path: Path,
) -> None:
    from scopeflow.core.errors import ConfigError

    spec = JobSpec(
        name="cells; rm -rf /",
        argv=["scopeflow", "run", "cyto", "-c", str(tmp_path / "config.yaml")],
        job_dir=tmp_path,
        resources={"cores": 4, "memory": "16G", "walltime": "02:00:00", "gpus": 1},
        account={"account": "lab42", "partition": "gpu", "qos": "normal"},
    )
    script = render_script(spec, "/usr/bin/python3")
    for line in (
        "#SBATCH --job-name=cells__rm_-rf__",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=16G",
        "#SBATCH --time=02:00:00",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab42",
        "#SBATCH --qos=normal",
    ):
        assert line in script.splitlines(), line
    bad = JobSpec(
        name="x", argv=["true"], job_dir=tmp_path, account={"account": "lab; touch /tmp/x"}
    )
    with pytest.raises(ConfigError, match="account"):
        render_script(bad, "/usr/bin/python3")
    assert isinstance(make_scheduler("local"), LocalScheduler)
    with pytest.raises(KeyError, match="slurm"):
        make_scheduler("pbs")
