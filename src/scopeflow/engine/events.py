"""The append-only event log of a run (``events.jsonl``).

One JSON object per line with the keys ``ts`` (UNIX seconds), ``step``, ``unit``, ``state``
(:class:`~scopeflow.core.UnitState`), ``attempt``, ``worker``, ``seconds`` and ``error``; extra keys
may follow (``reason`` for skipped units, ``run`` for the run counter). Only the driver process
writes the file, so lines never interleave.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from scopeflow.core import UnitState

EVENT_KEYS = ("ts", "step", "unit", "state", "attempt", "worker", "seconds", "error")


class EventLog:
    """Thread-safe appender of ``events.jsonl``.

    Parameters
    ----------
    path
        The ``events.jsonl`` file; created when missing, appended to otherwise.
    run
        Counter of this run on the run directory (1 for the first, 2 after a restart …).
    """

    def __init__(self, path: str | Path, *, run: int = 1) -> None:
        self.path = Path(path)
        self.run = run
        self._lock = threading.Lock()
        self._fh: TextIO | None = None

    def __enter__(self) -> EventLog:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Open the file for appending (done lazily by :meth:`emit` too)."""
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("a", encoding="utf-8")
            # a crash mid-line in an earlier run leaves a torn last line: start on a fresh line
            if self._fh.tell() > 0:
                with self.path.open("rb") as fh:
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":
                        self._fh.write("\n")

    def close(self) -> None:
        """Flush and close the file."""
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def emit(
        self,
        step: str,
        unit: str,
        state: UnitState,
        *,
        attempt: int = 0,
        worker: str | None = None,
        seconds: float | None = None,
        error: str | None = None,
        ts: float | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Append one event and flush it to disk; returns the event."""
        event: dict[str, Any] = {
            "ts": round(time.time() if ts is None else ts, 6),
            "step": step,
            "unit": unit,
            "state": str(state),
            "attempt": attempt,
            "worker": worker,
            "seconds": None if seconds is None else round(seconds, 6),
            "error": error,
            "run": self.run,
        }
        event.update(extra)
        line = json.dumps(event, separators=(",", ":")) + "\n"
        with self._lock:
            self.open()
            assert self._fh is not None
            self._fh.write(line)
            self._fh.flush()
        return event


def _parse(raw: bytes) -> dict[str, Any] | None:
    """One line as an event, or None (blank, a torn line left by a crash, not an event)."""
    try:
        event = json.loads(raw)
    except ValueError:  # also a line cut inside a UTF-8 character
        return None
    if isinstance(event, dict) and "step" in event and "state" in event:
        return event
    return None


def events_since(path: str | Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The events of the complete lines after byte ``offset``, and the offset after them.

    For following a log that is being written: a last line without its newline yet is left for
    the next call. A missing file has no events (the offset stays).
    """
    try:
        with Path(path).open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = [e for raw in data[:end].splitlines() if (e := _parse(raw)) is not None]
    return events, offset + end


def iter_events(path: str | Path) -> Iterator[dict[str, Any]]:
    """Read ``events.jsonl``, skipping a torn line left by a crash mid-write."""
    path = Path(path)
    if not path.exists():
        return
    with path.open("rb") as fh:
        for raw in fh:
            event = _parse(raw)
            if event is not None:
                yield event


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """All events of ``events.jsonl`` as a list (see :func:`iter_events`)."""
    return list(iter_events(path))
