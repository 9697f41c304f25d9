"""The engine on a real LocalCluster: results, events, checkpoints, retries, dead workers."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from distributed import Client

from scopeflow.core import RunStatus
from scopeflow.engine import read_events, run_pipeline
from scopeflow.pipelines import get_pipeline

TOY = get_pipeline("toy")


def _states(events: list[dict[str, object]], step: str, unit: str) -> list[object]:
    return [e["state"] for e in events if e["step"] == step and e["unit"] == unit]


def test_run_writes_outputs_events_logs_and_summary(tmp_path: Path, dask_client: Client) -> None:
    cfg = TOY.config_model(units=5)
    outcome = run_pipeline(TOY, cfg, tmp_path, client=dask_client)
    assert outcome.status is RunStatus.SUCCEEDED
    total = json.loads((tmp_path / "outputs" / "total.json").read_text())
    assert total == {"units": 5, "total": sum(i * i for i in range(5))}

    events = read_events(tmp_path / "events.jsonl")
    for unit in ("u0000", "u0004"):
        assert _states(events, "work", unit) == ["queued", "running", "done"]
    done = [e for e in events if e["state"] == "done"]
    assert len(done) == 11
    assert all(e["seconds"] is not None and e["worker"] for e in done)
    assert all(":" in str(e["worker"]) for e in done)  # host:pid of the worker process
    # dependency order: work[u] starts after prepare[u] finished
    ts = {(e["step"], e["unit"], e["state"]): e["ts"] for e in events}
    for i in range(5):
        u = f"u{i:04d}"
        assert ts[("prepare", u, "done")] <= ts[("work", u, "queued")]
    assert ts[("collect", "all", "queued")] >= max(
        ts[("work", f"u{i:04d}", "done")] for i in range(5)
    )

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["pipeline"] == "toy"
    assert summary["status"] == "succeeded"
    assert summary["wall_s"] > 0
    assert summary["outputs"] == {"total": "outputs/total.json"}
    assert summary["steps"]["work"]["units"] == 5
    assert summary["steps"]["work"]["done"] == 5
    assert summary["steps"]["collect"]["units"] == 1
    for st in summary["steps"].values():
        assert st["failed"] == 0
        assert st["max_s"] >= st["mean_s"] >= 0

    for step in ("prepare", "work"):
        assert len(list((tmp_path / "state" / step).glob("*.json"))) == 5
    log = (tmp_path / "logs" / "work" / "u0003.log").read_text()
    assert "value 9" in log
    assert "done in" in log


def test_rerun_skips_finished_units(tmp_path: Path, dask_client: Client) -> None:
    cfg = TOY.config_model(units=4)
    run_pipeline(TOY, cfg, tmp_path, client=dask_client)
    (tmp_path / "state" / "work" / "u0002.json").unlink()  # as if it had not finished
    outcome = run_pipeline(TOY, cfg, tmp_path, client=dask_client)
    assert outcome.status is RunStatus.SUCCEEDED
    second = [e for e in read_events(tmp_path / "events.jsonl") if e["run"] == 2]
    ran = {(e["step"], e["unit"]) for e in second if e["state"] == "running"}
    # the missing unit and the once-step downstream of it run again; nothing else does
    assert ran == {("work", "u0002"), ("collect", "all")}
    skipped = [e for e in second if e["state"] == "skipped"]
    assert len(skipped) == 4 + 3
    assert all(e["reason"] == "done-before" for e in skipped)
    assert outcome.summary["steps"]["work"]["done"] == 4


def test_failing_unit_fails_its_step_others_finish(tmp_path: Path, dask_client: Client) -> None:
    cfg = TOY.config_model(units=4, fail_units=["u0001"])
    outcome = run_pipeline(TOY, cfg, tmp_path, client=dask_client, retries=1)
    assert outcome.status is RunStatus.FAILED
    assert outcome.failed == [("work", "u0001", "RuntimeError: injected failure in unit u0001")]
    events = read_events(tmp_path / "events.jsonl")
    assert _states(events, "work", "u0001") == [
        "queued",
        "running",
        "failed",
        "queued",
        "running",
        "failed",
    ]
    final = [e for e in events if e["unit"] == "u0001" and e["state"] == "failed"][-1]
    assert final["attempt"] == 2
    assert ":" in final["worker"]  # host:pid of the worker the last attempt failed on
    assert "injected failure" in final["error"]
    assert _states(events, "collect", "all") == ["skipped"]
    for unit in ("u0000", "u0002", "u0003"):
        assert _states(events, "work", unit)[-1] == "done"
    summary = outcome.summary
    assert summary["status"] == "failed"
    assert summary["steps"]["work"] | {"failed": 1, "done": 3} == summary["steps"]["work"]
    assert summary["steps"]["collect"]["not_started"] == 1
    assert summary["failed"][0]["error"].startswith("RuntimeError")
    assert not (tmp_path / "outputs" / "total.json").exists()
    assert "Traceback" in (tmp_path / "logs" / "work" / "u0001.log").read_text()


def test_unit_whose_worker_dies_is_retried(tmp_path: Path, dask_client: Client) -> None:
    cfg = TOY.config_model(units=3, die_once_units=["u0001"])
    outcome = run_pipeline(TOY, cfg, tmp_path, client=dask_client)
    assert outcome.status is RunStatus.SUCCEEDED
    total = json.loads((tmp_path / "outputs" / "total.json").read_text())
    assert total["total"] == 0 + 1 + 4
    events = read_events(tmp_path / "events.jsonl")
    runs = [e for e in events if e["unit"] == "u0001" and e["step"] == "work"]
    running = [e for e in runs if e["state"] == "running"]
    assert len(running) == 2  # the first attempt died with its worker
    assert running[0]["worker"] != running[1]["worker"]
    assert runs[-1]["state"] == "done"
    assert runs[-1]["attempt"] == 2
    dead_pid = int((tmp_path / "outputs" / "work" / "u0001.died").read_text())
    assert str(running[0]["worker"]).endswith(f":{dead_pid}")


@pytest.mark.parametrize("retries", [0])
def test_retries_zero_fails_at_first_error(
    tmp_path: Path, dask_client: Client, retries: int
) -> None:
    cfg = TOY.config_model(units=2, fail_units=["u0000"])
    outcome = run_pipeline(TOY, cfg, tmp_path, client=dask_client, retries=retries)
    events = read_events(tmp_path / "events.jsonl")
    counts = Counter(e["state"] for e in events if e["unit"] == "u0000" and e["step"] == "work")
    assert counts["running"] == 1
    assert outcome.status is RunStatus.FAILED
