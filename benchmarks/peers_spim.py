"""SPIM side by side: scopeflow vs multiview-stitcher 0.1.62 on the same synthetic time point.

Data: ``make_spim_dataset(views=4, timepoints=1, shape=(128, 256, 256), seed=0)`` (the size of the
peers README's figures; ``--shape`` picks another), cached in ``benchmarks/.data``.
multiview-stitcher runs in its own venv (``benchmarks/.peers/multiview-stitcher-0.1.62``, made on
first use) through ``benchmarks/_peers_mvs_run.py``, one subprocess per operation (each with a
time limit, ``--mvs-timeout``).

Both tools get the same inputs (``--only`` picks operations):

* **registration** (pairwise marker registration): for each pair of views, the same bead sets
  (scopeflow's detections mapped by the nominal transforms) → an affine model; scopeflow's
  ``match_pair`` (descriptors + vectorised RANSAC, 10,000 iterations) against
  ``registration_marker_based`` (its BigStitcher-inspired descriptors + RANSAC, the same
  iteration count). Error: true beads of both views mapped by the model, distance to their true
  position in the other view's nominal frame (px = µm here).
* **fusion** (weighted average) of the 4 views with the same registered affines onto the same
  grid (their union at 1 µm): scopeflow ``fuse(threads=W)`` against ``fusion.fuse`` computed
  with Dask's threaded scheduler and W workers. The two results are compared (NCC).
* **content** (content-based fusion, ``W = G_s2 * (I - G_s1 * I)^2``): scopeflow
  ``fuse(content_based=True, sigma1, sigma2, anisotropy)`` against ``fusion.fuse(weights_func=
  weights.content_based, weights_func_kwargs={sigma_1, sigma_2})``, same grid and workers. The
  sigmas are matched in µm: scopeflow's are in full-resolution xy pixels (z scaled by the
  anisotropy, so isotropic in µm), multiview-stitcher's in output-grid pixels of the views
  resampled on the grid (isotropic). One case per ``--content`` entry ``S1,S2[@ZxYxX]``
  (dataset shape; default ``--shape``): by default its own defaults 5/11 on ``--shape`` and
  BigStitcher's 20/40 on the 64 x 128 x 128 dataset (20/40 did not finish in 23 min at full
  size: its chunks carry an overlap of ``2 * sigma_2`` output pixels on every side).
* **deconvolution** (multi-view Richardson-Lucy): the views resampled on a crop of the grid
  (``--deconv-crop`` voxels per side, placed where isolated beads are densest) with
  scopeflow's ``resample_to_grid`` (values and cosine blending weights), one PSF per view on
  the grid (``--psf beads``: ``extract_psf`` from the registered beads; ``gaussian``: the
  data's true PSF through ``psf_to_grid``), the same PSF type, iterations, regularisation and
  floor; scopeflow ``deconvolve_views`` (FFT convolution) against
  ``fusion.multi_view_deconvolution`` (direct ``scipy.ndimage.convolve``), both on one thread,
  on identical arrays. Reported: seconds per iteration (each tool's
  ``(t(N iterations) - t(0 iterations)) / N``), their ratio, the NCC of the two results and the
  median FWHM (voxels, z y x) of the isolated true beads in the input (the weighted average)
  and in each result.

    python benchmarks/peers_spim.py --workers 2
    python benchmarks/peers_spim.py --workers 2 --shape 64,128,128 --only content,deconvolution
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._peers_env import ensure_multiview_stitcher  # noqa: E402
from benchmarks._peers_spim_common import (  # noqa: E402
    DEFAULT_CONTENT,
    DEFAULT_SHAPE,
    ITERATIONS,
    PARTS,
    Setup,
    _Mvs,
    _ncc,
    _pair_error,
    _setup,
    _shape_arg,
    _zyx_to_xyz,
)
from benchmarks._peers_spim_deconv import compare_deconvolution  # noqa: E402
from scopeflow.ops.spim.fusion import (  # noqa: E402
    fuse,
)
from scopeflow.ops.spim.register import MatchOptions, match_pair  # noqa: E402


def compare_registration(s: Setup, mvs: _Mvs, workers: int) -> dict[str, Any]:
    """Pairwise marker registration: timings and errors of both tools."""
    n = s.truth.n_views
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    ours: dict[str, Any] = {}
    for i, j in pairs:
        t0 = time.perf_counter()
        m = match_pair(s.pts[i], s.pts[j], MatchOptions(model="affine", iterations=ITERATIONS))
        sec = time.perf_counter() - t0
        assert m.ransac.model is not None
        ours[f"{i}-{j}"] = {"s": round(sec, 3), **_pair_error(s.truth, i, j, m.ransac.model)}
    got = mvs(
        s.job(workers)
        | {
            "part": "registration",
            "pairs": {f"{i}-{j}": [s.pts[i].tolist(), s.pts[j].tolist()] for i, j in pairs},
            "ransac_iterations": ITERATIONS,
        }
    )
    out: dict[str, Any] = {"scopeflow": ours, "multiview_stitcher": got}
    if got["ok"]:
        regs = {}
        for key, r in got["registration"].items():
            i, j = (int(x) for x in key.split("-"))
            if "affine_zyx" in r:
                # its transform maps fixed (i) to moving (j) points
                regs[key] = {
                    "s": round(r["s"], 3),
                    **_pair_error(s.truth, i, j, _zyx_to_xyz(r["affine_zyx"])),
                }
            else:
                regs[key] = r
        got["registration"] = regs
        ours_s = sum(r["s"] for r in ours.values())
        mvs_s = sum(r.get("s", 0.0) for r in regs.values())
        out["ratio"] = round(mvs_s / ours_s, 2)
    return out


def compare_fusion(s: Setup, mvs: _Mvs, workers: int) -> dict[str, Any]:
    """Weighted-average fusion: timings (each after one warm-up run) and agreement."""
    fuse(s.vols, s.est, s.grid, dtype="float32", threads=workers)  # warm-up
    t0 = time.perf_counter()
    fused = fuse(s.vols, s.est, s.grid, dtype="float32", threads=workers)
    ours_s = round(time.perf_counter() - t0, 2)
    got = mvs(s.job(workers) | {"part": "fusion", "fused_out": mvs.path("fused.npy")})
    out: dict[str, Any] = {"scopeflow_s": ours_s, "multiview_stitcher": got}
    if got["ok"]:
        theirs = np.load(mvs.path("fused.npy"))
        got["fuse_s"] = round(got["fuse_s"], 2)
        got["fused_ncc_with_scopeflow"] = _ncc(fused, theirs, (fused > 0) & (theirs > 0))
        out["ratio"] = round(got["fuse_s"] / ours_s, 2)
    return out


def compare_content(
    s: Setup, mvs: _Mvs, workers: int, *, sigma1: float, sigma2: float, chunksize: int
) -> dict[str, Any]:
    """Content-based fusion with the same sigmas (µm) on the same grid."""
    anisotropy = s.truth.voxel_size[2] / s.truth.voxel_size[0]
    kw: dict[str, Any] = {
        "content_based": True,
        "sigma1": sigma1,
        "sigma2": sigma2,
        "anisotropy": anisotropy,
        "dtype": "float32",
        "threads": workers,
    }
    fuse(s.vols, s.est, s.grid, **kw)  # warm-up
    t0 = time.perf_counter()
    ours = fuse(s.vols, s.est, s.grid, **kw)
    ours_s = round(time.perf_counter() - t0, 2)
    plain = fuse(s.vols, s.est, s.grid, dtype="float32", threads=workers)  # untimed
    # its sigmas are in output-grid pixels (isotropic); ours in full-resolution xy pixels
    px = s.truth.voxel_size[0] / s.grid.spacing
    mvs_sigmas = (sigma1 * px, sigma2 * px)
    case: dict[str, Any] = {
        "dataset_shape": list(s.shape),
        "grid_shape": list(s.grid.shape),
        "output_mvox": round(int(np.prod(s.grid.shape)) / 1e6, 2),
        "sigma_um": [sigma1 * s.truth.voxel_size[0], sigma2 * s.truth.voxel_size[0]],
        "scopeflow": {
            "s": ours_s,
            "call": f"fuse(content_based=True, sigma1={sigma1}, sigma2={sigma2}, "
            f"anisotropy={anisotropy}, content_downsample=4, threads={workers})",
            "warmup": "one content-based fuse",
            "ncc_content_vs_plain_average": _ncc(ours, plain, (ours > 0) & (plain > 0)),
        },
    }
    got = mvs(
        s.job(workers)
        | {
            "part": "content",
            "sigma_1": mvs_sigmas[0],
            "sigma_2": mvs_sigmas[1],
            "chunksize": chunksize,
            "fused_out": mvs.path("content.npy"),
            "plain_out": mvs.path("plain.npy"),
        }
    )
    got["call"] = (
        f"fusion.fuse(weights_func=weights.content_based, weights_func_kwargs="
        f"{{sigma_1: {mvs_sigmas[0]:g}, sigma_2: {mvs_sigmas[1]:g}}}, "
        f"output_chunksize={chunksize}), Dask threads, {workers} workers"
    )
    got["warmup"] = "one plain weighted-average fuse (a content-based one would double its cost)"
    case["multiview_stitcher"] = got
    if got["ok"]:
        theirs = np.load(mvs.path("content.npy"))
        theirs_plain = np.load(mvs.path("plain.npy"))
        got["s"] = round(got.pop("fuse_s"), 2)
        got["ncc_content_vs_plain_average"] = _ncc(
            theirs, theirs_plain, (theirs > 0) & (theirs_plain > 0)
        )
        both = (ours > 0) & (theirs > 0)
        case["ncc_content_based"] = _ncc(ours, theirs, both)
        case["ncc_plain_average"] = _ncc(plain, theirs_plain, (plain > 0) & (theirs_plain > 0))
        case["ratio"] = round(got["s"] / ours_s, 2)
    elif "timed_out_s" in got:
        case["ratio_at_least"] = round(got["timed_out_s"] / ours_s, 1)
    return case


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run both tools; print and return the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: results/peers_spim.json for a full default run, else a name with the "
        "shape and the operations",
    )
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated of {PARTS}")
    parser.add_argument("--shape", type=_shape_arg, default=DEFAULT_SHAPE, help="z,y,x")
    parser.add_argument(
        "--content",
        nargs="+",
        default=DEFAULT_CONTENT,
        help="content-based cases S1,S2[@ZxYxX]: sigmas (full-res xy px) and dataset shape",
    )
    parser.add_argument("--mvs-chunksize", type=int, default=128)
    parser.add_argument(
        "--mvs-timeout", type=float, default=900.0, help="s per multiview-stitcher operation"
    )
    parser.add_argument("--deconv-crop", type=int, default=64, help="voxels per side, 0 = all")
    parser.add_argument("--deconv-iterations", type=int, default=3)
    parser.add_argument("--deconv-lambda", type=float, default=0.006)
    parser.add_argument("--psf", choices=("beads", "gaussian"), default="beads")
    parser.add_argument("--psf-size", type=int, default=15, help="odd, voxels per side")
    parser.add_argument(
        "--psf-type",
        default="efficient_bayesian",
        choices=("independent", "efficient_bayesian", "optimization_i", "optimization_ii"),
    )
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    if unknown := set(parts) - set(PARTS):
        parser.error(f"--only: unknown {sorted(unknown)}; expected some of {PARTS}")
    shape = tuple(args.shape)
    if args.out is None:
        tag = "" if shape == DEFAULT_SHAPE else "_" + "x".join(map(str, shape))
        tag += "" if set(parts) == set(PARTS) else "_" + "-".join(parts)
        args.out = HERE / "results" / f"peers_spim{tag}.json"
    env = ensure_multiview_stitcher()
    s = _setup(args.shape)
    result: dict[str, Any] = {
        "benchmark": "peers_spim",
        "workers": args.workers,
        "parts": parts,
        "dataset_shape": list(shape),
        "voxel_size_xyz_um": list(s.truth.voxel_size),
        "grid_shape": list(s.grid.shape),
        "output_mvox": round(int(np.prod(s.grid.shape)) / 1e6, 1),
        "multiview_stitcher_version": env.get("version") if env.get("ok") else None,
    }
    ratios: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        mvs = _Mvs(env, Path(tmp), args.mvs_timeout)
        ours: dict[str, Any] = {}
        theirs: dict[str, Any] = {"ok": env.get("ok", False), "version": env.get("version")}
        if not env.get("ok"):
            theirs["reason"] = env.get("reason")
        if "registration" in parts:
            reg = compare_registration(s, mvs, args.workers)
            ours["registration"] = reg["scopeflow"]
            theirs |= {k: v for k, v in reg["multiview_stitcher"].items() if k != "ok"}
            theirs["ok"] = theirs["ok"] and reg["multiview_stitcher"]["ok"]
            if "ratio" in reg:
                ratios["pairwise_registration"] = reg["ratio"]
        if "fusion" in parts:
            fus = compare_fusion(s, mvs, args.workers)
            ours["fuse_s"] = fus["scopeflow_s"]
            got = fus["multiview_stitcher"]
            theirs["wall_s"] = round(theirs.get("wall_s", 0.0) + got.pop("wall_s", 0.0), 1)
            theirs |= {k: v for k, v in got.items() if k != "ok"}
            theirs["ok"] = theirs["ok"] and got["ok"]
            if "ratio" in fus:
                ratios["fusion"] = fus["ratio"]
        if ours:
            result["scopeflow"] = ours
            result["multiview_stitcher"] = theirs
        if "content" in parts:
            cases = []
            for spec in args.content:
                sig, _, at = spec.partition("@")
                s1, s2 = (float(v) for v in sig.split(","))
                case_shape = _shape_arg(at) if at else shape
                case = compare_content(
                    _setup(case_shape),
                    mvs,
                    args.workers,
                    sigma1=s1,
                    sigma2=s2,
                    chunksize=args.mvs_chunksize,
                )
                cases.append(case)
                key = f"content_based_{s1:g}_{s2:g}_{'x'.join(map(str, case_shape))}"
                if "ratio" in case:
                    ratios[key] = case["ratio"]
                elif "ratio_at_least" in case:
                    ratios[key] = f">= {case['ratio_at_least']}"
            result["content_based"] = {
                "sigmas": "S1, S2 in full-resolution xy pixels (= µm here) for scopeflow; the "
                "same µm as output-grid pixels (1 µm) for multiview-stitcher",
                "differences": [
                    "scopeflow: weights of each raw view at 1/4 resolution (z by 1/2), floored "
                    "at 1e-3 of the view's maximum, times its cosine blending (40 px)",
                    "multiview-stitcher: weights of the views resampled on the grid, per output "
                    "chunk with an overlap of 2 * sigma_2 px, NaN-aware Gaussians, normalised "
                    "over views, times its own blending weights (default widths z 3, y/x 10 µm)",
                ],
                "cases": cases,
            }
        if "deconvolution" in parts:
            dec = compare_deconvolution(s, mvs, args)
            result["deconvolution"] = dec
            if "ratio_per_iteration" in dec:
                ratios["deconvolution_per_iteration"] = dec["ratio_per_iteration"]
            elif "ratio_per_iteration_at_least" in dec:
                ratios["deconvolution_per_iteration"] = f">= {dec['ratio_per_iteration_at_least']}"
    result["ratios_scopeflow_faster"] = ratios
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
