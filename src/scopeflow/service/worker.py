"""The job worker: claims queued jobs, submits them, follows them to their final state.

The API never runs pipeline code: it moves a job to ``queued`` and the worker (a separate
process, ``scopeflow worker``, started by ``scopeflow server``) does the rest. Each round
(:meth:`Worker.tick`):

1. **submit** — claims ``queued`` jobs without a scheduler id (``db.claim_jobs``; claims
   older than ``claim_timeout_s`` are taken over from a worker that died), builds the
   configuration from the job's template and parameters, writes it to ``config.yaml``, and
   submits the command (an argv list) to the scheduler adapter. The scheduler id is stored only
   if the job is still ``queued`` (a job cancelled meanwhile has its new submission cancelled).
   An invalid configuration or a refused submission → ``failed`` with the reason in ``error``.
2. **poll** — every ``queued`` / ``running`` job with a scheduler id, whoever submitted it
   (adapters keep no job state, so a restarted worker re-attaches here): the cancel marker
   (``scheduler/cancel``, created by the API) is passed on to the scheduler once (a cancel the
   scheduler refuses is logged and tried again next round; the job is polled all the same); then
   the scheduler's status moves the job to ``running`` / ``succeeded`` / ``failed`` /
   ``cancelled``, with exit code, times and, for failures, a short reason. ``unknown`` (the
   scheduler could not be asked) changes nothing. The states of all the round's jobs are asked
   in one call per adapter (``Scheduler.statuses``: one ``squeue`` and at most one ``sacct``
   for Slurm, which asks about a job at most once every ``min_status_s`` and answers from its
   last query in between); if that call raises, each of its jobs is asked on its own.
3. **sweep** — a job that the API moved to a final state while a worker still held its claim
   (a cancel racing a submission) has its scheduler job cancelled; its claim is released once
   the scheduler says that job has ended (until then each round asks again, so the ``local``
   adapter SIGKILLs a job that ignores SIGTERM after its grace period).

Every state change goes through :func:`~scopeflow.service.db.set_state` (compare-and-set); a
change that loses a race with the API is dropped and looked at again next round. One job's
error never stops the others; a database error rolls back and the round is retried later.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType

from sqlalchemy import select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, joinedload

from scopeflow.core.errors import (
    ClusterError,
    ConfigError,
    InvalidTransitionError,
    UnknownNameError,
)
from scopeflow.service._worker_process import WorkerProcess
from scopeflow.service._worker_status import apply_status
from scopeflow.service._worker_submit import (
    Submission,
    job_spec,
    read_submission,
    stderr_size,
    write_submission,
)
from scopeflow.service.auth import purge_expired_tokens
from scopeflow.service.db import Job, claim_jobs, make_engine, session_factory, set_state, utcnow
from scopeflow.service.jobfiles import JobFiles
from scopeflow.service.schedulers import Scheduler, SchedulerState, SchedulerStatus, make_scheduler
from scopeflow.service.settings import ServiceSettings
from scopeflow.service.states import ACTIVE, TERMINAL, JobState
from scopeflow.service.templates import TemplateCache, TemplateRegistry

__all__ = ["Worker", "WorkerProcess"]

log = logging.getLogger(__name__)

#: Seconds between two purges of expired tokens.
PURGE_EVERY_S = 600.0

_JobStep = Callable[[Session, Job], bool]


class Worker:
    """Moves jobs from ``queued`` to their final state through a scheduler adapter.

    Several workers may share one database: claims keep two from submitting the same job, and
    every state change is a compare-and-set.

    Parameters
    ----------
    settings
        The service's settings (database, jobs folder, templates, scheduler, accounts).
    worker_id
        Name stored in the claims of this worker (default: host, pid and a random suffix).
    scheduler
        The adapter that new jobs are submitted to (default: ``settings.scheduler``). Jobs
        submitted earlier are followed through the adapter named in their ``scheduler`` column.
    poll_s
        Seconds between rounds of :meth:`run` when nothing changed.
    batch
        The most jobs claimed per round.
    claim_timeout_s
        A claim older than this (its worker died before submitting) is taken over.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        worker_id: str | None = None,
        scheduler: Scheduler | None = None,
        poll_s: float = 1.0,
        batch: int = 20,
        claim_timeout_s: float = 300.0,
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id or _default_id()
        self.scheduler = scheduler or make_scheduler(settings.scheduler)
        self.poll_s = poll_s
        self.batch = batch
        self.claim_timeout = timedelta(seconds=claim_timeout_s)
        self._engine = make_engine(settings.database_url)
        self._sessions = session_factory(self._engine)
        self._schedulers: dict[str, Scheduler] = {self.scheduler.name: self.scheduler}
        self._templates = TemplateCache(settings.templates_path)
        self._cancel_sent: set[tuple[str, str]] = set()
        self._unknown: dict[str, str] = {}
        self._last_heartbeat = float("-inf")
        self._next_purge = float("-inf")

    # -- life cycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def __enter__(self) -> Worker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def run(self, stop: threading.Event) -> None:
        """Run rounds until ``stop`` is set (a round that changed something is followed at once).

        Parameters
        ----------
        stop
            Set it (e.g. from a signal handler) to end the loop after the current round.
        """
        url = make_url(self.settings.database_url).render_as_string(hide_password=True)
        log.info(
            "worker %s: scheduler %s, database %s, jobs in %s",
            self.worker_id,
            self.scheduler.name,
            url,
            self.settings.jobs_dir,
        )
        while not stop.is_set():
            try:
                changed = self.tick()
            except Exception:  # never let one round end the worker
                log.exception("worker round failed; trying again")
                changed = 0
            stop.wait(0.05 if changed else self.poll_s)
        log.info("worker %s stopped", self.worker_id)

    def tick(self) -> int:
        """One round: submit, poll, sweep (and, every ``PURGE_EVERY_S``, expired tokens).

        Returns
        -------
        int
            How many jobs changed (were submitted or changed state).
        """
        changed = 0
        phases = (self._submit_queued, self._poll_active, self._sweep_claims, self._purge_tokens)
        for phase in phases:
            try:
                changed += phase()
            except SQLAlchemyError as exc:
                log.error("database error in %s: %s; trying again next round", phase.__name__, exc)
        return changed

    def _purge_tokens(self) -> int:
        """Delete expired login tokens (else the tokens table only grows); counts no job."""
        if time.monotonic() < self._next_purge:
            return 0
        self._next_purge = time.monotonic() + PURGE_EVERY_S
        with self._sessions() as session:
            gone = purge_expired_tokens(session)
            session.commit()
        if gone:
            log.info("deleted %d expired tokens", gone)
        return 0

    # -- helpers -------------------------------------------------------------------------------

    def _guarded(self, session: Session, what: str, fn: _JobStep, job: Job) -> int:
        """Run ``fn(session, job)`` and commit; an error is logged and rolled back, not raised."""
        job_id = job.id
        try:
            changed = fn(session, job)
            session.commit()
        except InvalidTransitionError as exc:  # the API changed the job first
            session.rollback()
            log.info("job %s: %s", job_id, exc)
            return 0
        except Exception:
            session.rollback()
            log.exception("job %s: %s failed; trying again next round", job_id, what)
            return 0
        return int(changed)

    def _files(self, job: Job) -> JobFiles:
        return JobFiles.of_job(self.settings.jobs_dir, job)

    def _scheduler_for(self, name: str) -> Scheduler:
        if name not in self._schedulers:
            self._schedulers[name] = make_scheduler(name)
        return self._schedulers[name]

    # -- 1. submit -----------------------------------------------------------------------------

    def _submit_queued(self) -> int:
        registry = self._templates.get()
        if registry is None:
            return 0
        changed = 0
        with self._sessions() as session:
            mine = list(  # claimed by this worker in an earlier round, not submitted yet
                session.scalars(
                    select(Job)
                    .options(joinedload(Job.owner))
                    .where(
                        Job.state == JobState.QUEUED,
                        Job.scheduler_id.is_(None),
                        Job.claimed_by == self.worker_id,
                    )
                    .order_by(Job.created_at, Job.id)
                )
            )
            session.commit()
            claimed = claim_jobs(
                session, self.worker_id, JobState.QUEUED, self.batch, stale_after=self.claim_timeout
            )
            seen: set[str] = set()
            for job in [*mine, *claimed]:
                if job.id in seen or job.scheduler_id is not None:
                    continue  # a submitted job whose stale claim came back: polled below
                seen.add(job.id)
                submit = functools.partial(self._submit, registry=registry)
                changed += self._guarded(session, "submission", submit, job)
        return changed

    def _submit(self, session: Session, job: Job, *, registry: TemplateRegistry) -> bool:
        job_id, files = job.id, self._files(job)
        scheduler = self.scheduler
        previous = read_submission(files, job)
        if previous is not None:  # submitted, but the database never heard of it
            log.warning("job %s: attempt %d was submitted already", job.id, job.attempts)
            scheduler, sid = self._scheduler_for(previous.scheduler), previous.scheduler_id
        else:
            try:
                spec = job_spec(self.settings, job, files, registry, scheduler.python)
            except (ConfigError, UnknownNameError) as exc:
                return self._fail(session, job, f"invalid job configuration: {exc}")
            offset = stderr_size(files)
            try:
                sid = scheduler.submit(spec)
            except (ClusterError, ConfigError, OSError) as exc:
                return self._fail(session, job, f"submission to {scheduler.name} failed: {exc}")
            write_submission(
                files,
                Submission(job.id, job.attempts, scheduler.name, sid, time.time(), offset),
            )
        now = utcnow()
        result = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.state == JobState.QUEUED, Job.scheduler_id.is_(None))
            .values(
                scheduler_id=sid,
                scheduler=scheduler.name,
                claimed_by=self.worker_id,
                claimed_at=now,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:  # cancelled (or restarted) meanwhile
            session.rollback()
            log.warning(
                "job %s changed during its submission: stopping %s job %s",
                job_id,
                scheduler.name,
                sid,
            )
            scheduler.cancel(sid, files.root)
            return False
        log.info("job %s (%s): submitted to %s as %s", job.id, job.template, scheduler.name, sid)
        return True

    def _fail(self, session: Session, job: Job, error: str) -> bool:
        log.warning("job %s: %s", job.id, error)
        set_state(session, job, JobState.FAILED, error=error, claimed_by=None, claimed_at=None)
        return True

    # -- 2. poll -------------------------------------------------------------------------------

    def _poll_active(self) -> int:
        changed = 0
        with self._sessions() as session:
            self._heartbeat(session)
            jobs = list(
                session.scalars(
                    select(Job)
                    .options(joinedload(Job.owner))
                    .where(Job.state.in_(ACTIVE), Job.scheduler_id.is_not(None))
                    .order_by(Job.created_at, Job.id)
                )
            )
            session.commit()
            for job in jobs:  # a cancel that fails is tried again next round; the job is polled
                self._guarded(session, "cancel", self._cancel, job)
            known = self._statuses(jobs)
            for job in jobs:
                poll = functools.partial(self._poll, status=known.get(job.id))
                changed += self._guarded(session, "status update", poll, job)
        return changed

    def _statuses(self, jobs: list[Job]) -> dict[str, SchedulerStatus]:
        """The status of each job, asked of its adapter in one call per adapter.

        An adapter whose call raises answers nothing here: its jobs are asked one by one
        (:meth:`_poll`), so that one job's error stops no other.
        """
        by_adapter: dict[str, list[Job]] = {}
        for job in jobs:
            by_adapter.setdefault(job.scheduler, []).append(job)
        known: dict[str, SchedulerStatus] = {}
        for name, group in by_adapter.items():
            try:
                scheduler = self._scheduler_for(name)
                asked = [(str(job.scheduler_id), self._files(job).root) for job in group]
                answers = scheduler.statuses(asked)
            except Exception as exc:
                log.warning("%s: the status query of %d jobs failed (%s)", name, len(group), exc)
                continue
            known.update(zip((job.id for job in group), answers, strict=True))
        return known

    def _heartbeat(self, session: Session) -> None:
        """Keep the claims of submitted jobs fresh, so that no worker takes them over."""
        if time.monotonic() - self._last_heartbeat < self.claim_timeout.total_seconds() / 4:
            return
        session.execute(
            update(Job)
            .where(
                Job.state.in_(ACTIVE), Job.scheduler_id.is_not(None), Job.claimed_by.is_not(None)
            )
            .values(claimed_at=utcnow(), updated_at=Job.updated_at)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        self._last_heartbeat = time.monotonic()

    def _cancel(self, session: Session, job: Job) -> bool:
        """Pass the API's cancel marker on to the scheduler, once it has accepted it.

        A cancel the scheduler refuses (:class:`ClusterError`, e.g. ``scancel`` could not reach
        the controller) is logged and tried again next round; the job's status is asked all the
        same, so a job that ends meanwhile (or had ended) still reaches its final state.
        Returns False: no job changed here.
        """
        files = self._files(job)
        sid = str(job.scheduler_id)
        if files.cancel_marker.exists() and (job.id, sid) not in self._cancel_sent:
            scheduler = self._scheduler_for(job.scheduler)
            log.info("job %s: cancel requested; stopping %s job %s", job.id, scheduler.name, sid)
            try:
                scheduler.cancel(sid, files.root)
            except (ClusterError, OSError) as exc:
                log.warning(
                    "job %s: cancel of %s job %s failed (%s); trying again next round",
                    job.id,
                    scheduler.name,
                    sid,
                    exc,
                )
                return False
            self._cancel_sent.add((job.id, sid))
        return False

    def _poll(self, session: Session, job: Job, *, status: SchedulerStatus | None) -> bool:
        """Apply ``status`` (the round's answer), or ask the adapter for this job alone."""
        files = self._files(job)
        if status is None:
            status = self._scheduler_for(job.scheduler).status(str(job.scheduler_id), files.root)
        return self._apply(session, job, files, status)

    def _apply(self, session: Session, job: Job, files: JobFiles, status: SchedulerStatus) -> bool:
        if status.state is SchedulerState.UNKNOWN:
            if self._unknown.get(job.id) != status.detail:
                log.warning("job %s: state unknown (%s); asking again", job.id, status.detail)
                self._unknown[job.id] = status.detail
            return False
        self._unknown.pop(job.id, None)
        sid = str(job.scheduler_id)
        entered = apply_status(session, job, files, status)
        if entered is None:
            return False
        if entered is not JobState.RUNNING:
            self._cancel_sent.discard((job.id, sid))
        log.info("job %s: %s (%s)", job.id, entered, status.detail)
        return True

    # -- 3. sweep ------------------------------------------------------------------------------

    def _sweep_claims(self) -> int:
        with self._sessions() as session:
            jobs = list(
                session.scalars(
                    select(Job)
                    .options(joinedload(Job.owner))
                    .where(Job.state.in_(TERMINAL), Job.claimed_by.is_not(None))
                )
            )
            session.commit()
            for job in jobs:
                self._guarded(session, "claim release", self._release, job)
        return 0

    def _release(self, session: Session, job: Job) -> bool:
        """Stop what still runs of a job that ended behind a worker's back; then drop its claim.

        While the scheduler says the job is pending or running, it is cancelled (once per worker)
        and the claim is kept, so the next rounds ask again: the local adapter's status SIGKILLs
        a job still running ``grace_s`` after the cancel (one that ignores SIGTERM). The claim is
        released once the scheduler's state is final.
        """
        files = self._files(job)
        sid, name = job.scheduler_id, job.scheduler
        if sid is None and (record := read_submission(files, job)) is not None:
            sid, name = record.scheduler_id, record.scheduler
        if sid is not None:
            scheduler = self._scheduler_for(name)
            status = scheduler.status(sid, files.root)
            if status.state is SchedulerState.UNKNOWN:
                return False  # ask again next round
            if status.state in (SchedulerState.PENDING, SchedulerState.RUNNING):
                if (job.id, sid) not in self._cancel_sent:
                    log.warning(
                        "job %s is %s but its %s job %s runs: stopping it",
                        job.id,
                        job.state,
                        name,
                        sid,
                    )
                    scheduler.cancel(sid, files.root)  # an error: logged, tried again next round
                    self._cancel_sent.add((job.id, sid))
                return False  # the claim is kept until the scheduler's job has ended
            self._cancel_sent.discard((job.id, sid))
        session.execute(
            update(Job)
            .where(Job.id == job.id, Job.state == job.state, Job.claimed_by == job.claimed_by)
            .values(claimed_by=None, claimed_at=None, updated_at=Job.updated_at)
            .execution_options(synchronize_session=False)
        )
        return False


def _default_id() -> str:
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
