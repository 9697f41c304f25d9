"""SPIM operations on one synthetic time point: detection, registration, fusion (scopeflow only).

Data: ``make_spim_dataset(views=4, timepoints=1, shape=(128, 256, 256), seed=0)`` (cached in
``benchmarks/.data``), the size of the multiview-stitcher figures in ``../shared/peers/README.md``.
Bead detection (DoG, quadratic fit) on every view, registration of the beads mapped by the
nominal transforms (affine, no regularisation), registration error of true beads through the
estimated models (mean and max pairwise distance, px), weighted-average fusion of the
registered views on their union at 1 µm (1 and 2 threads), content-based fusion (sigma 20/40).

    python benchmarks/spim_ops.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from scopeflow.core import affine as _affine  # noqa: E402
from scopeflow.ops.spim.beads import detect_beads  # noqa: E402
from scopeflow.ops.spim.fusion import FusionGrid, fuse, view_bounds  # noqa: E402
from scopeflow.ops.spim.models import apply_model  # noqa: E402
from scopeflow.ops.spim.register import MatchOptions, register_points  # noqa: E402
from scopeflow.testing import SpimTruth, beads_in_view_index, make_spim_dataset  # noqa: E402


def _timed(func: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = func()
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the measurements; print and return them as JSON."""
    out = HERE / ".data" / "spim-4v1t-128x256x256"
    if not (out / "truth.json").exists():
        make_spim_dataset(
            out, views=4, timepoints=1, shape=(128, 256, 256), seed=0, write_czi=False
        )
    truth = SpimTruth.from_json(out / "truth.json")
    vols = [tifffile.imread(truth.path("tiff", 0, v)) for v in range(truth.n_views)]
    dets, t_detect = _timed(lambda: [detect_beads(v, anisotropy=2.0) for v in vols])
    pts = [apply_model(truth.nominal_affines[v], d.xyz) for v, d in enumerate(dets)]
    reg, t_register = _timed(lambda: register_points(pts, MatchOptions(model="affine")))
    est = [_affine.compose(reg.models[v], truth.nominal_affines[v]) for v in range(len(vols))]
    errs = []
    for i in range(len(vols)):
        for j in range(i + 1, len(vols)):
            both = np.intersect1d(
                beads_in_view_index(truth, i, 0, margin=2.0),
                beads_in_view_index(truth, j, 0, margin=2.0),
            )
            w = truth.beads_world[both]
            a = _affine.apply(est[i], truth.world_to_view(i, 0, w))
            b = _affine.apply(est[j], truth.world_to_view(j, 0, w))
            errs.append(np.linalg.norm(a - b, axis=1))
    e = np.concatenate(errs)
    los, his = zip(*[view_bounds(v.shape, m) for v, m in zip(vols, est, strict=True)], strict=True)
    grid = FusionGrid.from_bounds(np.min(los, axis=0), np.max(his, axis=0), 1.0)
    nvox = int(np.prod(grid.shape))
    _, t_fuse = _timed(lambda: fuse(vols, est, grid, dtype="float32"))
    _, t_fuse2 = _timed(lambda: fuse(vols, est, grid, dtype="float32", threads=2))
    _, t_content = _timed(
        lambda: fuse(vols, est, grid, dtype="float32", content_based=True, anisotropy=2.0)
    )
    result = {
        "benchmark": "spim_ops",
        "views": len(vols),
        "view_shape": list(vols[0].shape),
        "beads_per_view": [len(d) for d in dets],
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
