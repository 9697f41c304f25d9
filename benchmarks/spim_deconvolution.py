"""Multi-view Richardson-Lucy: time per iteration against the memory-bandwidth floor.

One iteration updates the estimate once per view. Issue 5 bounds it from below by
``t >= 148 * V * N bytes / B`` (V views, N voxels, B the machine's memory bandwidth): the bytes
one view's update must at least move (float32 volumes and complex spectra read and written by the
two convolutions and the point-wise steps). B is measured in the same run as the rate of a
large NumPy copy (bytes read + written per second, best of 5; one thread, as ``np.copyto``
runs). The same copy split over ``--threads`` threads is reported too
(``bandwidth_threads_gb_s``, ``x_floor_threads``): with it the floor is lower.

Data: ``--views`` Poisson-noise views of ``--size``^3 voxels, anisotropic Gaussian PSFs of
19 x 19 x 25 voxels (each view's long axis turned by 90 degrees), weights 1; ``--threads``
(default 1) CPU cores, the process pinned to them, ``deconvolve_views(threads=...)``; ``--fft``
the CPU transforms (default ducc0 when installed, else SciPy).

    python benchmarks/spim_deconvolution.py --size 128 --views 4 --iterations 10 [--threads 2]
        [--blocks none,64]

``--blocks``: the ``block`` values measured (``none``: the whole volume at once; the SPIM
pipeline's default is 256). Per run: ``s_per_iteration``, the median time of iterations 2 to
``--iterations`` (timed by ``deconvolve_views``' ``on_iteration``); ``s_setup_and_first``, the
time to the end of the first (kernels, spectra, first estimate, buffers); and
``s_per_iteration_with_setup``, the whole call over ``--iterations``. Each run is measured in
a fresh Python process (see :func:`_measure_in_child`).
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # not when benchmarks/run.py imports it: its other runs inherit env
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")
    # ducc0's thread pool (the FFTs) is sized by this, else by OMP_NUM_THREADS
    os.environ.setdefault("DUCC0_NUM_THREADS", str(os.cpu_count() or 1))

import argparse
import itertools
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from scopeflow.ops.spim.block_convolution import FFT_BACKENDS, default_backend  # noqa: E402
from scopeflow.ops.spim.deconvolution import deconvolve_views  # noqa: E402

BYTES_PER_VOXEL_VIEW = 148


def bandwidth(mb: int = 512, repeat: int = 5, threads: int = 1) -> float:
    """Bytes per second of a large array copy (read + write), in ``threads`` equal parts."""
    src = np.ones(mb * 2**20 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    cuts = np.linspace(0, src.size, threads + 1).astype(int)
    parts = list(itertools.pairwise(cuts.tolist()))
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeat):
            t0 = time.perf_counter()
            list(pool.map(lambda ab: np.copyto(dst[ab[0] : ab[1]], src[ab[0] : ab[1]]), parts))
            best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best


def _psf(sigma_zyx: tuple[float, float, float]) -> np.ndarray:
    k = np.zeros((25, 19, 19))
    k[12, 9, 9] = 1.0
    return ndimage.gaussian_filter(k, sigma_zyx)


def measure(
    size: int,
    views: int,
    iterations: int,
    block: int | None,
    *,
    threads: int = 1,
    fft: str | None = None,
) -> dict[str, Any]:
    """Seconds per iteration of ``deconvolve_views`` and the floor."""
    rng = np.random.default_rng(0)
    shape = (size, size, size)
    data = [rng.poisson(100.0, shape).astype(np.float32) for _ in range(views)]
    psfs = [_psf((3.0, 1.0, 1.0)) if v % 2 == 0 else _psf((1.0, 1.0, 3.0)) for v in range(views)]
    weights = [np.ones(shape, np.float32)] * views
    kw: dict[str, Any] = {"block": block, "threads": threads, "fft": fft}
    deconvolve_views(data, weights, psfs, iterations=1, **kw)  # warm-up (compiled loops)
    marks: list[float] = []
    t0 = time.perf_counter()
    deconvolve_views(
        data,
        weights,
        psfs,
        iterations=iterations,
        on_iteration=lambda _: marks.append(time.perf_counter()),
        **kw,
    )
    steps = np.diff([t0, *marks])
    return {
        "block": block,
        "s_per_iteration": round(float(np.median(steps[1:])), 4),
        "s_setup_and_first": round(float(steps[0]), 3),
        "s_per_iteration_with_setup": round(float(marks[-1] - t0) / iterations, 4),
    }


def _measure_in_child(args: argparse.Namespace, block: str) -> dict[str, Any]:
    """:func:`measure` for one ``block`` in a fresh Python process.

    Each run gets a fresh process so that none inherits the memory of the one before: after a
    whole-volume run at 256^3, blocks of 128 measured 15-20 % slower in the same process than
    in a fresh one (NumPy asks for transparent huge pages; a heap fragmented by the earlier
    run gets fewer of them).
    """
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        *("--size", str(args.size), "--views", str(args.views)),
        *("--iterations", str(args.iterations), "--threads", str(args.threads)),
        *("--fft", args.fft, "--blocks", block, "--one-run"),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr}")
    run: dict[str, Any] = json.loads(out.stdout)
    return run


def _measure_all(args: argparse.Namespace) -> dict[str, Any]:
    """The bandwidth, the floor and each ``--blocks`` run."""
    b = bandwidth()
    bt = bandwidth(threads=args.threads)
    n = args.size**3
    floor = BYTES_PER_VOXEL_VIEW * args.views * n / b
    runs = [_measure_in_child(args, x.strip()) for x in args.blocks.split(",")]
    for r in runs:
        r["x_floor"] = round(r["s_per_iteration"] / floor, 2)
        r["x_floor_with_setup"] = round(r["s_per_iteration_with_setup"] / floor, 2)
        r["x_floor_threads"] = round(r["s_per_iteration"] * bt / b / floor, 2)
    return {
        "benchmark": "spim_deconvolution",
        "voxels": n,
        "views": args.views,
        "threads": args.threads,
        "fft": args.fft,
        "bandwidth_gb_s": round(b / 1e9, 2),
        "bandwidth_threads_gb_s": round(bt / 1e9, 2),
        "floor_s_per_iteration": round(floor, 4),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; prints the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=10, help="2 or more")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blocks", default="none,64", help="comma-separated; none = whole")
    parser.add_argument("--fft", choices=FFT_BACKENDS, default=default_backend())
    parser.add_argument("--one-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.iterations < 2:
        parser.error("--iterations: 2 or more (the first one includes the set-up)")
    if args.fft == "ducc0":
        import ducc0

        if ducc0.misc.thread_pool_size() < args.threads:
            parser.error(
                f"--threads {args.threads}: ducc0's FFT thread pool has "
                f"{ducc0.misc.thread_pool_size()} (set DUCC0_NUM_THREADS before Python starts)"
            )
    pinned = hasattr(os, "sched_setaffinity")
    cpus = os.sched_getaffinity(0) if pinned else set()
    if pinned:
        os.sched_setaffinity(0, set(sorted(cpus)[: args.threads]))
    try:
        if args.one_run:  # a child of _measure_in_child: one block, its run only
            block = None if args.blocks == "none" else int(args.blocks)
            run = measure(
                args.size, args.views, args.iterations, block, threads=args.threads, fft=args.fft
            )
            print(json.dumps(run))
            return run
        out = _measure_all(args)
    finally:  # run.py runs other benchmarks in this process afterwards
        if pinned:
            os.sched_setaffinity(0, cpus)
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
