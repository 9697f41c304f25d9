"""One ``squeue`` (and at most one ``sacct``) per polling round, whatever the number of jobs.

The Slurm adapter runs fake ``squeue``/``sacct`` executables (its ``squeue=``/``sacct=``
options) that answer from a table and log every call, so the tests count the subprocesses a
round makes. Two flavours of ``squeue`` for a list holding an id the controller has purged:
Slurm 22.05's (the unknown id is left out; only a lone unknown id is an error) and the strict one
of other versions (the whole call fails with ``Invalid job id specified``). The real Slurm runs the
same code in tests/integration/test_service_schedulers.py and test_service_worker.py.

The fake ``scancel`` checks what a cancel runs and that a refused cancel never keeps a job from
being polled.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from scopeflow.core.errors import ClusterError
from scopeflow.service.db import Job, User, make_engine, new_job_id, session_factory, set_state
from scopeflow.service.jobfiles import JobFiles
from scopeflow.service.schedulers import JobSpec, Scheduler, SchedulerState, SchedulerStatus
from scopeflow.service.schedulers.slurm import IDS_PER_CALL, MIN_STATUS_S, SlurmScheduler
from scopeflow.service.settings import ServiceSettings
from scopeflow.service.states import JobState
from scopeflow.service.worker import Worker
from tests.conftest import migrated_settings

_FAKE = """\
import json, os, sys
from pathlib import Path

here = Path({folder!r})
tool = Path(sys.argv[0]).name
with (here / "calls.jsonl").open("a") as log:
    log.write(json.dumps([tool, *sys.argv[1:]]) + "\\n")
table = json.loads((here / "table.json").read_text())
if table.get(tool + "_fails"):
    sys.stderr.write(table[tool + "_fails"])
    sys.exit(1)
if tool == "scancel":
    sys.exit(0)
opts = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
if tool == "squeue":
    queue = table["squeue"]
    if "user" in opts:
        wanted = list(queue)
    else:
        wanted = opts["jobs"].split(",")
        unknown = [j for j in wanted if j not in queue]
        if unknown and (len(wanted) == 1 or table.get("strict")):
            sys.stderr.write("slurm_load_jobs error: Invalid job id specified\\n")
            sys.exit(1)
    for job in wanted:
        if job in queue and queue[job] not in ("COMPLETED", "FAILED", "CANCELLED"):
            print(job + "|" + queue[job])
else:
    for job in opts["jobs"].split(","):
        if job in table["sacct"]:
            print(job + "|" + "|".join(table["sacct"][job]))
"""


class FakeSlurm:
    """``squeue``, ``sacct`` and ``scancel`` executables answering from :attr:`table` (a key
    ``TOOL_fails`` makes that tool print its value to stderr and exit 1); :meth:`calls` lists
    what they were run with."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.table: dict[str, Any] = {"squeue": {}, "sacct": {}}
        for tool in ("squeue", "sacct", "scancel"):
            path = folder / tool
            path.write_text(f"#!{sys.executable}\n" + _FAKE.format(folder=str(folder)))
            path.chmod(0o755)
        self.save()

    def save(self) -> None:
        (self.folder / "table.json").write_text(json.dumps(self.table))

    def adapter(self, min_status_s: float = 0.0) -> SlurmScheduler:
        """The adapter on the fake commands (by default asking them on every call)."""
        return SlurmScheduler(
            squeue=str(self.folder / "squeue"),
            sacct=str(self.folder / "sacct"),
            scancel=str(self.folder / "scancel"),
            min_status_s=min_status_s,
        )

    def calls(self) -> list[list[str]]:
        path = self.folder / "calls.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        path.unlink(missing_ok=True)
        return [json.loads(line) for line in lines]


@pytest.fixture
def fake(tmp_path: Path) -> FakeSlurm:
    return FakeSlurm(tmp_path / "fake-slurm")


def _dirs(tmp_path: Path, n: int) -> list[Path]:
    out = []
    for i in range(n):
        job_dir = tmp_path / "jobs" / f"j{i}"
        (job_dir / "scheduler").mkdir(parents=True)
        out.append(job_dir)
    return out


