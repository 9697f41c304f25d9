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
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

from scopeflow.core.errors import ClusterError, ConfigError
from scopeflow.service.jobfiles import JobFiles
from scopeflow.service.schedulers.base import (
    JobSpec,
    SchedulerState,
    SchedulerStatus,
    job_environment,
    status_from_exit_record,
)

__all__ = ["SlurmScheduler", "render_script"]

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
    return "\n".join([*lines, *exports, shlex.join(command), ""])


class SlurmScheduler:
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
    ) -> None:
        self.python = python or sys.executable
        self.commands = {"sbatch": sbatch, "squeue": squeue, "sacct": sacct, "scancel": scancel}
        self.timeout_s = timeout_s

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
        final = status_from_exit_record(job_dir)
        if final is not None:
            return final
        try:
            q = self._run("squeue", "-h", "-j", scheduler_id, "-o", "%T")
        except (OSError, subprocess.TimeoutExpired) as exc:
            return SchedulerStatus(SchedulerState.UNKNOWN, None, f"squeue: {exc}")
        state = q.stdout.strip()
        if q.returncode == 0 and state in _SQUEUE:
            return SchedulerStatus(_SQUEUE[state], None, state.lower())
        listed = q.returncode == 0 and state != ""
        if listed:  # a state squeue shows that is not in the table
            return SchedulerStatus(SchedulerState.UNKNOWN, None, f"squeue: {state}")
        if q.returncode != 0 and "Invalid job id" not in q.stderr:
            return SchedulerStatus(SchedulerState.UNKNOWN, None, f"squeue: {q.stderr.strip()}")
        final = status_from_exit_record(job_dir)  # it may have finished in between
        if final is not None:
            return final
        return self._sacct(scheduler_id)

    def _sacct(self, scheduler_id: str) -> SchedulerStatus:
        try:
            a = self._run("sacct", "-n", "-X", "-P", "-j", scheduler_id, "-o", "State,ExitCode")
        except (OSError, subprocess.TimeoutExpired) as exc:
            return SchedulerStatus(SchedulerState.UNKNOWN, None, f"sacct: {exc}")
        rows = [r.split("|") for r in a.stdout.strip().splitlines() if "|" in r]
        if a.returncode != 0 or not rows:
            why = a.stderr.strip() or "no accounting record yet"
            return SchedulerStatus(SchedulerState.UNKNOWN, None, f"sacct: {why}")
        state = rows[0][0].split()[0]  # "CANCELLED by 0" -> CANCELLED
        code_text = rows[0][1].split(":")[0] if len(rows[0]) > 1 else ""
        code = int(code_text) if code_text.isdigit() else None
        return SchedulerStatus(_SACCT.get(state, SchedulerState.UNKNOWN), code, state.lower())

    def cancel(self, scheduler_id: str, job_dir: Path) -> None:
        """Mark the job cancelled and ``scancel`` it (SIGTERM, then Slurm's own kill).

        Raises
        ------
        ClusterError
            scancel failed.
        """
        JobFiles(job_dir).request_cancel()
        try:
            out = self._run("scancel", "--full", "--signal=TERM", scheduler_id)
            if out.returncode == 0:
                out = self._run("scancel", scheduler_id)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ClusterError(f"scancel failed: {exc}") from exc
        if out.returncode != 0:
            raise ClusterError(f"scancel failed (exit {out.returncode}): {out.stderr.strip()}")
