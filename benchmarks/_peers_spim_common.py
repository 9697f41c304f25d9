"""Shared parts of the SPIM side-by-side benchmark: datasets, error measures, the peer runner."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._data import (  # noqa: E402
    registered_models,
    spim_dataset,
    spim_views_and_beads,
)
from scopeflow.core import affine as _affine  # noqa: E402
from scopeflow.ops.spim.fusion import (  # noqa: E402
    FusionGrid,
    union_bounds,
)
from scopeflow.testing import SpimTruth, registration_errors  # noqa: E402

ITERATIONS = 10_000
PARTS = ("registration", "fusion", "content", "deconvolution")
DEFAULT_SHAPE = (128, 256, 256)
DEFAULT_CONTENT = ["5,11", "20,40@64x128x128"]
PSF_BEADS = 2000  # beads averaged per view's PSF (the first ones of its registered detections)


@dataclass
class Setup:
    """One dataset: views, their beads (nominal world), registered models and the union grid."""

    truth: SpimTruth
    vols: list[Any]
    pts: list[Any]
    est: list[np.ndarray]
    grid: FusionGrid

    @property
    def shape(self) -> tuple[int, int, int]:
        z, y, x = self.truth.shape
        return (int(z), int(y), int(x))

    def job(self, workers: int) -> dict[str, Any]:
        """What every multiview-stitcher job needs."""
        return {
            "views": [str(self.truth.path("tiff", 0, v)) for v in range(self.truth.n_views)],
            "voxel_size": list(self.truth.voxel_size),
            "view_to_world": [m.tolist() for m in self.est],
            "grid": self.grid.to_dict(),
            "workers": workers,
        }


_SETUPS: dict[tuple[int, int, int], Setup] = {}


def _setup(shape: tuple[int, int, int]) -> Setup:
    if shape not in _SETUPS:
        truth = spim_dataset(shape=shape)
        vols, pts = spim_views_and_beads(truth)
        est = registered_models(truth, pts)
        grid = FusionGrid.from_bounds(*union_bounds([v.shape for v in vols], est), 1.0)
        _SETUPS[shape] = Setup(truth, vols, pts, est, grid)
    return _SETUPS[shape]


def _pair_error(truth: SpimTruth, i: int, j: int, model_xyz: np.ndarray) -> dict[str, float]:
    """Error of a pairwise model that maps view ``i``'s nominal world onto view ``j``'s.

    As view ``i``'s pixel → world model it is ``model · nominal_i``, view ``j`` keeping its
    nominal one: :func:`registration_errors` of that pair (time point 0, 2 voxels of margin).
    """
    models = list(truth.nominal_affines)
    models[i] = _affine.compose(np.asarray(model_xyz, dtype=np.float64), models[i])
    d = registration_errors(truth, models, 0, margin=2.0, pairs=[(i, j)])
    return {"mean": round(float(d.mean()), 4), "max": round(float(d.max()), 3)}


def _zyx_to_xyz(m: np.ndarray) -> np.ndarray:
    p = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    return (p @ np.asarray(m) @ p)[:3]


def _ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float | None:
    if mask.sum() < 2:
        return None
    return round(float(np.corrcoef(a[mask], b[mask])[0, 1]), 4)


def _shape_arg(text: str) -> tuple[int, int, int]:
    z, y, x = (int(v) for v in text.replace("x", ",").split(","))
    return (z, y, x)


class _Mvs:
    """Runs one multiview-stitcher job in its venv (a subprocess with a time limit)."""

    def __init__(self, env: dict[str, Any], tmp: Path, timeout: float) -> None:
        self.env = env
        self.tmp = tmp
        self.timeout = timeout
        self.n = 0

    def path(self, name: str) -> str:
        return str(self.tmp / name)

    def __call__(self, job: dict[str, Any]) -> dict[str, Any]:
        if not self.env.get("ok"):
            return {"ok": False, "reason": self.env.get("reason")}
        self.n += 1
        job_path = self.tmp / f"job{self.n}.json"
        job_path.write_text(json.dumps(job))
        py = Path(self.env["venv"]) / "bin" / "python"
        t0 = time.perf_counter()
        try:
            run = subprocess.run(
                [str(py), str(HERE / "_peers_mvs_run.py"), str(job_path)],
                capture_output=True,
                text=True,
                check=False,
                timeout=self.timeout,
            )
        except subprocess.TimeoutExpired:
            return {
                "ok": False,
                "error": f"did not finish in {self.timeout:.0f} s (killed)",
                "timed_out_s": self.timeout,
            }
        wall = time.perf_counter() - t0
        if run.returncode != 0:
            return {"ok": False, "error": run.stderr[-2000:]}
        got: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
        return {"ok": True, "wall_s": round(wall, 1), **got}
