"""A job's progress from its run's ``events.jsonl``: per step, each unit's latest state."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from scopeflow.engine.events import iter_events

__all__ = ["read_log", "run_progress"]


def run_progress(run_dir: Path) -> dict[str, Any]:
    """Progress of a run directory: its steps and the latest run counter.

    Steps come in the order they first appear, each with ``units`` (unit → state), ``counts``
    (state → number of units) and ``seconds`` (sum over finished units); ``run`` counts the
    runs (restarts increase it).
    """
    path = Path(run_dir) / "events.jsonl"
    steps: dict[str, dict[str, Any]] = {}
    run = 0
    if path.exists():
        for e in iter_events(path):
            step, unit, state = e.get("step"), e.get("unit"), e.get("state")
            if not isinstance(step, str) or not isinstance(unit, str) or state is None:
                continue
            run = max(run, int(e.get("run", 1) or 1))
            entry = steps.setdefault(step, {"units": {}, "seconds": 0.0})
            entry["units"][unit] = state
            if e.get("seconds") is not None and state == "done":
                entry["seconds"] += float(e["seconds"])
    out = []
    for name, entry in steps.items():
        out.append(
            {
                "step": name,
                "units": entry["units"],
                "counts": dict(Counter(entry["units"].values())),
                "seconds": round(entry["seconds"], 3),
            }
        )
    return {"run": run, "steps": out}


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
