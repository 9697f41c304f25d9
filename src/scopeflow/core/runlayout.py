"""The names of a run directory's files (the contract of :mod:`scopeflow.engine.rundir`).

In the core layer so that readers of run directories (the service, its workers) use the engine's
names without importing the engine package, which imports Dask (0.2 s at every API start).
:class:`scopeflow.engine.rundir.RunDir` builds its paths from these names.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CONFIG",
    "EVENTS",
    "LOGS",
    "META",
    "OUTPUTS",
    "STATE",
    "SUMMARY",
    "unit_log",
]

CONFIG = "config.yaml"  #: frozen copy of the validated configuration
META = "run.json"  #: pipeline name, version, one entry per run
STATE = "state"  #: STEP/UNIT.json completion records
EVENTS = "events.jsonl"  #: append-only events
LOGS = "logs"  #: STEP/UNIT.log, and _cluster/ for batch jobs' logs
OUTPUTS = "outputs"  #: what the steps write
SUMMARY = "summary.json"  #: written at the end of every run


def unit_log(run_dir: str | Path, step: str, unit: str) -> Path:
    """``RUN/logs/STEP/UNIT.log``: one unit's log lines, all attempts."""
    return Path(run_dir) / LOGS / step / f"{unit}.log"
