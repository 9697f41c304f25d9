"""``scopeflow demo`` end to end: synthetic data, the cyto and spim pipelines, results."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.conftest import run_cli


def test_demo_runs_and_prints_where_results_are(tmp_path: Path) -> None:
    args = ["demo", "--workdir", tmp_path / "demo", "--ifc-images", "300", "--no-progress"]
    result = run_cli(args, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    text = " ".join(result.stdout.split())
    for kind in ("ifc", "confocal"):
        run = tmp_path / "demo" / kind / "run"
        assert f"{kind} results are in {run / 'outputs'}" in text
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "succeeded"
        assert {"features", "images", "qc"} <= set(summary["outputs"])
        features = pd.read_parquet(run / summary["outputs"]["features"])
        truth = pd.read_csv(tmp_path / "demo" / kind / "truth.csv")
        # every synthetic cell is found; touching confocal cells are split, not merged
        assert abs(len(features) - len(truth)) <= 0.03 * len(truth)
    assert "ifc: " in text and "cells found" in text
    spim = tmp_path / "demo" / "spim" / "run"
    assert f"spim results are in {spim / 'outputs'}" in text
    summary = json.loads((spim / "summary.json").read_text())
    assert summary["status"] == "succeeded"
    assert {"registered_xml", "output_xml", "output_zarr", "previews"} <= set(summary["outputs"])

    # a second demo on the same folder resumes: nothing runs again
    again = run_cli(args, timeout=600)
    assert again.returncode == 0, again.stderr
    events = [
        json.loads(line)
        for line in (tmp_path / "demo" / "ifc" / "run" / "events.jsonl").read_text().splitlines()
    ]
    second = [e for e in events if e["run"] == 2]
    assert second
    assert {e["state"] for e in second} == {"skipped"}
