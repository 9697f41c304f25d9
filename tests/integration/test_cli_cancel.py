"""``scopeflow run`` stopped by SIGTERM, as a cancelled service job is stopped.

The local scheduler signals the job's process group and the wrapper passes the signal on to the
command (so the driver gets it twice); ``scancel`` signals the batch job. Either way the run must
end the way Ctrl-C ends it: a ``summary.json`` with status ``cancelled``, no unit left open in
``events.jsonl``, the workers gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from scopeflow.engine import read_events
from tests.conftest import cli_env, scopeflow_cmd, wait_for

UNITS = 4


@pytest.mark.parametrize("group", [False, True], ids=["driver", "group-then-driver"])
def test_sigterm_cancels_the_run_cleanly(tmp_path: Path, group: bool) -> None:
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(f"units: {UNITS}\nsleep: 120\n")  # far longer than the test may take
    run = tmp_path / "run"
    proc = subprocess.Popen(
        scopeflow_cmd("run", "toy", "-c", cfg, "-w", run, "--workers", "2", "--no-progress"),
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as the local scheduler starts jobs
    )
    events_path = run / "events.jsonl"
    try:

        def work_running() -> bool:
            return events_path.exists() and any(
                e["step"] == "work" and e["state"] == "running" for e in read_events(events_path)
            )

        wait_for(work_running, 120, "a running work unit")
        children = psutil.Process(proc.pid).children(recursive=True)
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    assert proc.returncode == 130, stderr
    assert "cancelled" in stderr
    assert "Traceback" not in stderr
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, "worker processes outlived the cancelled run"

    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "cancelled"
    assert summary["failed"] == []
    for name, st in summary["steps"].items():
        assert st["done"] + st["failed"] + st["not_started"] + st["cancelled"] == st["units"], name
    assert summary["steps"]["work"]["done"] == 0
    assert summary["steps"]["work"]["cancelled"] == UNITS
    assert summary["steps"]["collect"]["cancelled"] == 1

    last: dict[tuple[str, str], dict[str, object]] = {}
    for event in read_events(events_path):
        last[(str(event["step"]), str(event["unit"]))] = event
    still_open = {k: e["state"] for k, e in last.items() if e["state"] in ("queued", "running")}
    assert not still_open, f"units left open in events.jsonl: {still_open}"
    closed = [e for e in last.values() if e.get("reason") == "cancelled"]
    assert "work" in {e["step"] for e in closed}
    assert all(e["state"] == "skipped" for e in closed)
    assert "cancelled while running" in {e["error"] for e in closed}
