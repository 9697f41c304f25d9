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


def test_a_second_attempt_appends_to_the_logs_of_the_first(
    adapter: Callable[[], Scheduler], tmp_path: Path
) -> None:
    """A restart's output follows the earlier attempt's (the worker's stderr offset needs it)."""
    for attempt in ("one", "two"):
        code = f"import sys; print('out {attempt}'); sys.stderr.write('err {attempt}\\n')"
        spec = _spec(tmp_path, code)
        sid = adapter().submit(spec)
        assert _wait(adapter, sid, spec.job_dir, FINAL, 120) == SchedulerState.SUCCEEDED
    logs = spec.job_dir / "scheduler"
    assert (logs / "stdout.log").read_text().splitlines() == ["out one", "out two"]
    assert (logs / "stderr.log").read_text().splitlines() == ["err one", "err two"]


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
        "#SBATCH --open-mode=append",  # Slurm's default truncates the logs on each attempt
    ):
        assert line in script.splitlines(), line
    assert script.splitlines()[-1].startswith("exec /usr/bin/python3 -m ")  # the wrapper
    bad = JobSpec(
        name="x", argv=["true"], job_dir=tmp_path, account={"account": "lab; touch /tmp/x"}
    )
    with pytest.raises(ConfigError, match="account"):
        render_script(bad, "/usr/bin/python3")
    assert isinstance(make_scheduler("local"), LocalScheduler)
    with pytest.raises(KeyError, match="slurm"):
        make_scheduler("pbs")


# -- the exit record decides; a late cancel changes nothing ---------------------------------------


def _record(job_dir: Path, code: int, *, cancelled: bool, marker: bool) -> None:
    folder = job_dir / "scheduler"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "exit.json").write_text(
        json.dumps({"exit_code": code, "started": "", "finished": "", "cancelled": cancelled})
    )
    if marker:
        (folder / "cancel").touch()


@pytest.mark.parametrize(
    ("code", "cancelled", "marker", "state"),
    [
        (0, False, True, SchedulerState.SUCCEEDED),  # cancel asked after the job ended
        (3, False, True, SchedulerState.FAILED),
        (0, True, True, SchedulerState.CANCELLED),  # the wrapper saw the cancel in time
        (1, True, False, SchedulerState.CANCELLED),
        (-15, False, True, SchedulerState.CANCELLED),  # killed by a signal, and a cancel exists
        (143, False, True, SchedulerState.CANCELLED),
        (-9, False, False, SchedulerState.FAILED),  # killed, nobody cancelled
        (0, False, False, SchedulerState.SUCCEEDED),
    ],
)
def test_the_exit_record_decides_whether_a_job_was_cancelled(
    tmp_path: Path, code: int, cancelled: bool, marker: bool, state: SchedulerState
) -> None:
    from scopeflow.service.schedulers.base import status_from_exit_record

    _record(tmp_path, code, cancelled=cancelled, marker=marker)
    status = status_from_exit_record(tmp_path)
    assert status is not None
    assert (status.state, status.exit_code) == (state, code)


def test_a_cancel_after_a_local_job_succeeded_keeps_it_succeeded(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "print('done')")
    sid = LocalScheduler().submit(spec)
    assert _wait(LocalScheduler, sid, spec.job_dir, FINAL, 60) == SchedulerState.SUCCEEDED
    LocalScheduler(grace_s=1).cancel(sid, spec.job_dir)  # the user clicked too late
    assert (spec.job_dir / "scheduler" / "cancel").exists()
    status = LocalScheduler().status(sid, spec.job_dir)
    assert (status.state, status.exit_code) == (SchedulerState.SUCCEEDED, 0)