def _exit_record(job_dir: Path, code: int) -> None:
    (job_dir / "scheduler" / "exit.json").write_text(
        json.dumps({"exit_code": code, "started": "", "finished": "", "cancelled": False})
    )


def _tools(calls: list[list[str]]) -> list[str]:
    return [call[0] for call in calls]


def _ids(call: list[str]) -> list[str]:
    (jobs,) = [a.split("=", 1)[1] for a in call if a.startswith("--jobs=")]
    return jobs.split(",")


# -- the adapter --------------------------------------------------------------------------------


def test_one_squeue_and_one_sacct_for_many_jobs(fake: FakeSlurm, tmp_path: Path) -> None:
    """12 jobs: running, pending, ended (sacct), with an exit record, purged; two calls."""
    fake.table["squeue"] = {str(100 + i): "RUNNING" for i in range(5)}
    fake.table["squeue"] |= {"105": "PENDING", "106": "COMPLETING", "107": "SPECIAL_EXIT"}
    fake.table["sacct"] = {
        "108": ["COMPLETED", "0:0"],
        "109": ["FAILED", "3:0"],
        "110": ["CANCELLED by 0", "0:15"],
    }  # 111: finished long ago, purged from the accounting too
    fake.save()
    dirs = _dirs(tmp_path, 13)
    _exit_record(dirs[12], 2)  # ended: no query for it
    jobs = [(str(100 + i), d) for i, d in enumerate(dirs)]
    got = fake.adapter().statuses(jobs)
    calls = fake.calls()
    assert _tools(calls) == ["squeue", "sacct"]
    assert _ids(calls[0]) == [str(100 + i) for i in range(12)]
    assert _ids(calls[1]) == ["108", "109", "110", "111"]
    assert "--noheader" in calls[0] and "--format=%i|%T" in calls[0]
    assert [(s.state, s.exit_code) for s in got] == [
        *[(SchedulerState.RUNNING, None)] * 5,
        (SchedulerState.PENDING, None),
        (SchedulerState.RUNNING, None),  # COMPLETING
        (SchedulerState.UNKNOWN, None),  # a state squeue shows that is not in the table
        (SchedulerState.SUCCEEDED, 0),
        (SchedulerState.FAILED, 3),
        (SchedulerState.CANCELLED, 0),
        (SchedulerState.UNKNOWN, None),  # no record anywhere: asked again, never completion
        (SchedulerState.FAILED, 2),  # the exit record decides
    ]
    assert got[7].detail == "squeue: SPECIAL_EXIT"
    assert got[11].detail == "sacct: no accounting record yet"
    assert got[10].detail == "cancelled"


def test_jobs_squeue_lists_need_no_sacct_and_ended_jobs_no_query(
    fake: FakeSlurm, tmp_path: Path
) -> None:
    fake.table["squeue"] = {"7": "RUNNING", "8": "PENDING"}
    fake.save()
    dirs = _dirs(tmp_path, 3)
    assert [s.state for s in fake.adapter().statuses([("7", dirs[0]), ("8", dirs[1])])] == [
        SchedulerState.RUNNING,
        SchedulerState.PENDING,
    ]
    assert _tools(fake.calls()) == ["squeue"]
    _exit_record(dirs[2], 0)
    assert fake.adapter().statuses([("9", dirs[2])])[0].state is SchedulerState.SUCCEEDED
    assert fake.adapter().statuses([]) == []
    assert fake.calls() == []


