"""A job's progress from its run's ``events.jsonl``: per step, each unit's latest state."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scopeflow.core import runlayout as layout

__all__ = ["read_log", "run_progress"]


@dataclass
class _Tally:
    """What has been read of one ``events.jsonl`` so far."""

    offset: int = 0
    inode: int = -1
    run: int = 0
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_TALLIES: dict[Path, _Tally] = {}
_LOCK = threading.Lock()
_MAX_TALLIES = 4096


def run_progress(run_dir: Path) -> dict[str, Any]:
    """Progress of a run directory: its steps and the latest run counter.

    Steps come in the order they first appear, each with ``units`` (unit → state), ``counts``
    (state → number of units) and ``seconds`` (sum over finished units); ``run`` counts the
    runs (restarts increase it). The file is read incrementally: each call parses only the
    complete lines appended since the last one (the API is polled every second or so, and a
    run of 100,000 units writes some 300,000 events).
    """
    path = Path(run_dir) / layout.EVENTS
    try:
        st = path.stat()
    except FileNotFoundError:
        with _LOCK:
            _TALLIES.pop(path, None)
        return {"run": 0, "steps": []}
    with _LOCK:  # only the table: a large first read of one run blocks no other run
        tally = _TALLIES.get(path)
        if tally is None or st.st_ino != tally.inode or st.st_size < tally.offset:
            if len(_TALLIES) >= _MAX_TALLIES:
                _TALLIES.clear()
            tally = _TALLIES[path] = _Tally(inode=st.st_ino)
    with tally.lock:
        _read_new(path, tally)
        return {"run": tally.run, "steps": _steps(tally)}


def _read_new(path: Path, tally: _Tally) -> None:
    from scopeflow.engine.events import events_since  # the engine (Dask) loads on first use

    events, tally.offset = events_since(path, tally.offset)
    for e in events:
        step, unit, state = e.get("step"), e.get("unit"), e.get("state")
        if not isinstance(step, str) or not isinstance(unit, str) or state is None:
            continue
        tally.run = max(tally.run, int(e.get("run", 1) or 1))
        entry = tally.steps.setdefault(step, {"units": {}, "seconds": 0.0})
        entry["units"][unit] = state
        if e.get("seconds") is not None and state == "done":
            entry["seconds"] += float(e["seconds"])


def _steps(tally: _Tally) -> list[dict[str, Any]]:
    return [
        {
            "step": name,
            "units": dict(entry["units"]),
            "counts": dict(Counter(entry["units"].values())),
            "seconds": round(entry["seconds"], 3),
        }
        for name, entry in tally.steps.items()
    ]


def read_log(path: Path, offset: int = 0, limit: int = 1 << 20) -> dict[str, Any]:
    """Text of ``path`` from byte ``offset`` (at most ``limit`` bytes), and where to go on.

    Returns ``{"text", "offset" (the next offset), "size"}``; a missing file reads as empty, so
    a client can poll a log before it exists.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return {"text": "", "offset": offset, "size": 0}
    start = min(max(offset, 0), size)
    with path.open("rb") as fh:
        fh.seek(start)
        data = fh.read(max(0, min(limit, 1 << 24)))
    used = len(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":  # a character cut at the end: next time
            used = exc.start
            text = data[:used].decode("utf-8", errors="replace")
        else:
            text = data.decode("utf-8", errors="replace")
    return {"text": text, "offset": start + used, "size": size}
