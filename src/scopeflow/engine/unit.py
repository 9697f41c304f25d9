"""Worker side: run one unit, log it, write its completion record.

:func:`execute_unit` is what the driver submits to Dask. It reports ``running`` through the
Dask scheduler's event stream (so the driver stays the only writer of ``events.jsonl``), writes
the unit's log lines to ``logs/<step>/<unit>.log``, and writes the completion record only after the
step function has returned, i.e. after its outputs exist.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import socket
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scopeflow.core import ScopeflowError
from scopeflow.engine.allocator import tune_allocator
from scopeflow.engine.context import UnitContext
from scopeflow.engine.dag import Node, StepFunc
from scopeflow.engine.rundir import RunDir

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"


class UnitError(ScopeflowError, RuntimeError):
    """A step function raised; carries the formatted error and traceback (picklable)."""

    def __init__(self, node: str, error: str, tb: str = "") -> None:
        self.node = node
        self.error = error
        self.tb = tb
        super().__init__(node, error, tb)

    def __str__(self) -> str:
        return self.error


@dataclass(frozen=True)
class UnitTask:
    """Everything a worker needs to run one unit (pickled to the worker)."""

    run_dir: str
    step: str
    unit: str
    func: StepFunc
    config: Any
    upstream: dict[str, Any]
    topic: str
    attempt: int = 1


def worker_name() -> str:
    """``host:pid`` of the current process (a Dask worker, or the driver for local calls)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux: the peak of this worker process so far
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _report(topic: str, msg: dict[str, Any]) -> None:
    try:
        from distributed import get_worker

        get_worker().log_event(topic, msg)
    except ValueError:  # not on a Dask worker (direct call in tests)
        pass


class _LazyFileHandler(logging.Handler):
    """Writes a unit's log file, but only once the unit logs something of its own.

    Bookkeeping lines (start, done) are held back until then, so a unit that logs nothing costs
    no file (file creation dominates the engine's per-unit overhead on shared file systems);
    its start, end and worker are in ``events.jsonl`` anyway.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(logging.DEBUG)
        self.path = path
        self.held: list[logging.LogRecord] = []
        self.stream: Any = None
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def hold(self, record: logging.LogRecord) -> None:
        """Keep a bookkeeping line; written before the first real line."""
        if self.stream is not None:
            self.emit(record)
        else:
            self.held.append(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.stream is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.stream = self.path.open("a", encoding="utf-8")
                for held in self.held:
                    self.stream.write(self.format(held) + "\n")
                self.held.clear()
            self.stream.write(self.format(record) + "\n")
            self.stream.flush()
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        super().close()


def _unit_logger(path: Path, node: Node) -> tuple[logging.Logger, _LazyFileHandler]:
    # a free-standing logger: not registered with logging's manager, so thousands of units
    # neither accumulate loggers nor invalidate logging's caches
    logger = logging.Logger(f"scopeflow.unit.{node.step}.{node.unit}", logging.DEBUG)
    logger.propagate = False
    handler = _LazyFileHandler(path)
    logger.addHandler(handler)
    return logger, handler


def _note(logger: logging.Logger, handler: _LazyFileHandler, msg: str, *args: Any) -> None:
    handler.hold(logger.makeRecord(logger.name, logging.INFO, __file__, 0, msg, args, None))


def execute_unit(task: UnitTask, token: str) -> dict[str, Any]:
    """Run one unit on a worker and return its completion record.

    Parameters
    ----------
    task
        The unit to run.
    token
        Identifies this submission to the driver (matches ``running`` reports to futures).

    Raises
    ------
    UnitError
        The step function raised, or returned something that is not JSON-serialisable.
    """
    tune_allocator()
    rundir = RunDir(task.run_dir)
    node = Node(task.step, task.unit)
    worker = worker_name()
    started = time.time()
    _report(task.topic, {"token": token, "who": worker, "ts": started})
    logger, handler = _unit_logger(rundir.log_path(node), node)
    try:
        _note(logger, handler, "start %s (submission %d) on %s", node, task.attempt, worker)
        ctx = UnitContext(
            step=task.step,
            unit=task.unit,
            attempt=task.attempt,
            run_dir=rundir.path,
            config=task.config,
            upstream=task.upstream,
            log=logger,
        )
        t0 = time.perf_counter()
        try:
            result = task.func(ctx)
            if result is not None and not isinstance(result, Mapping):
                raise TypeError(
                    f"step {task.step!r} returned {type(result).__name__}, expected a mapping"
                )
            payload = dict(result or {})
            json.dumps(payload)  # must round-trip through the completion record
        except Exception as exc:
            tb = traceback.format_exc()
            logger.error("failed: %s: %s\n%s", type(exc).__name__, exc, tb.rstrip())
            raise UnitError(str(node), f"{type(exc).__name__}: {exc}", tb) from None
        seconds = time.perf_counter() - t0
        record = {
            "status": "done",
            "step": task.step,
            "unit": task.unit,
            "worker": worker,
            "started": started,
            "finished": time.time(),
            "seconds": seconds,
            "peak_rss_mb": round(_peak_rss_mb(), 1),
            "result": payload,
        }
        rundir.write_record(node, record)
        _note(logger, handler, "done in %.3f s", seconds)
        return record
    finally:
        logger.removeHandler(handler)
        handler.close()