def test_a_strict_squeue_refusing_a_purged_id_falls_back_to_the_users_jobs(
    fake: FakeSlurm, tmp_path: Path
) -> None:
    """Where one unknown id fails the whole list, the user's jobs are listed instead."""
    fake.table.update(strict=True, squeue={"1": "RUNNING", "2": "PENDING", "99": "RUNNING"})
    fake.table["sacct"] = {"3": ["COMPLETED", "0:0"]}
    fake.save()
    dirs = _dirs(tmp_path, 4)
    got = fake.adapter().statuses([(str(i + 1), d) for i, d in enumerate(dirs)])
    calls = fake.calls()
    assert _tools(calls) == ["squeue", "squeue", "sacct"]
    assert f"--user={os.getuid()}" in calls[1] and not any("--jobs" in a for a in calls[1])
    assert _ids(calls[2]) == ["3", "4"]  # job 99 (not ours) is never looked at
    assert [s.state for s in got] == [
        SchedulerState.RUNNING,
        SchedulerState.PENDING,
        SchedulerState.SUCCEEDED,
        SchedulerState.UNKNOWN,
    ]


def test_a_lone_purged_id_goes_to_sacct_as_before(fake: FakeSlurm, tmp_path: Path) -> None:
    fake.table["sacct"] = {"5": ["TIMEOUT", "0:0"]}
    fake.save()
    (job_dir,) = _dirs(tmp_path, 1)
    status = fake.adapter().status("5", job_dir)
    assert (status.state, status.detail) == (SchedulerState.FAILED, "timeout")
    assert _tools(fake.calls()) == ["squeue", "sacct"]


def test_failed_queries_are_unknown_for_the_jobs_they_asked_about(
    fake: FakeSlurm, tmp_path: Path
) -> None:
    dirs = _dirs(tmp_path, 3)
    fake.table.update(squeue={"1": "RUNNING"}, squeue_fails="slurm_load_jobs error: timeout\n")
    fake.save()
    got = fake.adapter().statuses([("1", dirs[0]), ("2", dirs[1])])
    assert {(s.state, s.detail) for s in got} == {
        (SchedulerState.UNKNOWN, "squeue: slurm_load_jobs error: timeout")
    }
    assert _tools(fake.calls()) == ["squeue"]  # no sacct: squeue could not say they ended
    fake.table.update(squeue_fails="", sacct_fails="sacct: error: no slurmdbd\n")
    fake.save()
    got = fake.adapter().statuses([("1", dirs[0]), ("2", dirs[1])])
    assert got[0].state is SchedulerState.RUNNING
    assert got[1].state is SchedulerState.UNKNOWN and "no slurmdbd" in got[1].detail
    missing = SlurmScheduler(squeue=str(tmp_path / "no-such-squeue"))
    assert {s.state for s in missing.statuses([("1", dirs[0]), ("2", dirs[1])])} == {
        SchedulerState.UNKNOWN
    }


def test_an_id_that_is_not_a_slurm_job_id_is_never_passed_on(
    fake: FakeSlurm, tmp_path: Path
) -> None:
    fake.table["squeue"] = {"4": "RUNNING"}
    fake.save()
    dirs = _dirs(tmp_path, 3)
    odd = ["4,5", "--user=root"]
    got = fake.adapter().statuses([(odd[0], dirs[0]), (odd[1], dirs[1]), ("4", dirs[2])])
    assert [s.state for s in got] == [SchedulerState.UNKNOWN] * 2 + [SchedulerState.RUNNING]
    assert got[0].detail == "not a Slurm job id: '4,5'"
    (call,) = fake.calls()
    assert _ids(call) == ["4"] and "--user=root" not in call


def test_very_many_jobs_are_split_over_command_lines(fake: FakeSlurm, tmp_path: Path) -> None:
    n = IDS_PER_CALL + 3
    fake.table["squeue"] = {str(i): "RUNNING" for i in range(1, n + 1)}
    fake.save()
    job_dir = tmp_path / "one"
    got = fake.adapter().statuses([(str(i), job_dir) for i in range(1, n + 1)])
    assert {s.state for s in got} == {SchedulerState.RUNNING}
    calls = fake.calls()
    assert [len(_ids(c)) for c in calls] == [IDS_PER_CALL, 3]


# -- the worker: one call per round --------------------------------------------------------------


