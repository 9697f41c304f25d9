"""The ``slurm`` scheduler: ``sbatch`` / ``squeue`` / ``sacct`` / ``scancel``.

The batch script is rendered from the template's resources and the user's account mapping;
every value that reaches it is either produced by the service (paths under its data
directory, the job id) or checked against a strict pattern (partition, account, QoS, memory,
walltime), and the command line is written with :func:`shlex.quote` per argv element. The
script is handed to ``sbatch`` as a file and ``sbatch`` is run as an argv list: no user text is
ever interpreted by a shell.

State: the job's own exit record (written by the wrapper) is read first. Without one, ``squeue``
says whether it is pending or running; a job ``squeue`` no longer lists is looked up in
``sacct``. A query that fails (non-zero exit, timeout, unparsable output) gives ``unknown``:
never taken as completion.

:meth:`SlurmScheduler.statuses` asks for many jobs at once: one ``squeue --jobs=ID,ID,…`` for all
of them and one ``sacct --jobs=…`` for those ``squeue`` no longer lists (:data:`IDS_PER_CALL` ids
at most per command line). Some Slurm versions refuse the whole list when one id in it is no
longer known (``Invalid job id specified``, a job purged from the controller); the adapter then
lists its user's jobs (``squeue --user=UID``) and picks its own from them.
:meth:`~SlurmScheduler.status` is the same query for one job.

Rate: the worker asks every second or so, but the controller is asked about a job at most once
every :attr:`SlurmScheduler.min_status_s` (:data:`MIN_STATUS_S`, 15 s); in between the adapter
answers what the last ``squeue``/``sacct`` said. Exit records are read on every call, so a job
that ends is seen at once; a job the last query did not cover (just submitted) is asked at
once, and so is a job just cancelled.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from scopeflow.core.errors import ClusterError, ConfigError
from scopeflow.service.jobfiles import JobFiles
from scopeflow.service.schedulers.base import (
    JobSpec,
    Scheduler,
    SchedulerState,
    SchedulerStatus,
    job_environment,
    status_from_exit_record,
)

__all__ = ["IDS_PER_CALL", "MIN_STATUS_S", "SlurmScheduler", "render_script"]

IDS_PER_CALL = 500
"""The most job ids one ``squeue`` or ``sacct`` command line carries; more take several calls."""

MIN_STATUS_S = 15.0
"""Default of :attr:`SlurmScheduler.min_status_s`: seconds between two status queries of a job."""

_SAFE = {
    "partition": r"[A-Za-z0-9_.,-]{1,64}",
    "account": r"[A-Za-z0-9_.-]{1,64}",
    "qos": r"[A-Za-z0-9_.-]{1,64}",
    "memory": r"\d{1,7}[KMGT]?",
    "walltime": r"(\d{1,3}-)?\d{1,3}(:\d{2}){0,2}",
}
_SQUEUE = {
    "PENDING": SchedulerState.PENDING,
    "CONFIGURING": SchedulerState.PENDING,
    "REQUEUED": SchedulerState.PENDING,
    "RESIZING": SchedulerState.PENDING,
    "SUSPENDED": SchedulerState.PENDING,
    "RUNNING": SchedulerState.RUNNING,
    "COMPLETING": SchedulerState.RUNNING,
    "STAGE_OUT": SchedulerState.RUNNING,
}
_SACCT = {
    "COMPLETED": SchedulerState.SUCCEEDED,
    "CANCELLED": SchedulerState.CANCELLED,
    "FAILED": SchedulerState.FAILED,
    "TIMEOUT": SchedulerState.FAILED,
    "NODE_FAIL": SchedulerState.FAILED,
    "OUT_OF_MEMORY": SchedulerState.FAILED,
    "BOOT_FAIL": SchedulerState.FAILED,
    "DEADLINE": SchedulerState.FAILED,
    "PREEMPTED": SchedulerState.FAILED,
    "PENDING": SchedulerState.PENDING,
    "RUNNING": SchedulerState.RUNNING,
    "REQUEUED": SchedulerState.PENDING,
}


_JOB_ID = re.compile(r"\d{1,20}")
_SCANCEL_DONE = ("Invalid job id", "already completing or completed")
"""What ``scancel`` says of a job that has nothing left to cancel (purged from the controller,
or ended): the cancel is then done, and the job's status says how it ended."""
_SQUEUE_FORMAT = "--format=%i|%T"
_SACCT_FORMAT = "--format=JobID,State,ExitCode"


