"""Engine overhead: seconds of scheduling overhead per unit on a local cluster.

Runs the ``toy`` pipeline with N trivial units (``prepare`` → ``work`` per unit, one ``collect``:
2N + 1 units of work that do almost nothing) through :func:`scopeflow.engine.run_pipeline` on a
LocalCluster, and, on the same cluster, the bare Dask baseline: ``client.map`` of a no-op over
2N + 1 tasks. Cluster start-up is excluded from both. The difference is what scopeflow adds per
unit (events, completion records, logs, dependency tracking).

    python benchmarks/engine_overhead.py --units 10000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dask
from distributed import Client, LocalCluster, wait

from scopeflow.engine import read_events, run_pipeline
from scopeflow.pipelines import get_pipeline


def _noop(i: int) -> int:
    return i


def measure(units: int, workers: int) -> dict[str, Any]:
    """Run both measurements and return the figures."""
    toy = get_pipeline("toy")
    with dask.config.set({"distributed.scheduler.allowed-failures": 2}):
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
            silence_logs=50,
        )
    with cluster, Client(cluster) as client, tempfile.TemporaryDirectory() as tmp:
        n_tasks = 2 * units + 1
        t0 = time.perf_counter()
        futs = client.map(_noop, range(n_tasks), pure=False)
        wait(futs)
        dask_s = time.perf_counter() - t0
        del futs

        cfg = toy.config_model(units=units, write_files=False)
        t0 = time.perf_counter()
        outcome = run_pipeline(toy, cfg, Path(tmp) / "run", client=client)
        engine_s = time.perf_counter() - t0
        assert outcome.status.value == "succeeded"
        events = read_events(Path(tmp) / "run" / "events.jsonl")

        t0 = time.perf_counter()
        run_pipeline(toy, cfg, Path(tmp) / "run", client=client)
        resume_s = time.perf_counter() - t0
    work_s = sum(e["seconds"] or 0.0 for e in events if e["state"] == "done")
    return {
        "benchmark": "engine_overhead",
        "units": units,
        "unit_tasks": n_tasks,
        "workers": workers,
        "events": len(events),
        "engine_wall_s": round(engine_s, 3),
        "engine_ms_per_unit": round(1e3 * engine_s / n_tasks, 4),
        "engine_overhead_ms_per_unit": round(1e3 * (engine_s - work_s / workers) / n_tasks, 4),
        "dask_map_wall_s": round(dask_s, 3),
        "dask_ms_per_task": round(1e3 * dask_s / n_tasks, 4),
        "ratio_engine_to_bare_dask": round(engine_s / dask_s, 2),
        "resume_all_done_wall_s": round(resume_s, 3),
        "unit_work_s_total": round(work_s, 3),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; prints the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    result = measure(args.units, args.workers)
    json.dump(result, sys.stdout, indent=2)
    print()
    return result


if __name__ == "__main__":
    main()
