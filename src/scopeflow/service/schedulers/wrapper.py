"""Run one command and write its exit record: ``python -m scopeflow.service.schedulers.wrapper``.

    python -m scopeflow.service.schedulers.wrapper JOB_DIR -- ARGV...

Runs ``ARGV`` (no shell) with stdout/stderr already redirected by the caller, waits, and writes
``JOB_DIR/scheduler/exit.json`` atomically (see :mod:`~scopeflow.service.schedulers.base`).
SIGTERM and SIGINT are passed on to the command (it decides how to stop: the engine writes its
summary) and the wrapper keeps waiting, so the record is written even when the job is
cancelled. A command that ignores SIGTERM is killed by the adapter (SIGKILL to the process group
after a grace period); the wrapper then dies with it and there is no record.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from scopeflow.core.fileio import atomic_write_json
from scopeflow.service.jobfiles import JobFiles


def main(argv: list[str]) -> int:
    """Entry point; returns the command's exit code (128 + signal when it was killed)."""
    if "--" not in argv or argv.index("--") != 1 or len(argv) < 3:
        print("usage: wrapper JOB_DIR -- ARGV...", file=sys.stderr)
        return 2
    job_dir = Path(argv[0])
    command = argv[2:]
    started = datetime.now(UTC).isoformat()
    try:
        proc = subprocess.Popen(command)  # an argv list: no shell
    except OSError as exc:
        print(f"cannot start {command[0]!r}: {exc}", file=sys.stderr)
        _record(job_dir, 127, started)
        return 127

    def forward(signum: int, _frame: FrameType | None) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = proc.wait()
    _record(job_dir, code, started)
    return code if code >= 0 else 128 - code


def _record(job_dir: Path, code: int, started: str) -> None:
    files = JobFiles(job_dir)
    files.scheduler_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        files.exit_record,
        {
            "exit_code": code,
            "started": started,
            "finished": datetime.now(UTC).isoformat(),
            "cancelled": files.cancel_marker.exists(),
        },
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
