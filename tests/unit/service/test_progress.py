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


def test_events_since_reads_complete_lines_from_an_offset(tmp_path: Path) -> None:
    """The engine's reader that progress follows: torn and partial lines, offsets."""
    from scopeflow.engine.events import events_since, iter_events

    path = tmp_path / "events.jsonl"
    assert events_since(path, 7) == ([], 7)  # no file yet
    good = b'{"step": "a", "unit": "u0", "state": "done"}\n'
    torn = b'{"step": "a", "unit": "u1", "sta\n'  # a crash mid-write
    other = b'["not", "an", "event"]\n\n'
    partial = b'{"step": "b", "unit": "u2", "state": "run'  # being written
    path.write_bytes(good + torn + other + partial)
    events, offset = events_since(path)
    assert events == [{"step": "a", "unit": "u0", "state": "done"}]
    assert offset == len(good + torn + other)  # the partial line is left for next time
    with path.open("ab") as fh:
        fh.write(b'ning"}\n')
    events, end = events_since(path, offset)
    assert events == [{"step": "b", "unit": "u2", "state": "running"}]
    assert end == path.stat().st_size
    assert [e["unit"] for e in iter_events(path)] == ["u0", "u2"]