def _unknown(detail: str) -> SchedulerStatus:
    return SchedulerStatus(SchedulerState.UNKNOWN, None, detail)


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), IDS_PER_CALL):
        yield list(ids[start : start + IDS_PER_CALL])


def _squeue_rows(stdout: str, wanted: set[str]) -> dict[str, str]:
    """``{job id: state}`` from ``squeue --format=%i|%T`` lines, for the ids in ``wanted``."""
    listed: dict[str, str] = {}
    for line in stdout.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id in wanted:
            listed.setdefault(job_id, state.strip())
    return listed


def _sacct_status(fields: list[str]) -> SchedulerStatus:
    """The status of one ``State|ExitCode`` row of ``sacct``."""
    words = fields[0].split()
    state = words[0] if words else ""  # "CANCELLED by 0" -> CANCELLED
    code_text = fields[1].split(":")[0] if len(fields) > 1 else ""
    code = int(code_text) if code_text.isdigit() else None
    return SchedulerStatus(_SACCT.get(state, SchedulerState.UNKNOWN), code, state.lower())


def _checked(key: str, value: Any) -> str:
    text = str(value)
    if not re.fullmatch(_SAFE[key], text):
        raise ConfigError("slurm", [(key, f"{text!r} does not match {_SAFE[key]}")])
    return text


def _checked_path(key: str, path: Path) -> None:
    """Refuse a path that cannot stand unquoted in an ``#SBATCH`` line.

    ``#SBATCH`` values are not shell words and cannot be quoted: whitespace ends the value, and
    a newline would start a new line of the script (a shell command).
    """
    text = str(path)
    if any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in text):
        raise ConfigError("slurm", [(key, f"{text!r} contains whitespace or control characters")])


def render_script(spec: JobSpec, python: str) -> str:
    """The batch script of ``spec`` (see the module docstring for what may reach it).

    Raises
    ------
    ConfigError
        A resource or account value with characters Slurm names do not have, or a path (job
        directory, working directory) with whitespace or control characters.
    """
    files = JobFiles(spec.job_dir)
    folder = files.scheduler_dir
    cwd = spec.cwd or spec.job_dir
    for key, path in (("job_dir", spec.job_dir), ("cwd", cwd), ("scheduler_dir", folder)):
        _checked_path(key, path)
    res, acc = spec.resources, spec.account
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", spec.name)[:64] or "scopeflow"
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={name}",
        f"#SBATCH --output={files.log('stdout')}",
        f"#SBATCH --error={files.log('stderr')}",
        "#SBATCH --open-mode=append",  # a restart adds to the logs, as the local adapter does
        f"#SBATCH --chdir={cwd}",
        "#SBATCH --ntasks=1",
        f"#SBATCH --cpus-per-task={int(res.get('cores', 1))}",
    ]
    if res.get("memory"):
        lines.append(f"#SBATCH --mem={_checked('memory', res['memory'])}")
    if res.get("walltime"):
        lines.append(f"#SBATCH --time={_checked('walltime', res['walltime'])}")
    if int(res.get("gpus", 0) or 0) > 0:
        lines.append(f"#SBATCH --gres=gpu:{int(res['gpus'])}")
    partition = acc.get("partition") or res.get("partition")
    if partition:
        lines.append(f"#SBATCH --partition={_checked('partition', partition)}")
    for key in ("account", "qos"):
        if acc.get(key):
            lines.append(f"#SBATCH --{key}={_checked(key, acc[key])}")
    exports = [
        f"export {k}={shlex.quote(v)}"
        for k, v in spec.env.items()
        if re.fullmatch(r"[A-Z_][A-Z0-9_]*", k)
    ]
    command = files.wrapper_argv(python, spec.argv)
    # exec: the wrapper *is* the batch step's process, so the job ends when the wrapper has
    # written the exit record, not when bash dies of the cancel's SIGTERM a second before
    return "\n".join([*lines, *exports, "exec " + shlex.join(command), ""])


