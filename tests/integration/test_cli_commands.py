"""``scopeflow synth`` and ``scopeflow run --scheduler`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tifffile
import yaml
from distributed import Client

from scopeflow.engine import read_events
from scopeflow.testing import SpimTruth
from tests.conftest import run_cli


def test_synth_spim_writes_data_truth_and_config(tmp_path: Path) -> None:
    out = tmp_path / "spim"
    result = run_cli(
        [
            "synth",
            "spim",
            out,
            "--views",
            "3",
            "--timepoints",
            "2",
            "--shape",
            "24,48,40",
            "--seed",
            "3",
        ]
    )
    assert result.returncode == 0, result.stderr
    truth = SpimTruth.from_json(out / "truth.json")
    assert truth.n_views == 3
    assert truth.n_timepoints == 2
    assert list(truth.angles) == [0.0, 120.0, 240.0]
    for t in range(2):
        for v in range(3):
            img = tifffile.imread(out / "tiff" / f"t{t:03d}_v{v:02d}.tif")
            assert img.shape == (24, 48, 40)
            assert img.dtype == np.uint16
        assert (out / "czi" / f"t{t:03d}.czi").stat().st_size > 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["ntimepoints"] == 2
    raw = json.loads((out / "truth.json").read_text())
    assert len(raw["views"][0]["true_affine"]) == 12


def test_synth_cyto_confocal_and_bad_kind(tmp_path: Path) -> None:
    out = tmp_path / "cyto"
    result = run_cli(["synth", "cyto", out, "--kind", "confocal", "--n", "1"])
    assert result.returncode == 0, result.stderr
    field = tifffile.imread(out / "fields" / "field000.tif")
    labels = tifffile.imread(out / "labels" / "field000.tif")
    assert field.shape == (5, 900, 1600)
    assert labels.shape == (900, 1600)
    rows = (out / "truth.csv").read_text().splitlines()
    assert len(rows) - 1 == labels.max() == len(np.unique(labels)) - 1
    bad = run_cli(["synth", "cyto", out, "--kind", "flow"])
    assert bad.returncode == 2
    assert "expected 'ifc' or 'confocal'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_run_on_an_existing_scheduler(tmp_path: Path, dask_client: Client) -> None:
    cfg = tmp_path / "toy.yaml"
    cfg.write_text("units: 3\n")
    address = dask_client.scheduler.address
    result = run_cli(
        ["run", "toy", "-c", cfg, "-w", tmp_path / "run", "--scheduler", address, "--no-progress"]
    )
    assert result.returncode == 0, result.stderr
    events = read_events(tmp_path / "run" / "events.jsonl")
    workers = {e["worker"] for e in events if e["state"] == "done"}
    # the units ran on the fixture's two worker processes, not on a new cluster
    pids = dask_client.run(__import__("os").getpid)
    assert {str(w).rsplit(":", 1)[1] for w in workers} <= {str(p) for p in pids.values()}
    assert dask_client.scheduler_info()["workers"], "the existing cluster must still be up"
    cfg.write_text("units: 3\ncluster: {startup_timeout: 3}\n")
    bad = run_cli(
        ["run", "toy", "-c", cfg, "-w", tmp_path / "run2", "--scheduler", "tcp://127.0.0.1:9"],
        timeout=120,
    )
    assert bad.returncode == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in bad.stderr
