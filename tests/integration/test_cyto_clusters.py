"""The cytometry pipeline on real Slurm worker jobs and under a real mpirun: same as local."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scopeflow.engine import read_events
from scopeflow.testing import make_cyto_dataset
from tests.conftest import run_cli
from tests.integration.conftest import MpiRun, SlurmInfo

N = 60


@pytest.fixture(scope="module")
def ifc(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A small IFC dataset in batches of 20, and its features from a local run."""
    out = tmp_path_factory.mktemp("ifc")
    make_cyto_dataset(out, kind="ifc", n=N, seed=7)
    cfg = out / "config.yaml"
    cfg.write_text(cfg.read_text() + "batch_size: 20\n")
    run = out / "local"
    result = run_cli(["run", "cyto", "-c", cfg, "-w", run, "-n", "1", "--no-progress"])
    assert result.returncode == 0, result.stdout + result.stderr
    return cfg, _features(run)


def _features(run: Path) -> pd.DataFrame:
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "succeeded"
    assert summary["steps"]["process"]["done"] == N // 20
    table = pd.read_parquet(run / summary["outputs"]["features"])
    return table.sort_values(["ImageNumber", "ObjectNumber"]).reset_index(drop=True)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b) >= 0.99 * N
    numeric = a.select_dtypes("number").columns
    np.testing.assert_allclose(a[numeric].to_numpy(), b[numeric].to_numpy(), equal_nan=True)
    assert (a["image_id"] == b["image_id"]).all()


def _workers(run: Path) -> set[str]:
    return {
        e["worker"]
        for e in read_events(run / "events.jsonl")
        if e["state"] == "done" and e["step"] == "process"
    }


@pytest.mark.slurm
def test_cyto_on_slurm_worker_jobs_matches_local(
    ifc: tuple[Path, pd.DataFrame], tmp_path: Path, slurm: SlurmInfo
) -> None:
    cfg, local = ifc
    run = tmp_path / "run"
    args = ["run", "cyto", "-c", cfg, "-w", run, "--cluster", "slurm", "--workers", "2"]
    args += ["--memory", "2GB", "--interface", "lo", "--queue", slurm.partition, "--no-progress"]
    result = run_cli(args, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    _same(_features(run), local)
    job_logs = list((run / "logs" / "_cluster").glob("*"))
    assert job_logs, "dask-jobqueue job logs missing: no worker ran as a Slurm job"


@pytest.mark.mpi
def test_cyto_under_mpirun_matches_local(
    ifc: tuple[Path, pd.DataFrame], tmp_path: Path, mpirun: MpiRun
) -> None:
    cfg, local = ifc
    run = tmp_path / "run"
    result = mpirun.run_scopeflow(
        4,
        "run",
        "cyto",
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
    _same(_features(run), local)
    assert len(_workers(run)) == 2  # ranks 2 and 3 did the batches
