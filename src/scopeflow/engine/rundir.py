"""The run directory contract (the names: :mod:`scopeflow.core.runlayout`).

::

    RUN/
      config.yaml        frozen copy of the validated configuration (defaults filled in)
      run.json           pipeline name, scopeflow version, one entry per run (restart)
      state/STEP/UNIT.json   completion record, written atomically after the unit's outputs
      events.jsonl       append-only events (see scopeflow.engine.events)
      logs/STEP/UNIT.log the unit's own log lines, all attempts
      outputs/           what the steps write
      summary.json       written at the end of every run
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from scopeflow import __version__
from scopeflow.core import RunDirError, atomic_write_json, atomic_write_text
from scopeflow.core import runlayout as layout
from scopeflow.engine.dag import Node


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: obj}


class RunDir:
    """Paths and records of one run directory.

    Parameters
    ----------
    path
        The run directory; created by :meth:`prepare`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).absolute()

    @property
    def config_path(self) -> Path:
        """``config.yaml``: frozen configuration."""
        return self.path / layout.CONFIG

    @property
    def meta_path(self) -> Path:
        """``run.json``: pipeline name and one entry per run."""
        return self.path / layout.META

    @property
    def state_dir(self) -> Path:
        """``state``: completion records."""
        return self.path / layout.STATE

    @property
    def events_path(self) -> Path:
        """``events.jsonl``: append-only event log."""
        return self.path / layout.EVENTS

    @property
    def logs_dir(self) -> Path:
        """``logs``: per-unit logs."""
        return self.path / layout.LOGS

    @property
    def outputs_dir(self) -> Path:
        """``outputs``: what the steps write."""
        return self.path / layout.OUTPUTS

    @property
    def summary_path(self) -> Path:
        """``summary.json``: written at the end of every run."""
        return self.path / layout.SUMMARY

    def record_path(self, node: Node) -> Path:
        """Completion record of ``node``."""
        return self.state_dir / node.step / f"{node.unit}.json"

    def log_path(self, node: Node) -> Path:
        """Log file of ``node``."""
        return layout.unit_log(self.path, node.step, node.unit)

    # -- set-up ------------------------------------------------------------------------------

    def prepare(self, pipeline: str, config: dict[str, Any], *, run_info: dict[str, Any]) -> int:
        """Create the layout, freeze the configuration, and register this run.

        On an existing run directory the frozen configuration must equal ``config`` and the
        pipeline must match; otherwise :class:`RunDirError` names the differing keys.

        Returns
        -------
        int
            The number of this run on the directory (1 for a new one).
        """
        self.path.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {"pipeline": pipeline, "runs": []}
        if self.meta_path.exists():
            try:
                meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise RunDirError(self.path, f"run.json is unreadable: {exc}") from None
            if meta.get("pipeline") != pipeline:
                raise RunDirError(
                    self.path,
                    f"holds a run of pipeline {meta.get('pipeline')!r}, not {pipeline!r}; "
                    "use another --workdir",
                )
        if self.config_path.exists():
            frozen = yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
            old, new = _flatten(frozen), _flatten(config)
            changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            if changed:
                shown = ", ".join(f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in changed[:5])
                raise RunDirError(
                    self.path,
                    f"was started with a different configuration: {shown}; finished units "
                    "would not match. Use another --workdir to run the new configuration",
                )
        else:
            atomic_write_text(
                self.config_path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
            )
        for folder in (self.state_dir, self.logs_dir, self.outputs_dir):
            folder.mkdir(exist_ok=True)
        meta.setdefault("scopeflow_version", __version__)
        meta["runs"].append(run_info)
        atomic_write_json(self.meta_path, meta)
        return len(meta["runs"])

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock so that two drivers never run on one directory at once."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunDirError(
                    self.path, "another scopeflow run is using this directory"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
        finally:
            os.close(fd)

    # -- completion records ------------------------------------------------------------------

    def read_record(self, node: Node) -> dict[str, Any] | None:
        """The completion record of ``node``, or None when it has not finished."""
        path = self.record_path(node)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError):
            return None  # unreadable: run the unit again rather than trust it
        if not isinstance(record, dict) or record.get("status") != "done":
            return None
        return record

    def write_record(self, node: Node, record: dict[str, Any]) -> None:
        """Write the completion record of ``node`` atomically."""
        atomic_write_json(self.record_path(node), record)
