from __future__ import annotations

import json
from pathlib import Path

import pytest

from scopeflow.core import RunDirError, UnitState
from scopeflow.engine import EventLog, Node, RunDir, read_events


def test_prepare_freezes_config_and_counts_runs(tmp_path: Path) -> None:
    rd = RunDir(tmp_path / "run")
    assert rd.prepare("toy", {"a": 1, "b": {"c": [1, 2]}}, run_info={}) == 1
    assert rd.prepare("toy", {"a": 1, "b": {"c": [1, 2]}}, run_info={}) == 2
    for folder in ("state", "logs", "outputs"):
        assert (rd.path / folder).is_dir()
    meta = json.loads(rd.meta_path.read_text())
    assert meta["pipeline"] == "toy"
    assert len(meta["runs"]) == 2
    with pytest.raises(RunDirError, match=r"b\.c"):
        rd.prepare("toy", {"a": 1, "b": {"c": [1, 3]}}, run_info={})
    with pytest.raises(RunDirError, match="pipeline 'toy'"):
        rd.prepare("other", {"a": 1, "b": {"c": [1, 2]}}, run_info={})


def test_lock_is_exclusive(tmp_path: Path) -> None:
    rd = RunDir(tmp_path)
    with (
        rd.lock(),
        pytest.raises(RunDirError, match="another scopeflow run"),
        RunDir(tmp_path).lock(),
    ):
        pass
    with rd.lock():  # released
        pass


def test_records_round_trip_and_corrupt_records_are_not_trusted(tmp_path: Path) -> None:
    rd = RunDir(tmp_path)
    node = Node("step", "t0")
    assert rd.read_record(node) is None
    rd.write_record(node, {"status": "done", "result": {"x": 1}})
    assert rd.read_record(node) == {"status": "done", "result": {"x": 1}}
    rd.record_path(node).write_text('{"status": "do')  # torn by a crash
    assert rd.read_record(node) is None
    assert not list(rd.record_path(node).parent.glob(".*.tmp"))


def test_event_log_appends_and_survives_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventLog(path, run=1) as log:
        log.emit("a", "t0", UnitState.QUEUED, attempt=1)
        log.emit("a", "t0", UnitState.DONE, attempt=1, worker="h:1", seconds=0.5)
    with path.open("a") as fh:
        fh.write('{"ts": 1, "step": "a", "un')  # a crash mid-line
    with EventLog(path, run=2) as log:
        log.emit("a", "t0", UnitState.SKIPPED, reason="done-before")
    events = read_events(path)
    assert [e["state"] for e in events] == ["queued", "done", "skipped"]
    assert [e["run"] for e in events] == [1, 1, 2]
    assert events[1]["seconds"] == 0.5
    assert events[2]["reason"] == "done-before"
    for e in events:
        assert {"ts", "step", "unit", "state", "attempt", "worker", "seconds", "error"} <= set(e)


def test_paths_follow_the_shared_layout(tmp_path: Path) -> None:
    from scopeflow.core import runlayout as layout

    run = RunDir(tmp_path)
    assert run.config_path == tmp_path / "config.yaml" == tmp_path / layout.CONFIG
    assert run.meta_path == tmp_path / "run.json" == tmp_path / layout.META
    assert run.state_dir == tmp_path / "state" == tmp_path / layout.STATE
    assert run.logs_dir == tmp_path / "logs" == tmp_path / layout.LOGS
    assert run.events_path == tmp_path / "events.jsonl" == tmp_path / layout.EVENTS
    assert run.outputs_dir == tmp_path / "outputs" == tmp_path / layout.OUTPUTS
    assert run.summary_path == tmp_path / "summary.json" == tmp_path / layout.SUMMARY
    node = Node("fuse", "t0001")
    assert run.log_path(node) == tmp_path / "logs" / "fuse" / "t0001.log"
    assert layout.unit_log(tmp_path, "fuse", "t0001") == run.log_path(node)