class _Canned(Scheduler):
    """An adapter that only answers ``status`` (the base class's ``statuses`` loops over it)."""

    name = "canned"

    def __init__(self, states: dict[str, SchedulerState]) -> None:
        self.states = states
        self.asked: list[str] = []
        self.batch_error: Exception | None = None

    def submit(self, spec: JobSpec) -> str:
        raise AssertionError("not used")

    def status(self, scheduler_id: str, job_dir: Path) -> SchedulerStatus:
        self.asked.append(scheduler_id)
        state = self.states[scheduler_id]
        return SchedulerStatus(state, 0 if state is SchedulerState.SUCCEEDED else 1, "canned")

    def statuses(self, jobs: Sequence[tuple[str, Path]]) -> list[SchedulerStatus]:
        if self.batch_error is not None:
            raise self.batch_error
        return super().statuses(jobs)

    def cancel(self, scheduler_id: str, job_dir: Path) -> None:
        raise AssertionError("not used")


def _settings(tmp_path: Path) -> ServiceSettings:
    return migrated_settings(tmp_path / "data")


def _submitted(settings: ServiceSettings, scheduler: str, ids: list[str]) -> list[str]:
    """Jobs queued and submitted to ``scheduler`` as ``ids``; returns their job ids."""
    engine = make_engine(settings.database_url)
    made = []
    with session_factory(engine)() as session:
        owner = User(name="alice", password_hash="not-a-hash", group="imaging")
        session.add(owner)
        session.flush()
        for sid in ids:
            job_id = new_job_id()
            JobFiles.of(settings.jobs_dir, "alice", job_id).create()
            job = Job(id=job_id, owner=owner, name="t", template="toy")
            session.add(job)
            session.flush()
            set_state(session, job, JobState.READY)
            set_state(session, job, JobState.QUEUED)
            job.scheduler, job.scheduler_id, job.claimed_by = scheduler, sid, "w"
            made.append(job_id)
        session.commit()
    engine.dispose()
    return made


def _states(settings: ServiceSettings, job_ids: list[str]) -> list[tuple[JobState, int | None]]:
    engine = make_engine(settings.database_url)
    with session_factory(engine)() as session:
        jobs = {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(job_ids)))}
        out = [(jobs[i].state, jobs[i].exit_code) for i in job_ids]
    engine.dispose()
    return out


