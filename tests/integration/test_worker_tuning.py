"""Scopeflow's workers: Dask's stack profiler off, glibc's allocator set for large arrays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scopeflow.core import RunStatus
from scopeflow.core.config import StrictModel
from scopeflow.engine import (
    ClusterSpec,
    Pipeline,
    Step,
    UnitContext,
    backend_for,
    run_pipeline,
)
from scopeflow.engine.allocator import tune_allocator


class _Probe(StrictModel):
    units: int = 2


def _report(ctx: UnitContext) -> dict[str, Any]:
    """A unit that reports its worker's state; it does not tune anything itself."""
    import dask

    return {
        "profile": dask.config.get("distributed.worker.profile.enabled"),
        "nanny_env": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
        "tuned_before_the_step": tune_allocator.cache_info().currsize,
    }


PROBE = Pipeline(
    name="probe",
    description="reports the worker settings a unit runs with",
    config_model=_Probe,
    units=lambda cfg: [f"u{i}" for i in range(cfg.units)],
    steps=(Step("report", _report),),
)


def test_units_run_without_the_profiler_and_with_a_tuned_allocator(tmp_path: Path) -> None:
    backend = backend_for(ClusterSpec(workers=1), tmp_path)
    with backend.client() as client:
        outcome = run_pipeline(PROBE, _Probe(), tmp_path / "run", client=client)
    assert outcome.status is RunStatus.SUCCEEDED
    states = [
        json.loads(p.read_text())["result"]
        for p in sorted((tmp_path / "run" / "state" / "report").glob("*.json"))
    ]
    assert len(states) == 2 and all(s["profile"] is False for s in states)
    if sys.platform.startswith("linux"):
        # Dask's nanny still sets the variable; the engine undid its effect before the step
        assert all(s["nanny_env"] == "65536" for s in states)
        assert all(s["tuned_before_the_step"] == 1 for s in states)


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
