"""SPIM operations on one synthetic time point: detection, registration, fusion (scopeflow only).

Data: ``make_spim_dataset(views=4, timepoints=1, shape=(128, 256, 256), seed=0)`` (cached in
``benchmarks/.data``), the size of the multiview-stitcher figures in ``../shared/peers/README.md``.
Bead detection (DoG, quadratic fit) on every view, registration of the beads mapped by the
nominal transforms (affine, no regularisation), registration error of true beads through the
estimated models (mean and max pairwise distance, px), weighted-average fusion of the
registered views on their union at 1 µm (1 and 2 threads, after one warm-up run that loads or
compiles the Numba kernel), content-based fusion (sigma 20/40).

    python benchmarks/spim_ops.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
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
from scopeflow.ops.spim.fusion import FusionGrid, fuse, union_bounds  # noqa: E402
from scopeflow.testing import registration_errors  # noqa: E402


def _timed(func: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = func()
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the measurements; print and return them as JSON."""
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    truth = spim_dataset()
    (vols, pts), t_detect = _timed(lambda: spim_views_and_beads(truth))
    est, t_register = _timed(lambda: registered_models(truth, pts))
    e = registration_errors(truth, est)
    grid = FusionGrid.from_bounds(*union_bounds([v.shape for v in vols], est), 1.0)
    nvox = int(np.prod(grid.shape))
    fuse(vols, est, grid, dtype="float32")  # warm-up: the kernel's compilation or cache load
    _, t_fuse = _timed(lambda: fuse(vols, est, grid, dtype="float32"))
    _, t_fuse2 = _timed(lambda: fuse(vols, est, grid, dtype="float32", threads=2))
    _, t_content = _timed(
        lambda: fuse(vols, est, grid, dtype="float32", content_based=True, anisotropy=2.0)
    )
    result = {
        "benchmark": "spim_ops",
        "views": len(vols),
        "view_shape": list(vols[0].shape),
        "beads_per_view": [len(p) for p in pts],
        "detect_s": round(t_detect, 2),
        "register_s": round(t_register, 2),
        "registration_error_px": {
            "mean": round(float(e.mean()), 4),
            "max": round(float(e.max()), 3),
        },
        "output_mvox": round(nvox / 1e6, 1),
        "fuse_s": {"1_thread": round(t_fuse, 2), "2_threads": round(t_fuse2, 2)},
        "fuse_mvox_per_s_2_threads": round(nvox / 1e6 / t_fuse2, 2),
        "content_based_fuse_s": round(t_content, 2),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
