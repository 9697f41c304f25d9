"""Batch-system job scripts built from a ClusterSpec (no submission: dask-jobqueue renders them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scopeflow.core import ClusterKind, UnknownNameError
from scopeflow.engine import ClusterSpec, backend_for
from scopeflow.engine.clusters import AddressBackend, JobqueueBackend, LocalBackend, MPIBackend

EXPECTED_DIRECTIVES = {
    ClusterKind.SLURM: [
        "#SBATCH -p long",
        "#SBATCH -A proj42",
        "#SBATCH -t 02:30:00",
        "#SBATCH --qos=high",
        "#SBATCH --mem=4G",
        "#SBATCH --cpus-per-task=2",
    ],
    ClusterKind.PBS: [
        "#PBS -q long",
        "#PBS -A proj42",
        "#PBS -l walltime=02:30:00",
        "#PBS --qos=high",
        "#PBS -l select=1:ncpus=2:mem=3815MB",  # 4 GB in MiB
    ],
    ClusterKind.SGE: ["#$ -q long", "#$ -P proj42", "#$ -l h_rt=02:30:00", "#$ --qos=high"],
    ClusterKind.LSF: [
        "#BSUB -q long",
        '#BSUB -P "proj42"',
        "#BSUB -W 02:30\n",  # bsub -W takes [hours:]minutes
        "#BSUB --qos=high",
        "#BSUB -n 2",
    ],
}


@pytest.mark.parametrize("kind", sorted(EXPECTED_DIRECTIVES))
def test_job_script_carries_resources(kind: ClusterKind, tmp_path: Path) -> None:
    import dask_jobqueue

    spec = ClusterSpec(
        kind=kind,
        cores=2,
        memory="4GB",
        walltime="02:30:00",
        queue="long",
        account="proj42",
        job_extra=["--qos=high"],
        interface="lo",
    )
    backend = backend_for(spec, tmp_path)
    assert isinstance(backend, JobqueueBackend)
    cls = {
        ClusterKind.SLURM: dask_jobqueue.SLURMCluster,
        ClusterKind.PBS: dask_jobqueue.PBSCluster,
        ClusterKind.SGE: dask_jobqueue.SGECluster,
        ClusterKind.LSF: dask_jobqueue.LSFCluster,
    }[kind]
    kwargs = backend.cluster_kwargs()
    kwargs["scheduler_options"] = {"dashboard_address": ":0"}
    with cls(**kwargs) as cluster:
        script = cluster.job_script()
    for directive in EXPECTED_DIRECTIVES[kind]:
        assert directive in script, f"{directive!r} missing from:\n{script}"
    assert "distributed.cli.dask_worker" in script or "dask-worker" in script
    assert "--nthreads 2" in script
    assert "export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False" in script


def test_backend_selection(tmp_path: Path) -> None:
    assert isinstance(backend_for(ClusterSpec(), tmp_path), LocalBackend)
    assert isinstance(backend_for(ClusterSpec(kind="mpi"), tmp_path), MPIBackend)
    assert isinstance(
        backend_for(ClusterSpec(kind="slurm", scheduler="tcp://127.0.0.1:1"), tmp_path),
        AddressBackend,
    )
    with pytest.raises(UnknownNameError):
        backend_for(ClusterSpec.model_construct(kind="moon", scheduler=None), tmp_path)
