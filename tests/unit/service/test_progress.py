"""Progress from events.jsonl, read incrementally; logs from a byte offset."""

from __future__ import annotations

import json
from pathlib import Path

from scopeflow.service.progress import read_log, run_progress


def _line(step: str, unit: str, state: str, **kw: object) -> bytes:
    return (json.dumps({"step": step, "unit": unit, "state": state, **kw}) + "\n").encode()


def test_progress_follows_a_growing_file_and_a_line_being_written(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    assert run_progress(tmp_path) == {"run": 0, "steps": []}
    events.write_bytes(_line("a", "u1", "running") + _line("a", "u2", "running"))
    first = run_progress(tmp_path)
    assert first["steps"][0]["counts"] == {"running": 2}
    done = _line("a", "u1", "done", seconds=1.5)
    with events.open("ab") as fh:  # a line half written
        fh.write(done[:10])
    assert run_progress(tmp_path) == first
    with events.open("ab") as fh:
        fh.write(done[10:] + b"{torn\n" + _line("b", "all", "done", seconds=2.0, run=2))
    p = run_progress(tmp_path)
    assert p["run"] == 2
    assert [(s["step"], s["counts"], s["seconds"]) for s in p["steps"]] == [
        ("a", {"done": 1, "running": 1}, 1.5),
        ("b", {"done": 1}, 2.0),
    ]
    events.unlink()  # a new run directory at the same place starts over
    events.write_bytes(_line("c", "x", "failed"))
    assert [s["step"] for s in run_progress(tmp_path)["steps"]] == ["c"]


def test_logs_from_an_offset_never_cut_a_character(tmp_path: Path) -> None:
    log = tmp_path / "u.log"
    assert read_log(log) == {"text": "", "offset": 0, "size": 0}
    log.write_bytes("µm ok\n".encode() + "é".encode()[:1])  # the é is not complete yet
    part = read_log(log)
    assert part["text"] == "µm ok\n" and part["offset"] == len("µm ok\n".encode())
    with log.open("ab") as fh:
        fh.write("é".encode()[1:] + b" end\n")
    rest = read_log(log, part["offset"])
    assert rest["text"] == "é end\n" and rest["offset"] == log.stat().st_size
    assert read_log(log, 10**9)["text"] == ""
