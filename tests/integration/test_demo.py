"""``scopeflow demo`` end to end, and the example pipeline's accuracy on known truth."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.conftest import run_cli


def test_demo_runs_and_prints_where_results_are(tmp_path: Path) -> None:
    result = run_cli(["demo", "--workdir", tmp_path / "demo", "--no-progress"], timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    run = tmp_path / "demo" / "run"
    assert f"results are in {run / 'outputs'}" in " ".join(result.stdout.split())
    assert str(run / "summary.json") in result.stdout

    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "succeeded"
    assert summary["outputs"] == {
        "objects": "outputs/objects.csv",
        "report": "outputs/report.json",
    }
    report = json.loads((run / "outputs" / "report.json").read_text())
    assert report["images"] == 4
    # synthetic confocal fields with ~100 cells each, about half of them touching:
    # the example segmentation must find most of them and invent few
    assert report["recall"] >= 0.85
    assert report["precision"] >= 0.75
    with (run / "outputs" / "objects.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == report["objects"]
    assert {r["image_id"] for r in rows} == {f"field{i:03d}" for i in range(4)}
    assert all(int(r["area"]) >= 40 for r in rows)

    # a second demo on the same folder resumes: nothing runs again
    again = run_cli(["demo", "--workdir", tmp_path / "demo", "--no-progress"], timeout=300)
    assert again.returncode == 0, again.stderr
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    second = [e for e in events if e["run"] == 2]
    assert second
    assert {e["state"] for e in second} == {"skipped"}
