"""The toy pipeline through ``scopeflow run`` on a real Slurm and under a real mpirun."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from scopeflow.engine import read_events
from tests.conftest import run_cli
from tests.integration.conftest import MpiRun, SlurmInfo

UNITS = 6
TOTAL = sum(i * i for i in range(UNITS))


def _check_run(run: Path) -> list[str]:
    """Outputs, events and summary of a finished toy run; returns the 'work' log lines."""
    total = json.loads((run / "outputs" / "total.json").read_text())
    assert total == {"units": UNITS, "total": TOTAL}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "succeeded"
    assert summary["steps"]["work"]["done"] == UNITS
    events = read_events(run / "events.jsonl")
    done = [e for e in events if e["state"] == "done"]
    assert len(done) == 2 * UNITS + 1
    return [
        line
        for log in sorted((run / "logs" / "work").glob("*.log"))
        for line in log.read_text().splitlines()
        if " value " in line
    ]


@pytest.mark.slurm
def test_toy_pipeline_on_slurm_workers(tmp_path: Path, slurm: SlurmInfo) -> None:
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(
        f"units: {UNITS}\nsleep: 0.2\n"
        "cluster: {kind: slurm, memory: 1GB, walltime: '00:10:00', startup_timeout: 120}\n"
    )
    run = tmp_path / "run"
    result = run_cli(
        [
            "run",
            "toy",
            "-c",
            cfg,
            "-w",
            run,
            "--workers",
            "2",
            "--interface",
            "lo",
            "--queue",
            slurm.partition,
            "--no-progress",
        ],
        timeout=400,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = _check_run(run)
    assert len(lines) == UNITS
    jobs = {m.group(1) for line in lines if (m := re.search(r"on slurm job (\d+)", line))}
    # every unit ran inside a Slurm job, and the work was spread over the two worker jobs
    assert len(jobs) == 2, lines
    assert all("slurm job" in line for line in lines)
    job_logs = list((run / "logs" / "_cluster").glob("*"))
    assert job_logs, "dask-jobqueue job logs missing"
    leftover = subprocess.run(
        ["squeue", "-h", "-o", "%i", "-j", ",".join(sorted(jobs))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert leftover.stdout.strip() == "", "worker jobs were left running"


@pytest.mark.mpi
def test_toy_pipeline_under_mpirun(tmp_path: Path, mpirun: MpiRun) -> None:
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(f"units: {UNITS}\nsleep: 0.3\n")
    run = tmp_path / "run"
    result = mpirun.run_scopeflow(
        4,
        "run",
        "toy",
        "-c",
        cfg,
        "-w",
        run,
        "--cluster",
        "mpi",
        "--interface",
        "lo",
        "--no-progress",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = _check_run(run)
    ranks = {m.group(1) for line in lines if (m := re.search(r"on mpi rank (\d+)", line))}
    assert ranks == {"2", "3"}, lines  # rank 0 schedules, rank 1 drives, 2 and 3 work
    assert result.stdout.count("run directory") == 1  # only the driver rank reports
