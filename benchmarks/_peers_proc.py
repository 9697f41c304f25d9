"""Timing a command and its whole process tree: wall, CPU, peak memory, machine load."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil


def load_average() -> list[float]:
    """1-, 5- and 15-minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def wait_quiet(max_load: float, timeout_s: float, poll_s: float = 10.0) -> dict[str, Any]:
    """Wait until the 1-minute load average is below ``max_load`` (at most ``timeout_s``).

    Returns the load when the wait ended, the seconds waited and whether the machine was quiet.
    """
    t0 = time.monotonic()
    while True:
        load = load_average()
        waited = time.monotonic() - t0
        if load[0] < max_load or waited >= timeout_s:
            return {
                "load_at_start": load,
                "waited_s": round(waited, 1),
                "quiet": load[0] < max_load,
            }
        time.sleep(poll_s)


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


def run_measured(
    cmd: list[str],
    *,
    log: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = 3600.0,
    interval_s: float = 0.1,
) -> dict[str, Any]:
    """Run ``cmd`` to completion; measure its process tree.

    ``cpu_s`` is the user + system time of every descendant this process reaped
    (``getrusage(RUSAGE_CHILDREN)`` before/after: processes that their parents waited for are
    included, which is how Dask's nanny/worker and multiprocessing children end).
    ``cpu_s_sampled`` cross-checks it: the last user + system seen per process of the tree
    (sampled every ``interval_s``; misses at most the last interval of each process).
    ``peak_rss_mb`` is the largest sum of resident set sizes over the tree at one sample
    (shared pages are counted once per process).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_start = load_average()
    log.parent.mkdir(parents=True, exist_ok=True)
    cpu_seen: dict[tuple[int, float], float] = {}
    peak = 0
    timed_out = False
    with log.open("w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True
        )
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            rss = 0
            for p in _tree(root):
                try:
                    with p.oneshot():
                        rss += p.memory_info().rss
                        t = p.cpu_times()
                        cpu_seen[(p.pid, p.create_time())] = t.user + t.system
                except psutil.Error:
                    continue
            peak = max(peak, rss)
            if time.perf_counter() - t0 > timeout_s:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            time.sleep(interval_s)
        wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "command": " ".join(cmd),
        "returncode": proc.returncode,
        "timed_out": timed_out,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_s_sampled": round(sum(cpu_seen.values()), 2),
        "peak_rss_mb": round(peak / 2**20, 1),
        "processes_seen": len(cpu_seen),
        "load_start": load_start,
        "load_end": load_average(),
        "log": str(log),
    }


def log_tail(path: Path, n: int = 15, keys: tuple[str, ...] = ()) -> list[str]:
    """The last ``n`` lines of a log (only those containing one of ``keys`` when given)."""
    if not path.exists():
        return []
    lines = path.read_text(errors="replace").splitlines()
    if keys:
        lines = [ln for ln in lines if any(k in ln for k in keys)] or lines
    return [ln.rstrip()[:400] for ln in lines[-n:]]
