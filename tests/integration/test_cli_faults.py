"""``scopeflow run`` as a user runs it, with faults: killed driver, killed worker, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from scopeflow.engine import read_events
from tests.conftest import cli_env, run_cli, scopeflow_cmd, wait_for


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _count(events: list[dict[str, object]], state: str, step: str = "work") -> int:
    return sum(1 for e in events if e["state"] == state and e["step"] == step)


def test_killed_run_resumes_only_unfinished_units(tmp_path: Path) -> None:
    cfg = _write(tmp_path / "toy.yaml", "units: 10\nsleep: 0.8\n")
    run = tmp_path / "run"
    args = ["run", "toy", "-c", cfg, "-w", run, "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(
        scopeflow_cmd(*args), env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    events_path = run / "events.jsonl"
    wait_for(
        lambda: events_path.exists() and _count(read_events(events_path), "done") >= 3,
        120,
        "three finished work units",
    )
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, "worker processes outlived the killed run"

    first = read_events(events_path)
    done_before = {(e["step"], e["unit"]) for e in first if e["state"] == "done"}
    assert 3 <= _count(first, "done") < 10

    result = run_cli(args)
    assert result.returncode == 0, result.stderr
    events = read_events(events_path)
    second = [e for e in events if e["run"] == 2]
    ran = {(e["step"], e["unit"]) for e in second if e["state"] == "running"}
    skipped = {(e["step"], e["unit"]) for e in second if e["state"] == "skipped"}
    # a unit can finish (completion record written) after the driver's last 'done' event
    assert done_before <= skipped
    assert ran.isdisjoint(skipped)
    assert ran | skipped == {(s, f"u{i:04d}") for s in ("prepare", "work") for i in range(10)} | {
        ("collect", "all")
    }
    total = json.loads((run / "outputs" / "total.json").read_text())
    assert total["total"] == sum(i * i for i in range(10))
    assert json.loads((run / "summary.json").read_text())["run"] == 2


def test_killed_worker_mid_unit_run_completes_with_same_outputs(tmp_path: Path) -> None:
    cfg = _write(tmp_path / "toy.yaml", "units: 6\nsleep: 1.5\n")
    reference = run_cli(["run", "toy", "-c", cfg, "-w", tmp_path / "ref", "--no-progress"])
    assert reference.returncode == 0, reference.stderr

    run = tmp_path / "run"
    proc = subprocess.Popen(
        scopeflow_cmd("run", "toy", "-c", cfg, "-w", run, "--workers", "2", "--no-progress"),
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    events_path = run / "events.jsonl"

    def running_work() -> list[dict[str, object]]:
        if not events_path.exists():
            return []
        return [
            e for e in read_events(events_path) if e["step"] == "work" and e["state"] == "running"
        ]

    wait_for(lambda: bool(running_work()), 120, "a running work unit")
    victim = running_work()[0]
    pid = int(str(victim["worker"]).rsplit(":", 1)[1])
    assert pid != proc.pid
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr

    events = read_events(events_path)
    unit_events = [e for e in events if e["unit"] == victim["unit"] and e["step"] == "work"]
    assert [e["state"] for e in unit_events].count("running") >= 2
    assert unit_events[-1]["state"] == "done"
    for name in sorted((tmp_path / "ref" / "outputs" / "work").glob("*.txt")):
        assert (run / "outputs" / "work" / name.name).read_text() == name.read_text()
    assert (run / "outputs" / "total.json").read_text() == (
        tmp_path / "ref" / "outputs" / "total.json"
    ).read_text()
    assert "run directory" in stdout


def test_unit_that_always_raises_fails_the_run(tmp_path: Path) -> None:
    cfg = _write(tmp_path / "toy.yaml", "units: 3\nfail_units: [u0002]\nengine: {retries: 1}\n")
    result = run_cli(["run", "toy", "-c", cfg, "-w", tmp_path / "run", "--no-progress"])
    assert result.returncode == 1
    assert "failed work[u0002]: RuntimeError: injected failure in unit u0002" in result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["failed"] == [
        {"step": "work", "unit": "u0002", "error": "RuntimeError: injected failure in unit u0002"}
    ]
    events = read_events(tmp_path / "run" / "events.jsonl")
    assert _count(events, "running") == 3 + 1  # the failing unit ran twice (1 retry)
    assert _count(events, "done") == 2


@pytest.mark.parametrize(
    ("config", "args", "expected"),
    [
        ("units: -1\n", [], "units: Input should be greater than or equal to 1"),
        ("units: 2\nsleeps: 1\n", [], "sleeps: unknown key"),
        ("units: [2\n", [], "not valid YAML"),
        ("units: 2\ncluster: {kind: moon}\n", [], "cluster.kind: Input should be"),
        ("units: 2\n", ["--cluster", "moon"], "Invalid value for '--cluster'"),
        ("input: /does/not/exist\n", ["--pipeline-name", "example"], "input: path does not exist"),
    ],
)
def test_bad_input_gets_a_clear_error(
    tmp_path: Path, config: str, args: list[str], expected: str
) -> None:
    cfg = _write(tmp_path / "c.yaml", config)
    pipeline = "toy"
    if args[:1] == ["--pipeline-name"]:
        pipeline, args = args[1], args[2:]
    result = run_cli(["run", pipeline, "-c", cfg, "-w", tmp_path / "run", *args])
    assert result.returncode == 2
    assert expected in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "events.jsonl").exists()


def test_unknown_pipeline_and_missing_files(tmp_path: Path) -> None:
    cfg = _write(tmp_path / "c.yaml", "units: 2\n")
    result = run_cli(["run", "nonesuch", "-c", cfg])
    assert result.returncode == 2
    assert "unknown pipeline 'nonesuch'; known: cyto, example, spim, toy" in result.stderr
    result = run_cli(["run", "toy", "-c", tmp_path / "absent.yaml"])
    assert result.returncode == 2
    assert "configuration file not found" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = _write(tmp_path / "e.yaml", f"input: {empty}\n")
    result = run_cli(["run", "example", "-c", cfg, "-w", tmp_path / "run"])
    assert result.returncode == 2
    assert "images matching not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_changed_config_on_same_run_directory_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = _write(tmp_path / "c.yaml", "units: 2\n")
    assert run_cli(["run", "toy", "-c", cfg, "-w", run, "--no-progress"]).returncode == 0
    cfg.write_text("units: 3\n")
    result = run_cli(["run", "toy", "-c", cfg, "-w", run, "--no-progress"])
    assert result.returncode == 2
    assert "different configuration: units (2 -> 3)" in result.stderr


def test_version() -> None:
    from scopeflow import __version__

    result = run_cli(["--version"])
    assert result.returncode == 0
    assert result.stdout.strip() == f"scopeflow {__version__}"
