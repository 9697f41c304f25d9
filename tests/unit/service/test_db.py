"""The database models, state changes through set_state, and claims by concurrent workers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, text, update
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from scopeflow.core import ConfigError, InvalidTransitionError
from scopeflow.service.db import (
    Job,
    User,
    claim_jobs,
    make_engine,
    session_factory,
    set_state,
    utcnow,
)
from scopeflow.service.states import JobState
from tests.conftest import add_job, add_user

S = JobState


def test_round_trip(engine: Engine) -> None:
    make = session_factory(engine)
    with make() as s:
        alice = add_user(s)
        job = add_job(s, alice, params={"n": 3, "nested": {"a": [1, 2]}, "s": "é"})
        s.commit()
        job_id = job.id
    assert len(job_id) == 32
    int(job_id, 16)
    with make() as s:
        job = s.get_one(Job, job_id)
        assert job.state is S.CREATED
        assert job.params == {"n": 3, "nested": {"a": [1, 2]}, "s": "é"}
        assert job.owner.name == "alice"
        assert job.attempts == 0
        assert job.scheduler == "local"
        assert job.claimed_by is None
        assert job.created_at.tzinfo is not None
        assert job.created_at.utcoffset() == timedelta(0)
        assert abs(utcnow() - job.created_at) < timedelta(minutes=1)
        assert s.scalar(text("SELECT state FROM jobs")) == "created"  # stored as the value


def test_timestamps_are_utc_and_naive_ones_refused(session: Session) -> None:
    alice = add_user(session)
    plus2 = datetime(2025, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    job = add_job(session, alice, started_at=plus2)
    session.commit()
    session.expire_all()
    assert job.started_at == plus2
    assert job.started_at is not None
    assert job.started_at.tzinfo == UTC
    assert job.started_at.hour == 12
    session.add(Job(owner_id=alice.id, name="n", template="t", started_at=datetime.now()))
    with pytest.raises(StatementError, match="time zone"):
        session.flush()
    session.rollback()


def test_unique_names_and_foreign_keys(session: Session) -> None:
    add_user(session)
    session.commit()
    with pytest.raises(IntegrityError):  # past create_user's own check: the unique constraint
        session.add(User(name="alice", password_hash="x"))
        session.flush()
    session.rollback()
    with pytest.raises(IntegrityError):  # foreign keys are enforced (also on SQLite)
        session.add(Job(owner_id=999, name="n", template="t"))
        session.flush()
    session.rollback()


def test_set_state_bookkeeping(session: Session) -> None:
    job = add_job(session, add_user(session))
    t = datetime(2025, 1, 1, tzinfo=UTC)
    set_state(session, job, S.READY, now=t)
    set_state(session, job, "queued", now=t + timedelta(seconds=1))
    assert job.attempts == 1
    set_state(session, job, S.RUNNING, now=t + timedelta(seconds=2), scheduler_id="123")
    assert job.started_at == t + timedelta(seconds=2)
    assert job.finished_at is None
    set_state(session, job, S.FAILED, now=t + timedelta(seconds=3), exit_code=1, error="boom")
    session.commit()
    session.expire_all()
    assert job.state is S.FAILED
    assert (job.scheduler_id, job.exit_code, job.error) == ("123", 1, "boom")
    assert job.finished_at == t + timedelta(seconds=3)
    assert job.updated_at == t + timedelta(seconds=3)
    # restart: a new attempt, the old attempt's record cleared
    set_state(session, job, S.QUEUED, now=t + timedelta(seconds=4))
    session.commit()
    session.expire_all()
    assert job.state is S.QUEUED
    assert job.attempts == 2
    assert (job.started_at, job.finished_at, job.scheduler_id, job.exit_code, job.error) == (
        None,
        None,
        None,
        None,
        None,
    )


def test_set_state_refuses_what_the_table_forbids(session: Session) -> None:
    job = add_job(session, add_user(session))
    with pytest.raises(InvalidTransitionError, match=job.id):
        set_state(session, job, S.RUNNING)
    assert job.state is S.CREATED
    with pytest.raises(TypeError, match="owner_id"):
        set_state(session, job, S.READY, owner_id=2)
    with pytest.raises(ValueError, match="bogus"):
        set_state(session, job, "bogus")
    session.commit()
    session.expire_all()
    assert job.state is S.CREATED


def test_set_state_is_compare_and_set(engine: Engine) -> None:
    make = session_factory(engine)
    with make() as s:
        job = add_job(s, add_user(s))
        set_state(s, job, S.READY)
        set_state(s, job, S.QUEUED)
        s.commit()
        job_id = job.id
    with make() as api, make() as worker:
        seen_by_api = api.get_one(Job, job_id)
        seen_by_worker = worker.get_one(Job, job_id)
        set_state(worker, seen_by_worker, S.RUNNING)
        worker.commit()
        # the API still believes the job is queued; cancelling it is allowed from both states,
        # but its view is out of date: refused, and its copy refreshed
        with pytest.raises(InvalidTransitionError, match="meanwhile to 'running'"):
            set_state(api, seen_by_api, S.CANCELLED)
        assert seen_by_api.state is S.RUNNING
        set_state(api, seen_by_api, S.CANCELLED)
        api.commit()
    with make() as s:
        assert s.get_one(Job, job_id).state is S.CANCELLED


def test_claims_and_release(session: Session) -> None:
    alice = add_user(session)
    jobs = [add_job(session, alice, state=S.QUEUED) for _ in range(3)]
    add_job(session, alice, state=S.RUNNING)
    session.commit()
    got = claim_jobs(session, "w1", S.QUEUED, limit=2)
    assert [j.id for j in got] == [j.id for j in jobs[:2]]
    assert all(j.claimed_by == "w1" and j.claimed_at is not None for j in got)
    assert [j.id for j in claim_jobs(session, "w2", [S.QUEUED, S.RUNNING])] == [
        jobs[2].id,
        *[j.id for j in session.scalars(select(Job).where(Job.state == S.RUNNING))],
    ]
    assert claim_jobs(session, "w3", S.QUEUED) == []
    # a released claim (what the worker does at a final state) can be claimed again
    session.execute(update(Job).where(Job.id == got[0].id).values(claimed_by=None))
    session.commit()
    assert [j.id for j in claim_jobs(session, "w3", S.QUEUED)] == [got[0].id]


def test_stale_claims_are_taken_over(session: Session) -> None:
    job = add_job(session, add_user(session), state=S.RUNNING)
    session.commit()
    t0 = utcnow()
    assert claim_jobs(session, "dead", S.RUNNING, now=t0) == [job]
    later = t0 + timedelta(minutes=10)
    assert claim_jobs(session, "new", S.RUNNING, now=later, stale_after=timedelta(hours=1)) == []
    got = claim_jobs(session, "new", S.RUNNING, now=later, stale_after=timedelta(minutes=5))
    assert got == [job]
    assert job.claimed_by == "new"


def test_two_workers_never_claim_the_same_job(engine: Engine) -> None:
    n_jobs = 40
    make = session_factory(engine)
    with make() as s:
        alice = add_user(s)
        for _ in range(n_jobs):
            add_job(s, alice, state=S.QUEUED)
        s.commit()

    # both workers read the same candidates before either writes its claims
    barrier = threading.Barrier(2, timeout=20)
    local = threading.local()
    met: list[str] = []  # the workers that went through the barrier

    @event.listens_for(engine, "after_cursor_execute")
    def _meet(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT JOBS.ID") and not getattr(
            local, "met", False
        ):
            local.met = True
            barrier.wait()
            met.append(threading.current_thread().name)

    results: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def work(worker: str) -> None:
        try:
            mine: list[str] = []
            with make() as s:
                while batch := claim_jobs(s, worker, S.QUEUED, limit=n_jobs):
                    mine += [j.id for j in batch]
            results[worker] = mine
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in ("w1", "w2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    event.remove(engine, "after_cursor_execute", _meet)
    assert not errors, errors
    assert len(met) == 2, met  # both read their candidates before either claimed: a real race
    claimed = results["w1"] + results["w2"]
    assert len(claimed) == len(set(claimed)) == n_jobs
    with make() as s:
        owners = {job_id: w for job_id, w in s.execute(select(Job.id, Job.claimed_by))}
    assert {j: w for w in ("w1", "w2") for j in results[w]} == owners


def test_postgresql_urls_use_psycopg3() -> None:
    engine = make_engine("postgresql://user:pw@localhost/db")  # does not connect
    assert engine.dialect.driver == "psycopg"
    engine.dispose()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file:x?mode=memory"])
def test_a_sqlite_database_must_be_a_file(url: str) -> None:
    with pytest.raises(ConfigError, match="SQLite needs a file path"):
        make_engine(url)
