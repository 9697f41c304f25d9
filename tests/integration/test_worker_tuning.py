"""Scopeflow's workers: Dask's stack profiler off, glibc's allocator set for large arrays."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scopeflow.engine import ClusterSpec, backend_for
from scopeflow.engine.allocator import tune_allocator


def _worker_state() -> dict[str, object]:
    import os

    import dask

    return {
        "profile": dask.config.get("distributed.worker.profile.enabled"),
        "nanny_env": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
        "tuned": tune_allocator(),
    }


def test_local_workers_run_without_the_profiler_and_with_a_tuned_allocator(
    tmp_path: Path,
) -> None:
    backend = backend_for(ClusterSpec(workers=1), tmp_path)
    with backend.client() as client:
        states = list(client.run(_worker_state).values())
    assert states and all(s["profile"] is False for s in states)
    if sys.platform.startswith("linux"):
        # Dask's nanny still sets the variable; the engine overrides its effect at run time
        assert all(s["nanny_env"] == "65536" for s in states)
        assert all(s["tuned"] is True for s in states)


_FAULTS = """
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from scopeflow.engine.allocator import tune_allocator
    assert tune_allocator()
def churn():
    for _ in range(100):
        a = np.ones(2**17)  # 1 MiB temporary, freed at once: what numerical code does
        del a
churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tuned_allocator_stops_page_faults_on_every_temporary() -> None:
    """Under Dask's MALLOC_TRIM_THRESHOLD_ each 1 MiB temporary is a fresh mmap (256 faults).

    (Arrays of 4 MiB and more fault less often: NumPy asks for huge pages for them.)
    """
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    faults = {
        mode: int(
            subprocess.run(
                [sys.executable, "-c", _FAULTS, mode],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        for mode in ("dask", "tuned")
    }
    assert faults["dask"] > 100 * 256 * 0.9, faults
    assert faults["tuned"] < 100 * 256 * 0.05, faults