class SlurmScheduler(Scheduler):
    """Jobs through Slurm's command-line tools.

    Parameters
    ----------
    python
        Interpreter on the compute nodes that runs the wrapper (default: this one; the
        service's environment must be visible there, as on a shared file system).
    sbatch, squeue, sacct, scancel
        The commands (names or paths).
    timeout_s
        Limit of each command.
    min_status_s
        Seconds an answer of ``squeue``/``sacct`` is used for before the controller is asked
        again (:meth:`statuses`); 0 asks on every call.
    """

    name = "slurm"

    def __init__(
        self,
        python: str | None = None,
        *,
        sbatch: str = "sbatch",
        squeue: str = "squeue",
        sacct: str = "sacct",
        scancel: str = "scancel",
        timeout_s: float = 30.0,
        min_status_s: float = MIN_STATUS_S,
    ) -> None:
        self.python = python or sys.executable
        self.commands = {"sbatch": sbatch, "squeue": squeue, "sacct": sacct, "scancel": scancel}
        self.timeout_s = timeout_s
        self.min_status_s = min_status_s
        #: job id -> (time.monotonic() of the query, what squeue/sacct said)
        self._answers: dict[str, tuple[float, SchedulerStatus]] = {}

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # an argv list: no shell
            [self.commands[tool], *args],
            capture_output=True,
            text=True,
            timeout=self.timeout_s,
            check=False,
            # sbatch exports the environment it runs in to the job: never the service's secrets
            env=job_environment(),
        )

    def submit(self, spec: JobSpec) -> str:
        """Write the script and ``sbatch --parsable`` it; return the Slurm job id.

        Raises
        ------
        ClusterError
            sbatch failed or printed no job id.
        """
        files = JobFiles(spec.job_dir)
        files.clear_attempt()
        script = files.scheduler_dir / "job.sbatch"
        script.write_text(render_script(spec, self.python), encoding="utf-8")
        try:
            out = self._run("sbatch", "--parsable", str(script))
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ClusterError(f"sbatch failed: {exc}") from exc
        job_id = out.stdout.strip().split(";")[0]
        if out.returncode != 0 or not job_id.isdigit():
            raise ClusterError(f"sbatch failed (exit {out.returncode}): {out.stderr.strip()}")
        return job_id

    def status(self, scheduler_id: str, job_dir: Path) -> SchedulerStatus:
        """Exit record, else squeue, else sacct; ``unknown`` when they cannot tell."""
        return self.statuses([(scheduler_id, job_dir)])[0]

    def statuses(self, jobs: Sequence[tuple[str, Path]]) -> list[SchedulerStatus]:
        """The states of ``jobs`` (``(scheduler_id, job_dir)`` each), in their order.

        Each job's exit record first (read on every call). For the jobs without one: if Slurm
        was asked about each of them less than :attr:`min_status_s` ago, its answers then (no
        query); else one ``squeue`` for all of them and, for those ``squeue`` no longer lists
        (and still without an exit record), one ``sacct``. A query that fails makes the jobs it
        was asked about ``unknown``, an answer kept like any other for :attr:`min_status_s`
        (a failing controller is not asked again every round); an id that is not a Slurm job id
        (digits) is ``unknown`` without a query.
        """
        found: list[SchedulerStatus | None] = [status_from_exit_record(d) for _, d in jobs]
        ask: list[int] = []
        for i, (sid, _) in enumerate(jobs):
            if found[i] is not None:
                continue
            if _JOB_ID.fullmatch(sid):
                ask.append(i)
            else:
                found[i] = _unknown(f"not a Slurm job id: {sid!r}")
        now = time.monotonic()
        kept = {
            sid: answer
            for sid, answer in self._answers.items()
            if now - answer[0] < self.min_status_s
        }
        self._answers = kept  # older answers are of no use any more
        if ask and all(jobs[i][0] in kept for i in ask):
            for i in ask:
                found[i] = kept[jobs[i][0]][1]
        elif ask:
            for i, status in self._query(jobs, ask).items():
                found[i] = status
                self._answers[jobs[i][0]] = (now, status)
        return [s if s is not None else _unknown("not asked") for s in found]

    def _query(
        self, jobs: Sequence[tuple[str, Path]], ask: list[int]
    ) -> dict[int, SchedulerStatus]:
        """The status of ``jobs[i]`` for each ``i`` in ``ask``: one squeue, at most one sacct."""
        found: dict[int, SchedulerStatus] = {}
        gone: list[int] = []
        listed = self._squeue(sorted({jobs[i][0] for i in ask}, key=int))
        for i in ask:
            if isinstance(listed, SchedulerStatus):  # squeue failed
                found[i] = listed
                continue
            state = listed.get(jobs[i][0])
            if state is None:
                record = status_from_exit_record(jobs[i][1])  # it may have ended meanwhile
                if record is None:
                    gone.append(i)
                else:
                    found[i] = record
            elif state in _SQUEUE:
                found[i] = SchedulerStatus(_SQUEUE[state], None, state.lower())
            else:  # a state squeue shows that is not in the table
                found[i] = _unknown(f"squeue: {state}")
        if gone:
            accounted = self._sacct(sorted({jobs[i][0] for i in gone}, key=int))
            for i in gone:
                if isinstance(accounted, SchedulerStatus):
                    found[i] = accounted
                else:
                    found[i] = accounted.get(
                        jobs[i][0], _unknown("sacct: no accounting record yet")
                    )
        return found

    def _squeue(self, ids: list[str]) -> dict[str, str] | SchedulerStatus:
        """``{job id: state}`` of the ``ids`` squeue lists, or ``unknown`` when it fails."""
        listed: dict[str, str] = {}
        for chunk in _chunks(ids):
            try:
                q = self._run("squeue", "--noheader", f"--jobs={','.join(chunk)}", _SQUEUE_FORMAT)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return _unknown(f"squeue: {exc}")
            if q.returncode != 0 and "Invalid job id" not in q.stderr:
                return _unknown(f"squeue: {q.stderr.strip()}")
            if q.returncode != 0 and len(chunk) > 1:  # one id of the list is no longer known
                return self._squeue_mine(set(ids))
            if q.returncode == 0:  # else: the one job is no longer known, so not listed
                listed.update(_squeue_rows(q.stdout, set(chunk)))
        return listed

    def _squeue_mine(self, wanted: set[str]) -> dict[str, str] | SchedulerStatus:
        """The jobs of this user that squeue lists, restricted to ``wanted``."""
        try:
            q = self._run("squeue", "--noheader", f"--user={os.getuid()}", _SQUEUE_FORMAT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return _unknown(f"squeue: {exc}")
        if q.returncode != 0:
            return _unknown(f"squeue: {q.stderr.strip()}")
        return _squeue_rows(q.stdout, wanted)

    def _sacct(self, ids: list[str]) -> dict[str, SchedulerStatus] | SchedulerStatus:
        """``{job id: status}`` of the ``ids`` sacct has a record of, or ``unknown`` on failure."""
        rows: dict[str, list[str]] = {}
        for chunk in _chunks(ids):
            try:
                a = self._run(
                    "sacct",
                    "--noheader",
                    "--allocations",
                    "--parsable2",
                    f"--jobs={','.join(chunk)}",
                    _SACCT_FORMAT,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                return _unknown(f"sacct: {exc}")
            if a.returncode != 0:
                return _unknown(f"sacct: {a.stderr.strip() or 'no accounting record yet'}")
            wanted = set(chunk)
            for line in a.stdout.splitlines():
                job_id, *fields = line.strip().split("|")
                if job_id in wanted and fields:
                    rows.setdefault(job_id, fields)  # the first row, as sacct lists them
        return {job_id: _sacct_status(fields) for job_id, fields in rows.items()}

    def cancel(self, scheduler_id: str, job_dir: Path) -> None:
        """Mark the job cancelled and ``scancel`` it.

        One plain ``scancel ID``: a pending job is removed from the queue; a running one has
        all its steps signalled, the batch step included (SIGCONT and SIGTERM, then SIGKILL after
        Slurm's ``KillWait``), so the wrapper passes SIGTERM on to the command and writes its exit
        record. A job Slurm no longer knows (:data:`_SCANCEL_DONE`: purged, or already ending) is
        not an error: its status says how it ended.

        Raises
        ------
        ClusterError
            scancel failed.
        """
        JobFiles(job_dir).request_cancel()
        self._answers.pop(scheduler_id, None)  # the next status asks Slurm again
        try:
            out = self._run("scancel", scheduler_id)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ClusterError(f"scancel failed: {exc}") from exc
        if out.returncode != 0 and not any(text in out.stderr for text in _SCANCEL_DONE):
            raise ClusterError(f"scancel failed (exit {out.returncode}): {out.stderr.strip()}")
