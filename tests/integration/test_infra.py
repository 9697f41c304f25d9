"""The HPC infrastructure itself works: a real Slurm runs batch jobs and Dask worker jobs
(dask-jobqueue), and OpenMPI runs a dask-mpi cluster.

Needs scripts/system-deps.sh and scripts/slurm-up.sh (or SCOPEFLOW_SLURM_AUTOSTART=1); see
tests/integration/conftest.py for how missing infrastructure skips or fails.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import dask.array as da
import pytest
from dask_jobqueue import SLURMCluster
from distributed import Client

if TYPE_CHECKING:
    from .conftest import MpiRun, SlurmInfo


def _squeue_ids(*args: str) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-o", "%A", *args], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    return out.split()


def _wait_until_no_jobs(job_name: str, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    left = _squeue_ids("-n", job_name)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _squeue_ids("-n", job_name)
    return left


def _wait_for_job_end(job_id: str, timeout: float = 120) -> str:
    """Final JobState of a job (COMPLETED, FAILED, ...), or what it is when time runs out."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
        match = re.search(r"\bJobState=(\S+)", out)
        state = match.group(1) if match else ""
        if state and state not in {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING"}:
            return state
        time.sleep(0.25)
    return state


@pytest.mark.slurm
def test_sbatch_job_runs_and_writes_output(slurm: SlurmInfo, tmp_path: Path) -> None:
    job_name = f"sf-infra-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "job.sh"
    script.write_text(
        textwrap.dedent(f"""\
        #!/bin/bash
        #SBATCH --job-name={job_name}
        #SBATCH --ntasks=1
        #SBATCH --cpus-per-task=1
        #SBATCH --mem=100M
        #SBATCH --time=00:02:00
        echo "job=$SLURM_JOB_ID partition=$SLURM_JOB_PARTITION answer=$((6 * 7))"
        """)
    )
    submit = subprocess.run(
        [
            "sbatch",
            "--parsable",
            f"--partition={slurm.partition}",
            f"--output={tmp_path}/job-%j.out",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert submit.returncode == 0, submit.stdout + submit.stderr
    job_id = submit.stdout.strip().split(";")[0]
    assert job_id.isdigit(), submit.stdout
    # poll rather than `sbatch --wait`, whose back-off adds up to ~8 s
    assert _wait_for_job_end(job_id) == "COMPLETED"

    output = (tmp_path / f"job-{job_id}.out").read_text()
    assert output == f"job={job_id} partition={slurm.partition} answer=42\n"

    if slurm.accounting:
        # sacct needs slurmdbd. The record arrives shortly after the job ends, and can
        # briefly show the job name as "allocation" before slurmctld's full record lands.
        expected = f"{job_id}|{job_name}|COMPLETED|0:0"
        deadline = time.monotonic() + 30
        record = ""
        while record != expected and time.monotonic() < deadline:
            time.sleep(0.5)
            record = subprocess.run(
                ["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,JobName,State,ExitCode"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout.strip()
        assert record == expected


@pytest.mark.slurm
def test_slurmcluster_runs_dask_workers_as_slurm_jobs(slurm: SlurmInfo, tmp_path: Path) -> None:
    job_name = f"sf-infra-{uuid.uuid4().hex[:8]}"
    with SLURMCluster(
        cores=1,
        processes=1,
        memory="1GB",
        walltime="00:10:00",
        queue=slurm.partition,
        job_name=job_name,
        interface="lo",  # single node: workers and scheduler talk over loopback
        python=sys.executable,  # the job script must start the venv's Python
        log_directory=str(tmp_path / "logs"),
        local_directory=str(tmp_path / "dask-worker-space"),
        scheduler_options={"dashboard_address": ":0"},  # never collide on :8787
    ) as cluster:
        cluster.scale(jobs=2)
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=180)
            job_ids = client.run(lambda: os.environ.get("SLURM_JOB_ID"))
            assert len(set(job_ids.values())) == 2
            assert all(job_id and job_id.isdigit() for job_id in job_ids.values())
            assert set(job_ids.values()) <= set(_squeue_ids("-n", job_name))

            total = client.compute(da.arange(1000, chunks=100).sum()).result()
            assert total == 499500
            squares = client.gather(client.map(lambda x: x * x, range(10)))
            assert sum(squares) == 285

    assert _wait_until_no_jobs(job_name) == [], "worker jobs left behind after cluster.close()"


DASK_MPI_SCRIPT = """\
import sys

from dask_mpi import initialize

# rank 0: scheduler, rank 1: this client code, ranks 2..: workers
initialize(interface="lo", nthreads=1, memory_limit="1GB", dashboard_address=":0",
           local_directory=sys.argv[1])

from distributed import Client

with Client() as client:
    client.wait_for_workers(2, timeout=120)
    n_workers = len(client.scheduler_info()["workers"])
    total = client.submit(sum, client.map(lambda x: x * x, range(10))).result()
    print(f"RESULT workers={n_workers} total={total}", flush=True)
# leaving the client rank runs dask_mpi's atexit hook, which shuts the scheduler
# and workers down, so every rank exits
"""


@pytest.mark.mpi
def test_dask_mpi_under_mpirun(mpirun: MpiRun, tmp_path: Path) -> None:
    script = tmp_path / "dask_mpi_job.py"
    script.write_text(DASK_MPI_SCRIPT)
    cmd = mpirun.cmd(4, sys.executable, "-m", "mpi4py", str(script), str(tmp_path / "dask"))
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=mpirun.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # mpirun forwards it to the ranks
        try:
            stdout, stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        pytest.fail(f"mpirun hung (killed after 180 s)\n{stdout}\n{stderr[-4000:]}")

    assert proc.returncode == 0, f"{stdout}\n{stderr[-4000:]}"
    results = [line for line in stdout.splitlines() if line.startswith("RESULT")]
    assert results == ["RESULT workers=2 total=285"], stdout
