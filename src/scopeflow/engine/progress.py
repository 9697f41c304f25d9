"""Progress reporting for humans: one rich progress bar per step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from scopeflow.core import UnitState


class ProgressSink(Protocol):
    """Receives unit state changes from the driver."""

    def start(self, totals: Mapping[str, int]) -> None:
        """Called once with the number of units of each step, in order."""

    def update(self, step: str, unit: str, state: UnitState) -> None:
        """Called for every state change of a unit (a retried failure comes as ``queued``)."""

    def stop(self) -> None:
        """Called once at the end of the run."""


class RichProgress:
    """A rich progress bar per step: finished/total units, failures, elapsed time."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description:<20}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._failed: dict[str, int] = {}
        self._running: dict[str, set[str]] = {}

    def start(self, totals: Mapping[str, int]) -> None:
        """Add one bar per step and start drawing."""
        for step, total in totals.items():
            self._tasks[step] = self._progress.add_task(step, total=total, note="")
            self._failed[step] = 0
            self._running[step] = set()
        self._progress.start()

    def update(self, step: str, unit: str, state: UnitState) -> None:
        """Advance the step's bar on a final state; count running and failed units."""
        task = self._tasks[step]
        running = self._running[step]
        if state is UnitState.RUNNING:
            running.add(unit)
        else:
            running.discard(unit)
        if state in (UnitState.DONE, UnitState.SKIPPED, UnitState.FAILED):
            if state is UnitState.FAILED:
                self._failed[step] += 1
            self._progress.advance(task)
        notes = []
        if running:
            notes.append(f"{len(running)} running")
        if self._failed[step]:
            notes.append(f"[red]{self._failed[step]} failed[/red]")
        self._progress.update(task, note=", ".join(notes))

    def stop(self) -> None:
        """Draw the final state and stop."""
        self._progress.stop()
