"""SPIM side by side: scopeflow vs multiview-stitcher 0.1.62 on the same synthetic time point.

Data: ``make_spim_dataset(views=4, timepoints=1, shape=(128, 256, 256), seed=0)`` (the size of the
peers README's figures), cached in ``benchmarks/.data``. multiview-stitcher runs in its own venv
(``benchmarks/.peers/multiview-stitcher-0.1.62``, made on first use) through
``benchmarks/_peers_mvs_run.py``.

Both tools get the same inputs:

* **pairwise marker registration**: for each pair of views, the same bead sets (scopeflow's
  detections mapped by the nominal transforms) → an affine model; scopeflow's
  ``match_pair`` (descriptors + vectorised RANSAC, 10,000 iterations) against
  ``registration_marker_based`` (its BigStitcher-inspired descriptors + RANSAC, the same
  iteration count). Error: true beads of both views mapped by the model, distance to their true
  position in the other view's nominal frame (px = µm here).
* **weighted-average fusion** of the 4 views with the same registered affines onto the same
  grid (their union at 1 µm): scopeflow ``fuse(threads=W)`` against ``fusion.fuse`` computed
  with Dask's threaded scheduler and W workers. The two results are compared (NCC).

    python benchmarks/peers_spim.py --workers 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
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
from benchmarks._peers_env import ensure_multiview_stitcher  # noqa: E402
from scopeflow.core import affine as _affine  # noqa: E402
from scopeflow.ops.spim.fusion import FusionGrid, fuse, view_bounds  # noqa: E402
from scopeflow.ops.spim.models import apply_model  # noqa: E402
from scopeflow.ops.spim.register import MatchOptions, match_pair  # noqa: E402
from scopeflow.testing import SpimTruth, beads_in_view_index  # noqa: E402

ITERATIONS = 10_000


def _pair_error(truth: SpimTruth, i: int, j: int, model_xyz: np.ndarray) -> dict[str, float]:
    both = np.intersect1d(
        beads_in_view_index(truth, i, 0, margin=2.0), beads_in_view_index(truth, j, 0, margin=2.0)
    )
    w = truth.beads_world[both]
    pi = _affine.apply(truth.nominal_affines[i], truth.world_to_view(i, 0, w))
    pj = _affine.apply(truth.nominal_affines[j], truth.world_to_view(j, 0, w))
    d = np.linalg.norm(apply_model(model_xyz, pi) - pj, axis=1)
    return {"mean": round(float(d.mean()), 4), "max": round(float(d.max()), 3)}


def _zyx_to_xyz(m: np.ndarray) -> np.ndarray:
    p = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    return (p @ np.asarray(m) @ p)[:3]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run both tools; print and return the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "peers_spim.json")
    args = parser.parse_args(argv)
    env = ensure_multiview_stitcher()
    truth = spim_dataset()
    n = truth.n_views
    vols, pts = spim_views_and_beads(truth)
    est = registered_models(truth, pts)
    los, his = zip(*[view_bounds(v.shape, m) for v, m in zip(vols, est, strict=True)], strict=True)
    grid = FusionGrid.from_bounds(np.min(los, axis=0), np.max(his, axis=0), 1.0)

    ours: dict[str, Any] = {"registration": {}}
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    for i, j in pairs:
        t0 = time.perf_counter()
        m = match_pair(pts[i], pts[j], MatchOptions(model="affine", iterations=ITERATIONS))
        s = time.perf_counter() - t0
        assert m.ransac.model is not None
        ours["registration"][f"{i}-{j}"] = {
            "s": round(s, 3),
            **_pair_error(truth, i, j, m.ransac.model),
        }
    fuse(vols, est, grid, dtype="float32", threads=args.workers)  # warm-up
    t0 = time.perf_counter()
    fused = fuse(vols, est, grid, dtype="float32", threads=args.workers)
    ours["fuse_s"] = round(time.perf_counter() - t0, 2)

    result: dict[str, Any] = {
        "benchmark": "peers_spim",
        "workers": args.workers,
        "grid_shape": list(grid.shape),
        "output_mvox": round(int(np.prod(grid.shape)) / 1e6, 1),
        "scopeflow": ours,
    }
    if not env.get("ok"):
        result["multiview_stitcher"] = {"ok": False, "reason": env.get("reason")}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            job = {
                "views": [str(truth.path("tiff", 0, v)) for v in range(n)],
                "voxel_size": list(truth.voxel_size),
                "view_to_world": [m.tolist() for m in est],
                "grid": {
                    "origin": list(grid.origin),
                    "spacing": grid.spacing,
                    "shape": list(grid.shape),
                },
                "pairs": {f"{i}-{j}": [pts[i].tolist(), pts[j].tolist()] for i, j in pairs},
                "ransac_iterations": ITERATIONS,
                "workers": args.workers,
                "fused_out": str(Path(tmp) / "mvs.npy"),
            }
            (Path(tmp) / "job.json").write_text(json.dumps(job))
            py = Path(env["venv"]) / "bin" / "python"
            t0 = time.perf_counter()
            run = subprocess.run(
                [str(py), str(HERE / "_peers_mvs_run.py"), str(Path(tmp) / "job.json")],
                capture_output=True,
                text=True,
                check=False,
            )
            wall = time.perf_counter() - t0
            if run.returncode != 0:
                result["multiview_stitcher"] = {"ok": False, "error": run.stderr[-2000:]}
            else:
                got = json.loads(run.stdout.strip().splitlines()[-1])
                mvs_fused = np.load(job["fused_out"])
                regs = {}
                for key, r in got["registration"].items():
                    i, j = (int(x) for x in key.split("-"))
                    if "affine_zyx" in r:
                        # its transform maps fixed (i) to moving (j) points
                        regs[key] = {
                            "s": round(r["s"], 3),
                            **_pair_error(truth, i, j, _zyx_to_xyz(r["affine_zyx"])),
                        }
                    else:
                        regs[key] = r
                covered = (fused > 0) & (mvs_fused > 0)
                result["multiview_stitcher"] = {
                    "ok": True,
                    "version": env.get("version"),
                    "wall_s": round(wall, 1),
                    "fuse_s": round(got["fuse_s"], 2),
                    "registration": regs,
                    "fused_ncc_with_scopeflow": round(
                        float(np.corrcoef(fused[covered], mvs_fused[covered])[0, 1]), 4
                    ),
                }
                ours_reg = sum(r["s"] for r in ours["registration"].values())
                mvs_reg = sum(r.get("s", 0.0) for r in regs.values())
                result["ratios_scopeflow_faster"] = {
                    "fusion": round(got["fuse_s"] / ours["fuse_s"], 2),
                    "pairwise_registration": round(mvs_reg / ours_reg, 2),
                }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result.update(
        command=f"python benchmarks/peers_spim.py {' '.join(argv or sys.argv[1:])}",
        date=time.strftime("%Y-%m-%d %H:%M"),
    )
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