def test_a_worker_round_makes_one_squeue_call_for_all_its_slurm_jobs(
    fake: FakeSlurm, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    sids = [str(200 + i) for i in range(6)]
    job_ids = _submitted(settings, "slurm", sids)
    fake.table["squeue"] = {"200": "RUNNING", "201": "RUNNING", "202": "PENDING", "203": "RUNNING"}
    fake.table["sacct"] = {"204": ["COMPLETED", "0:0"], "205": ["FAILED", "3:0"]}
    fake.save()
    with Worker(settings, worker_id="w", scheduler=fake.adapter()) as worker:
        assert worker.tick() == 5
        calls = fake.calls()
        assert _tools(calls) == ["squeue", "sacct"]
        assert _ids(calls[0]) == sids and _ids(calls[1]) == ["204", "205"]
        assert _states(settings, job_ids) == [
            (JobState.RUNNING, None),
            (JobState.RUNNING, None),
            (JobState.QUEUED, None),
            (JobState.RUNNING, None),
            (JobState.SUCCEEDED, 0),
            (JobState.FAILED, 3),
        ]
        fake.table["squeue"] |= {"202": "RUNNING", "203": "COMPLETED"}
        fake.table["sacct"]["203"] = ["COMPLETED", "0:0"]
        fake.save()
        assert worker.tick() == 2
        calls = fake.calls()
        assert _tools(calls) == ["squeue", "sacct"]  # only the 4 jobs still active
        assert _ids(calls[0]) == sids[:4] and _ids(calls[1]) == ["203"]
        assert [s for s, _ in _states(settings, job_ids[:4])] == [
            JobState.RUNNING,
            JobState.RUNNING,
            JobState.RUNNING,
            JobState.SUCCEEDED,
        ]
        worker.tick()
        assert _tools(fake.calls()) == ["squeue"]


def test_the_base_class_loops_and_a_raising_batch_falls_back_to_one_job_at_a_time(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    canned = _Canned({"1": SchedulerState.RUNNING, "2": SchedulerState.SUCCEEDED})
    job_ids = _submitted(settings, "canned", ["1", "2"])
    with Worker(settings, worker_id="w", scheduler=canned) as worker:
        canned.batch_error = RuntimeError("the batched query exploded")
        assert worker.tick() == 2
        assert canned.asked == ["1", "2"]  # each job asked on its own
        assert _states(settings, job_ids) == [(JobState.RUNNING, None), (JobState.SUCCEEDED, 0)]
        canned.batch_error, canned.asked = None, []
        canned.states["1"] = SchedulerState.FAILED
        assert worker.tick() == 1
        assert canned.asked == ["1"]  # through the base class's statuses()
        assert _states(settings, job_ids)[0] == (JobState.FAILED, 1)


# -- cancel ---------------------------------------------------------------------------------------


def test_a_cancel_is_one_plain_scancel(fake: FakeSlurm, tmp_path: Path) -> None:
    """Plain ``scancel ID`` stops a pending job too (``--full --signal=TERM`` is refused for one)
    and signals a running job's batch step (tests/integration/test_slurm_cancel.py)."""
    (job_dir,) = _dirs(tmp_path, 1)
    fake.adapter().cancel("42", job_dir)
    assert fake.calls() == [["scancel", "42"]]
    assert JobFiles(job_dir).cancel_marker.exists()


@pytest.mark.parametrize(
    "said",
    [
        "scancel: error: Kill job error on job id 42: Invalid job id specified\n",
        "scancel: error: Kill job error on job id 42: Job/step already completing or completed\n",
    ],
)
def test_a_cancel_of_a_job_slurm_has_ended_or_purged_is_done(
    fake: FakeSlurm, tmp_path: Path, said: str
) -> None:
    (job_dir,) = _dirs(tmp_path, 1)
    fake.table["scancel_fails"] = said
    fake.save()
    fake.adapter().cancel("42", job_dir)  # no error: the job's status says how it ended
    assert _tools(fake.calls()) == ["scancel"]


def test_a_cancel_slurm_refuses_is_an_error(fake: FakeSlurm, tmp_path: Path) -> None:
    (job_dir,) = _dirs(tmp_path, 1)
    fake.table["scancel_fails"] = "scancel: error: Unable to contact slurm controller\n"
    fake.save()
    with pytest.raises(ClusterError, match="Unable to contact slurm controller"):
        fake.adapter().cancel("42", job_dir)


def test_a_job_whose_cancel_keeps_failing_is_still_polled_to_its_end(
    fake: FakeSlurm, tmp_path: Path
) -> None:
    """A refused ``scancel`` is tried again each round, and the job's state is asked all the same:
    a job that ends meanwhile reaches its final state instead of staying active forever."""
    settings = _settings(tmp_path)
    job_ids = _submitted(settings, "slurm", ["300", "301"])
    JobFiles.of(settings.jobs_dir, "alice", job_ids[0]).request_cancel()
    fake.table["squeue"] = {"300": "RUNNING", "301": "RUNNING"}
    fake.table["scancel_fails"] = "scancel: error: Unable to contact slurm controller\n"
    fake.save()
    with Worker(settings, worker_id="w", scheduler=fake.adapter()) as worker:
        assert worker.tick() == 2
        calls = fake.calls()
        assert _tools(calls) == ["scancel", "squeue"]
        assert _ids(calls[1]) == ["300", "301"]  # the job whose cancel failed is asked too
        assert [s for s, _ in _states(settings, job_ids)] == [JobState.RUNNING] * 2
        fake.table["squeue"] = {"301": "RUNNING"}  # ended: Slurm cancelled it after all
        fake.table["sacct"] = {"300": ["CANCELLED by 0", "0:15"]}
        fake.save()
        assert worker.tick() == 1
        assert _tools(fake.calls()) == ["scancel", "squeue", "sacct"]  # the cancel is retried
        assert _states(settings, job_ids)[0] == (JobState.CANCELLED, 0)
        JobFiles.of(settings.jobs_dir, "alice", job_ids[1]).request_cancel()
        fake.table["scancel_fails"] = ""
        fake.save()
        worker.tick()
        assert _tools(fake.calls()) == ["scancel", "squeue"]
        worker.tick()
        assert _tools(fake.calls()) == ["squeue"]  # accepted: not sent again


# -- the rate of status queries -------------------------------------------------------------------


def test_slurm_is_asked_about_a_job_at_most_once_per_min_status_s(
    fake: FakeSlurm, tmp_path: Path
) -> None:
    """Answers are reused for ``min_status_s``; exit records are read on every call, and a job
    the last query did not cover, or one just cancelled, is asked at once."""
    fake.table["squeue"] = {"1": "RUNNING", "2": "PENDING", "3": "RUNNING"}
    fake.save()
    dirs = _dirs(tmp_path, 3)
    adapter = fake.adapter(min_status_s=60)
    jobs = [("1", dirs[0]), ("2", dirs[1])]
    states = [SchedulerState.RUNNING, SchedulerState.PENDING]
    assert [s.state for s in adapter.statuses(jobs)] == states
    assert _tools(fake.calls()) == ["squeue"]
    fake.table["squeue"] = {"1": "RUNNING", "2": "RUNNING", "3": "RUNNING"}  # 2 started
    fake.save()
    assert [s.state for s in adapter.statuses(jobs)] == states  # the answer of the last query
    assert adapter.status("2", dirs[1]).state is SchedulerState.PENDING
    assert fake.calls() == []
    _exit_record(dirs[0], 0)  # 1 ended: seen at once, without a query
    got = adapter.statuses(jobs)
    assert [s.state for s in got] == [SchedulerState.SUCCEEDED, SchedulerState.PENDING]
    assert fake.calls() == []
    got = adapter.statuses([*jobs, ("3", dirs[2])])  # 3: not asked yet, so asked now (with 2)
    assert [s.state for s in got][1:] == [SchedulerState.RUNNING] * 2
    (call,) = fake.calls()
    assert _ids(call) == ["2", "3"]
    adapter.cancel("3", dirs[2])
    fake.table["squeue"] = {"2": "RUNNING"}
    fake.table["sacct"] = {"3": ["CANCELLED by 0", "0:15"]}
    fake.save()
    got = adapter.statuses([("2", dirs[1]), ("3", dirs[2])])  # 3 was cancelled: asked again
    assert [s.state for s in got] == [SchedulerState.RUNNING, SchedulerState.CANCELLED]
    assert _tools(fake.calls()) == ["scancel", "squeue", "sacct"]
    adapter.min_status_s = 0  # the answers are old now
    adapter.statuses([("2", dirs[1])])
    assert _tools(fake.calls()) == ["squeue"]


def test_a_worker_asks_slurm_once_in_several_rounds_and_sees_an_end_at_once(
    fake: FakeSlurm, tmp_path: Path
) -> None:
    assert 15 <= MIN_STATUS_S <= 30
    settings = _settings(tmp_path)
    job_ids = _submitted(settings, "slurm", ["400", "401"])
    fake.table["squeue"] = {"400": "RUNNING", "401": "RUNNING"}
    fake.save()
    with Worker(settings, worker_id="w", scheduler=fake.adapter(MIN_STATUS_S)) as worker:
        assert worker.tick() == 2
        for _ in range(3):
            assert worker.tick() == 0
        assert _tools(fake.calls()) == ["squeue"]  # one query in four rounds
        _exit_record(JobFiles.of(settings.jobs_dir, "alice", job_ids[1]).root, 3)
        assert worker.tick() == 1
        assert _states(settings, job_ids) == [(JobState.RUNNING, None), (JobState.FAILED, 3)]
        assert fake.calls() == []
