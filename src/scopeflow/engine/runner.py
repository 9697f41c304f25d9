"""The driver: runs a pipeline's unit graph on a Dask client, with checkpoints and retries.

The driver is the only writer of ``events.jsonl``. Workers report ``running`` through the
scheduler's event stream (:meth:`distributed.Client.subscribe_topic`); results come back with
the futures. A unit whose completion record exists (and whose upstream units are all complete) is
not run again. A unit whose function raises, or whose worker dies, is submitted again until it
has been tried ``retries + 1`` times; then it fails, and every unit downstream of it is skipped.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scopeflow.core import RunStatus, UnitState
from scopeflow.engine.dag import ONCE, Node, Pipeline
from scopeflow.engine.events import EventLog
from scopeflow.engine.progress import ProgressSink
from scopeflow.engine.rundir import RunDir
from scopeflow.engine.unit import UnitError, UnitTask, execute_unit

if TYPE_CHECKING:
    from distributed import Client, Future


@dataclass
class RunOutcome:
    """What a run leaves behind for its caller."""

    status: RunStatus
    run_dir: Path
    summary: dict[str, Any]
    failed: list[tuple[str, str, str]] = field(default_factory=list)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, UnitError):
        return exc.error
    name = type(exc).__name__
    if name == "KilledWorker":
        return "KilledWorker: the worker running this unit died (too many times)"
    return f"{name}: {exc}"


class _Driver:
    def __init__(
        self,
        pipeline: Pipeline,
        config: Any,
        rundir: RunDir,
        events: EventLog,
        *,
        retries: int,
        progress: ProgressSink | None,
    ) -> None:
        self.pipeline = pipeline
        self.config = config
        self.rundir = rundir
        self.client: Client | None = None
        self.events = events
        self.retries = retries
        self.progress = progress
        self.topic = f"scopeflow-{uuid.uuid4().hex[:12]}"
        self.units = list(pipeline.units(config))
        self.graph = pipeline.expand(self.units)
        self.down = self.graph.dependents()
        self.lock = threading.Lock()
        self.records: dict[Node, dict[str, Any]] = {}
        self.failed: dict[Node, str] = {}
        self.not_started: set[Node] = set()
        self.cancelled: set[Node] = set()
        self.waiting: dict[Node, int] = {}
        self.submissions: dict[Node, int] = {}
        self.starts: dict[Node, int] = {}  # 'running' reports seen = attempts begun
        self.last_worker: dict[Node, str] = {}
        self.token_node: dict[str, Node] = {}
        self.token_started: set[str] = set()
        self.finished_tokens: set[str] = set()

    # -- events -------------------------------------------------------------------------------

    def _emit(self, node: Node, state: UnitState, **kw: Any) -> None:
        self.events.emit(node.step, node.unit, state, **kw)
        if self.progress is not None:
            self.progress.update(node.step, node.unit, state)

    def _on_running(self, token: str, worker: str, ts: float) -> None:
        with self.lock:
            node = self.token_node.get(token)
            if node is None or token in self.finished_tokens:
                return  # a late report of a finished submission
            self.token_started.add(token)
            self.starts[node] = self.starts.get(node, 0) + 1
            self.last_worker[node] = worker
            self._emit(node, UnitState.RUNNING, attempt=self.starts[node], worker=worker, ts=ts)

    def _handle_topic(self, event: tuple[float, Any]) -> None:
        msg = event[1]
        if isinstance(msg, dict) and "token" in msg:
            self._on_running(str(msg["token"]), str(msg.get("who")), float(msg.get("ts", 0)))

    # -- submission ---------------------------------------------------------------------------

    def _upstream(self, node: Node) -> dict[str, Any]:
        step = self.pipeline.step(node.step)
        upstream: dict[str, Any] = {}
        for dep in step.after:
            up_step = self.pipeline.step(dep.step)
            if dep.mode == "unit":
                upstream[dep.step] = self.records[Node(dep.step, node.unit)]["result"]
            elif not up_step.fan_out:
                upstream[dep.step] = self.records[Node(dep.step, ONCE)]["result"]
            else:
                upstream[dep.step] = {
                    u: self.records[Node(dep.step, u)]["result"] for u in self.units
                }
        return upstream

    def _submit(self, node: Node) -> Future[dict[str, Any]]:
        n = self.submissions.get(node, 0) + 1
        self.submissions[node] = n
        token = f"{node.step}/{node.unit}/{n}"
        task = UnitTask(
            run_dir=str(self.rundir.path),
            step=node.step,
            unit=node.unit,
            func=self.pipeline.step(node.step).func,
            config=self.config,
            upstream=self._upstream(node),
            topic=self.topic,
            attempt=n,
        )
        with self.lock:
            self.token_node[token] = node
            self._emit(node, UnitState.QUEUED, attempt=self.starts.get(node, 0) + 1)
        key = f"{node.step}-{node.unit}-{n}-{self.topic}"
        assert self.client is not None
        fut: Future[dict[str, Any]] = self.client.submit(
            execute_unit, task, token, key=key, pure=False, retries=0
        )
        fut.scopeflow_token = token  # type: ignore[attr-defined]
        return fut

    # -- main loop ----------------------------------------------------------------------------

    def _resume(self) -> list[Node]:
        """Take completed units from their records; return the nodes ready to run."""
        ready: list[Node] = []
        for node in self.graph.nodes:  # topological order
            ups = self.graph.deps[node]
            record = self.rundir.read_record(node)
            if record is not None and all(u in self.records for u in ups):
                self.records[node] = record
                self._emit(
                    node,
                    UnitState.SKIPPED,
                    worker=record.get("worker"),
                    seconds=record.get("seconds"),
                    reason="done-before",
                )
                continue
            self.waiting[node] = sum(1 for u in ups if u not in self.records)
            if self.waiting[node] == 0:
                ready.append(node)
        return ready

    def _fail(self, node: Node, error: str) -> None:
        self.failed[node] = error
        self._emit(
            node,
            UnitState.FAILED,
            attempt=self.starts.get(node, 0),
            worker=self.last_worker.get(node),
            error=error,
        )
        for down in self.graph.descendants(node):
            if down not in self.not_started and down not in self.records:
                self.not_started.add(down)
                self._emit(
                    down,
                    UnitState.SKIPPED,
                    error=f"not started: {node} failed",
                    reason="upstream-failed",
                )

    def cancel(self) -> None:
        """Close the units an interrupted run leaves unfinished.

        A unit submitted in this run (its last event ``queued`` or ``running``) gets ``skipped``
        with ``reason: cancelled``, so no unit stays open in ``events.jsonl``; ``running``
        reports that arrive later are ignored. Every unit neither done nor failed nor skipped
        counts as cancelled in the summary. Safe to call more than once.
        """
        with self.lock:
            for node in self.graph.nodes:
                if node in self.records or node in self.failed or node in self.not_started:
                    continue
                if node in self.cancelled:
                    continue
                self.cancelled.add(node)
                n = self.submissions.get(node)
                if n is None:
                    continue  # never submitted: no event of this run to close
                token = f"{node.step}/{node.unit}/{n}"
                started = token in self.token_started
                self.finished_tokens.add(token)
                self._emit(
                    node,
                    UnitState.SKIPPED,
                    attempt=self.starts.get(node, 0),
                    worker=self.last_worker.get(node) if started else None,
                    error="cancelled while running" if started else "cancelled before it started",
                    reason="cancelled",
                )

    def run(self, client: Client) -> None:
        """Run every unit that is not complete yet, on ``client``."""
        from distributed import as_completed

        self.client = client
        totals: dict[str, int] = {}
        for node in self.graph.nodes:
            totals[node.step] = totals.get(node.step, 0) + 1
        if self.progress is not None:
            self.progress.start(totals)
        client.subscribe_topic(self.topic, self._handle_topic)
        try:
            ready = self._resume()
            pending = as_completed(
                [self._submit(n) for n in ready],
                loop=client.loop,  # not the default client's: the caller may have several
                with_results=True,
                raise_errors=False,
            )
            for fut, result in pending:
                token: str = fut.scopeflow_token
                node = self.token_node[token]
                with self.lock:
                    self.finished_tokens.add(token)
                    started = token in self.token_started
                if fut.status == "finished":
                    self._done(node, result, started=started, pending=pending)
                else:
                    exc = fut.exception()
                    self._errored(node, exc, pending=pending)
        finally:
            client.unsubscribe_topic(self.topic)
            if self.progress is not None:
                self.progress.stop()

    def _done(self, node: Node, record: dict[str, Any], *, started: bool, pending: Any) -> None:
        with self.lock:
            if not started:  # the 'running' report is still in flight: record it first
                self.starts[node] = self.starts.get(node, 0) + 1
                self._emit(
                    node,
                    UnitState.RUNNING,
                    attempt=self.starts[node],
                    worker=record["worker"],
                    ts=record["started"],
                )
            self.records[node] = record
            extra = {}
            warnings = record.get("result", {}).get("warnings")
            if warnings:  # problems the unit survived (e.g. an unreadable image it skipped)
                extra["warnings"] = list(warnings)
            self._emit(
                node,
                UnitState.DONE,
                attempt=self.starts[node],
                worker=record["worker"],
                seconds=record["seconds"],
                **extra,
            )
        for down in self.down[node]:
            self.waiting[down] -= 1
            if self.waiting[down] == 0:
                pending.add(self._submit(down))

    def _errored(self, node: Node, exc: BaseException, *, pending: Any) -> None:
        error = _error_text(exc)
        step = self.pipeline.step(node.step)
        allowed = (self.retries if step.retries is None else step.retries) + 1
        tried = max(self.starts.get(node, 0), self.submissions[node])
        if tried < allowed:
            with self.lock:
                self.events.emit(
                    node.step,
                    node.unit,
                    UnitState.FAILED,
                    attempt=self.starts.get(node, 0),
                    worker=self.last_worker.get(node),
                    error=error,
                    retry=True,
                )
            pending.add(self._submit(node))
        else:
            with self.lock:
                self._fail(node, error)


def summarize(
    pipeline: Pipeline,
    rundir: RunDir,
    driver: _Driver,
    *,
    status: RunStatus,
    wall_s: float,
    run: int,
) -> dict[str, Any]:
    """Build ``summary.json`` from the completion records and this run's failures."""
    steps: dict[str, dict[str, Any]] = {}
    outputs: dict[str, str] = {}
    for step in pipeline.order():
        nodes = [n for n in driver.graph.nodes if n.step == step.name]
        recs = [driver.records[n] for n in nodes if n in driver.records]
        secs = [float(r.get("seconds") or 0.0) for r in recs]
        rss = [float(r.get("peak_rss_mb") or 0.0) for r in recs]
        steps[step.name] = {
            "units": len(nodes),
            "done": len(recs),
            "failed": sum(1 for n in nodes if n in driver.failed),
            "not_started": sum(1 for n in nodes if n in driver.not_started),
            "cancelled": sum(1 for n in nodes if n in driver.cancelled),
            "mean_s": round(sum(secs) / len(secs), 6) if secs else None,
            "max_s": round(max(secs), 6) if secs else None,
            "total_s": round(sum(secs), 6),
            "peak_rss_mb": max(rss) if rss else None,
        }
        for rec in recs:
            outs = rec.get("result", {}).get("outputs")
            if isinstance(outs, Mapping):
                outputs.update({str(k): str(v) for k, v in outs.items()})
    return {
        "pipeline": pipeline.name,
        "status": str(status),
        "wall_s": round(wall_s, 3),
        "run": run,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "steps": steps,
        "outputs": outputs,
        "failed": [{"step": n.step, "unit": n.unit, "error": e} for n, e in driver.failed.items()],
    }