def test_a_local_job_ignoring_sigterm_is_killed_by_a_status_after_the_grace_period(
    tmp_path: Path,
) -> None:
    """``cancel`` only sends SIGTERM and returns (the worker's round does not wait); a job
    that ignores it is still running after it got it, and a ``status`` past ``grace_s`` kills
    it."""
    got_term = tmp_path / "got-term"
    code = (
        "import pathlib, signal, time\n"
        "def note(signum, frame):\n"
        f"    pathlib.Path({str(got_term)!r}).touch()\n"  # and goes on sleeping
        "signal.signal(signal.SIGTERM, note)\n"
        "print('started', flush=True)\n"
        "time.sleep(300)\n"  # resumed after the handler (PEP 475)
    )
    spec = _spec(tmp_path, code)
    adapter = LocalScheduler(grace_s=5)
    sid = adapter.submit(spec)
    out = spec.job_dir / "scheduler" / "stdout.log"
    deadline = time.monotonic() + 60
    while "started" not in (out.read_text() if out.exists() else ""):  # the handler is set now
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.1)
    adapter.cancel(sid, spec.job_dir)
    deadline = time.monotonic() + 30
    while not got_term.exists():  # the wrapper passed SIGTERM on, and the command got it
        assert time.monotonic() < deadline, "the job never got SIGTERM"
        time.sleep(0.05)
    # it ignored it: its process group is still there, and the adapter says running
    os.killpg(int(sid), 0)  # raises ProcessLookupError if the group is gone
    assert adapter.status(sid, spec.job_dir).state is SchedulerState.RUNNING
    assert _wait(lambda: adapter, sid, spec.job_dir, FINAL, 60) == SchedulerState.CANCELLED


# -- jobs never see the service's secrets --------------------------------------------------------


def test_jobs_do_not_inherit_the_database_url(
    adapter: Callable[[], Scheduler], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's environment holds SCOPEFLOW_DB_URL (with a password): jobs run user data."""
    monkeypatch.setenv("SCOPEFLOW_DB_URL", "postgresql://scopeflow:hunter2@db/scopeflow")
    monkeypatch.setenv("SCOPEFLOW_DB_PASSWORD", "hunter2")
    monkeypatch.setenv("SCOPEFLOW_HARMLESS_MARK", "kept")
    spec = _spec(
        tmp_path,
        "import json, os; print(json.dumps({k: v for k, v in os.environ.items()"
        " if k.startswith('SCOPEFLOW_')}))",
    )
    spec = JobSpec(
        name=spec.name,
        argv=spec.argv,
        job_dir=spec.job_dir,
        resources=spec.resources,
        env={"SCOPEFLOW_JOB_MARK": "set"},
    )
    sid = adapter().submit(spec)
    assert _wait(adapter, sid, spec.job_dir, FINAL, 120) == SchedulerState.SUCCEEDED
    out = (spec.job_dir / "scheduler" / "stdout.log").read_text()
    seen = json.loads(out.strip().splitlines()[-1])
    assert "hunter2" not in out
    assert "SCOPEFLOW_DB_URL" not in seen and "SCOPEFLOW_DB_PASSWORD" not in seen
    assert seen["SCOPEFLOW_HARMLESS_MARK"] == "kept"
    assert seen["SCOPEFLOW_JOB_MARK"] == "set"
    script = spec.job_dir / "scheduler" / "job.sbatch"  # Slurm only
    assert not script.exists() or "hunter2" not in script.read_text()


def test_job_environment_leaves_out_secrets() -> None:
    from scopeflow.service.schedulers.base import job_environment

    base = {"PATH": "/bin", "SCOPEFLOW_DB_URL": "x", "scopeflow_db_url": "y", "HOME": "/h"}
    assert job_environment({"A": "1"}, base=base) == {"PATH": "/bin", "HOME": "/h", "A": "1"}


# -- paths that cannot stand in an #SBATCH line --------------------------------------------------


@pytest.mark.parametrize("where", ["job_dir", "cwd"])
@pytest.mark.parametrize(
    "bad", ["John Smith\ntouch /tmp/pwned #", "with space", "tab\there", "cr\rx", "nul\x00x"]
)
def test_the_batch_script_refuses_paths_with_whitespace_or_control_characters(
    tmp_path: Path, where: str, bad: str
) -> None:
    from scopeflow.core.errors import ConfigError

    odd = tmp_path / bad / "job"
    spec = JobSpec(
        name="x",
        argv=["true"],
        job_dir=odd if where == "job_dir" else tmp_path,
        cwd=odd if where == "cwd" else None,
    )
    with pytest.raises(ConfigError, match=where):
        render_script(spec, "/usr/bin/python3")
    fine = JobSpec(name="x", argv=["true"], job_dir=tmp_path / "ä-ok_1.x" / "job")
    assert "#SBATCH --chdir=" in render_script(fine, "/usr/bin/python3")
