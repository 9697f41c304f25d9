"""Multi-view Richardson-Lucy: time per iteration against the memory-bandwidth floor.

One iteration updates the estimate once per view. Issue 5 bounds it from below by
``t >= 148 * V * N bytes / B`` (V views, N voxels, B the machine's memory bandwidth): the bytes
one view's update must at least move (float32 volumes and complex spectra read and written by the
two convolutions and the point-wise steps). B is measured in the same run as the rate of a
large NumPy copy (bytes read + written per second, best of 5).

Data: ``--views`` Poisson-noise views of ``--size``^3 voxels, anisotropic Gaussian PSFs of
19 x 19 x 25 voxels (each view's long axis turned by 90 degrees), weights 1; ``--threads``
(default 1) CPU cores, the process pinned to them, ``deconvolve_views(threads=...)``.

    python benchmarks/spim_deconvolution.py --size 128 --views 4 --iterations 3 [--threads 2]
        [--blocks none,64]

``--blocks``: the ``block`` values measured (``none``: the whole volume at once; the SPIM
pipeline's default is 128).
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # not when benchmarks/run.py imports it: its other runs inherit env
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from scopeflow.ops.spim.deconvolution import deconvolve_views  # noqa: E402

BYTES_PER_VOXEL_VIEW = 148


def bandwidth(mb: int = 512, repeat: int = 5) -> float:
    """Bytes per second of a large array copy (read + write)."""
    src = np.ones(mb * 2**20 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best


def _psf(sigma_zyx: tuple[float, float, float]) -> np.ndarray:
    k = np.zeros((25, 19, 19))
    k[12, 9, 9] = 1.0
    return ndimage.gaussian_filter(k, sigma_zyx)


def measure(
    size: int, views: int, iterations: int, block: int | None, threads: int = 1
) -> dict[str, Any]:
    """Seconds per iteration of ``deconvolve_views`` and the floor."""
    rng = np.random.default_rng(0)
    shape = (size, size, size)
    data = [rng.poisson(100.0, shape).astype(np.float32) for _ in range(views)]
    psfs = [_psf((3.0, 1.0, 1.0)) if v % 2 == 0 else _psf((1.0, 1.0, 3.0)) for v in range(views)]
    weights = [np.ones(shape, np.float32)] * views
    kw: dict[str, Any] = {"block": block, "threads": threads}
    deconvolve_views(data, weights, psfs, iterations=1, **kw)  # warm-up (FFT plans, kernels)
    t0 = time.perf_counter()
    deconvolve_views(data, weights, psfs, iterations=iterations, **kw)
    per_iteration = (time.perf_counter() - t0) / iterations
    return {"block": block, "s_per_iteration": round(per_iteration, 3)}


def _measure_all(args: argparse.Namespace) -> dict[str, Any]:
    """The bandwidth, the floor and each ``--blocks`` run."""
    b = bandwidth()
    n = args.size**3
    floor = BYTES_PER_VOXEL_VIEW * args.views * n / b
    blocks = [None if x.strip() == "none" else int(x) for x in args.blocks.split(",")]
    runs = [measure(args.size, args.views, args.iterations, blk, args.threads) for blk in blocks]
    for r in runs:
        r["x_floor"] = round(r["s_per_iteration"] / floor, 1)
    return {
        "benchmark": "spim_deconvolution",
        "voxels": n,
        "views": args.views,
        "threads": args.threads,
        "bandwidth_gb_s": round(b / 1e9, 2),
        "floor_s_per_iteration": round(floor, 4),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; prints the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blocks", default="none,64", help="comma-separated; none = whole")
    args = parser.parse_args(argv)
    pinned = hasattr(os, "sched_setaffinity")
    cpus = os.sched_getaffinity(0) if pinned else set()
    if pinned:
        os.sched_setaffinity(0, set(sorted(cpus)[: args.threads]))
    try:
        out = _measure_all(args)
    finally:  # run.py runs other benchmarks in this process afterwards
        if pinned:
            os.sched_setaffinity(0, cpus)
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
