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
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._data import (  # noqa: E402
    registered_models,
    spim_dataset,
    spim_views_and_beads,
)
from benchmarks._peers_env import ensure_multiview_stitcher  # noqa: E402
from scopeflow.core import affine as _affine  # noqa: E402
from scopeflow.ops.spim.deconvolution import (  # noqa: E402
    deconvolve_views,
    fwhm,
    normalise_weights,
)
from scopeflow.ops.spim.fusion import (  # noqa: E402
    FusionGrid,
    extract_psf,
    fuse,
    psf_to_grid,
    resample_to_grid,
    view_bounds,
)
from scopeflow.ops.spim.models import apply_model  # noqa: E402
from scopeflow.ops.spim.register import MatchOptions, match_pair  # noqa: E402
from scopeflow.testing import SpimTruth, beads_in_view_index  # noqa: E402

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
        los, his = zip(
            *[view_bounds(v.shape, m) for v, m in zip(vols, est, strict=True)], strict=True
        )
        grid = FusionGrid.from_bounds(np.min(los, axis=0), np.max(his, axis=0), 1.0)
        _SETUPS[shape] = Setup(truth, vols, pts, est, grid)
    return _SETUPS[shape]


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


def _true_beads(s: Setup) -> tuple[np.ndarray, np.ndarray]:
    """True bead positions in the registered frame, and which are isolated and seen by all views.

    The registration keeps view 0 fixed, so its nominal frame is the registered world.
    Isolated: no other bead within 8 µm (the beads' mean spacing is ~7 µm; the z PSF's FWHM 6 µm).
    """
    t = s.truth
    xyz = _affine.apply(t.nominal_affines[0], t.world_to_view(0, 0, t.beads_world))
    seen = np.ones(len(xyz), dtype=bool)
    for vol, m in zip(s.vols, s.est, strict=True):
        pix = _affine.apply(_affine.invert(m), xyz)
        seen &= ((pix >= 0) & (pix <= np.array(vol.shape[::-1]) - 1)).all(axis=1)
    dist, _ = cKDTree(xyz).query(xyz, k=2)
    return xyz, seen & (dist[:, 1] >= 8.0)


def _crop(grid: FusionGrid, edge: int, beads_xyz: np.ndarray, margin: int) -> FusionGrid:
    """A sub-grid of at most ``edge`` voxels per side (the whole grid if ``edge`` is 0).

    Centred on the bead (of ``beads_xyz``) with the most of them within ``margin`` voxels of
    the crop's faces: the specimen's centre holds no beads, and a crop there would measure no
    bead FWHM.
    """
    if edge <= 0:
        return grid
    n = np.array([min(edge, s) for s in grid.shape])  # z, y, x
    shape = np.asarray(grid.shape)
    if len(beads_xyz):
        tree = cKDTree(beads_xyz)
        half = max(edge / 2.0 - margin, 1.0) * grid.spacing
        counts = [len(tree.query_ball_point(p, half, p=np.inf)) for p in beads_xyz]
        centre = beads_xyz[int(np.argmax(counts))]
        c = np.rint((centre - np.asarray(grid.origin)) / grid.spacing).astype(int)[::-1]
        start = np.clip(c - n // 2, 0, shape - n)
    else:
        start = (shape - n) // 2
    o = [grid.origin[i] + grid.spacing * int(start[2 - i]) for i in range(3)]  # x, y, z
    return FusionGrid((o[0], o[1], o[2]), grid.spacing, (int(n[0]), int(n[1]), int(n[2])))


def _registered_beads(s: Setup, v: int) -> np.ndarray:
    """View ``v``'s detected beads in the registered world frame."""
    pix = _affine.apply(_affine.invert(s.truth.nominal_affines[v]), s.pts[v])
    out: np.ndarray = _affine.apply(s.est[v], pix)
    return out


def _psfs(s: Setup, grid: FusionGrid, kind: str, size: int) -> list[np.ndarray]:
    box = (size, size, size)
    if kind == "beads":
        return [
            extract_psf(vol, s.est[v], _registered_beads(s, v)[:PSF_BEADS], grid.spacing, box)
            for v, vol in enumerate(s.vols)
        ]
    sig_px = np.asarray(s.truth.psf_sigma) / np.asarray(s.truth.voxel_size)  # x, y, z
    kshape = tuple(int(np.ceil(8 * g)) | 1 for g in sig_px[::-1])
    delta = np.zeros(kshape)
    delta[tuple(k // 2 for k in kshape)] = 1.0
    psf = ndimage.gaussian_filter(delta, sig_px[::-1])
    return [psf_to_grid(psf, s.est[v], grid.spacing, box) for v in range(len(s.vols))]


def _bead_fwhm(
    grid: FusionGrid, beads_xyz: np.ndarray, vols: dict[str, np.ndarray], half: int = 6
) -> dict[str, Any]:
    """Median FWHM (voxels, z y x) of isolated beads: through each volume's own peak (within
    one voxel of the bead), in a window of ``half`` voxels on each side (its minimum = the
    background)."""
    idx = np.rint((beads_xyz - np.asarray(grid.origin)) / grid.spacing).astype(int)[:, ::-1]
    m = half + 2
    idx = idx[((idx >= m) & (idx < np.asarray(grid.shape) - m)).all(axis=1)]
    out: dict[str, Any] = {"beads": len(idx), "window_vox": 2 * half + 1}
    for name, vol in vols.items():
        widths = []
        for c in idx:
            win = vol[tuple(slice(a - 1, a + 2) for a in c)]
            p = c - 1 + np.unravel_index(int(win.argmax()), win.shape)
            sub = vol[tuple(slice(a - half, a + half + 1) for a in p)]
            widths.append([fwhm(sub, (half, half, half), axis) for axis in range(3)])
        if widths:
            out[name] = [round(float(w), 2) for w in np.median(np.asarray(widths), axis=0)]
    return out


def compare_deconvolution(s: Setup, mvs: _Mvs, args: argparse.Namespace) -> dict[str, Any]:
    """Multi-view deconvolution of identical on-grid views, PSFs and weights."""
    beads_xyz, isolated = _true_beads(s)
    grid = _crop(s.grid, args.deconv_crop, beads_xyz[isolated], margin=8)
    values, weights = zip(
        *[resample_to_grid(v, m, grid) for v, m in zip(s.vols, s.est, strict=True)], strict=True
    )
    psfs = _psfs(s, grid, args.psf, args.psf_size)
    n = args.deconv_iterations
    kw: dict[str, Any] = {"psf_type": args.psf_type, "lam": args.deconv_lambda, "gpu": False}
    deconvolve_views(values, weights, psfs, iterations=1, **kw)  # warm-up
    t0 = time.perf_counter()
    deconvolve_views(values, weights, psfs, iterations=0, **kw)
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = deconvolve_views(values, weights, psfs, iterations=n, **kw)
    total = time.perf_counter() - t0
    wn = np.stack(normalise_weights(weights))
    init = (wn * np.stack(values)).sum(axis=0)
    out: dict[str, Any] = {
        "dataset_shape": list(s.shape),
        "full_grid_shape": list(s.grid.shape),
        "grid": grid.to_dict()
        | {
            "crop_of_full_grid": args.deconv_crop > 0,
            "crop_placed": "on the isolated beads' densest part (the specimen's centre has none)",
        },
        "mvox": round(int(np.prod(grid.shape)) / 1e6, 3),
        "views": len(values),
        "iterations": n,
        "psf": {
            "source": f"extract_psf on the registered beads (first {PSF_BEADS} per view)"
            if args.psf == "beads"
            else "the data's Gaussian PSF through psf_to_grid",
            "size_zyx": [args.psf_size] * 3,
            "type": args.psf_type,
            # scipy.ndimage.convolve skips weights <= DBL_EPSILON: its direct convolution
            # costs these many multiply-adds per voxel (FFT convolution: independent of them)
            "taps_above_eps": [
                int((np.abs(p.astype(np.float64) / p.sum()) > np.finfo(np.float64).eps).sum())
                for p in psfs
            ],
        },
        "lambda": args.deconv_lambda,
        "min_value": 1e-4,
        "threads": 1,
        "inputs": "identical arrays: resample_to_grid values and cosine weights (normalised "
        "to sum 1 over views); for multiview-stitcher NaN where a view's weight is 0",
        "differences": [
            "scopeflow convolves by FFT (reflect padding), multiview-stitcher directly "
            "(scipy.ndimage.convolve: mirror for the forward blur, constant 1 for the "
            "back-projection)",
            "scopeflow blends each view's update in with its weight (psi + w (new - psi)); "
            "multiview-stitcher weights the ratio before back-projecting (1 + w (ratio - 1))",
            "Tikhonov normalised by the views' maximum (scopeflow) vs the initial estimate's "
            "maximum (multiview-stitcher)",
        ],
        "scopeflow": {
            "call": f"deconvolve_views(iterations={n}, psf_type={args.psf_type!r}, "
            f"lam={args.deconv_lambda}, gpu=False)",
            "warmup": "one 1-iteration run",
            "setup_s": round(setup, 3),
            "total_s": round(total, 3),
            "s_per_iteration": round((total - setup) / n, 3) if n else None,
        },
    }
    arrays = {
        "views_npy": np.where(np.stack(weights) > 0, np.stack(values), np.nan).astype(np.float32),
        "weights_npy": wn.astype(np.float32),
        "psfs_npy": np.stack(psfs).astype(np.float32),
    }
    for key, arr in arrays.items():
        np.save(mvs.path(f"{key}.npy"), arr)
    got = mvs(
        s.job(1)
        | {
            "part": "deconvolution",
            "grid": grid.to_dict(),  # the arrays' grid (the crop), for the record
            **{key: mvs.path(f"{key}.npy") for key in arrays},
            "psf_type": args.psf_type.upper(),
            "lambda": args.deconv_lambda,
            "min_value": 1e-4,
            "iterations": n,
            "deconvolved_out": mvs.path("deconvolved.npy"),
        }
    )
    got["call"] = (
        f"fusion.multi_view_deconvolution(psfs, psf_type={args.psf_type.upper()!r}, "
        f"n_iterations={n}, lambda_reg={args.deconv_lambda}, min_value=1e-4)"
    )
    got["warmup"] = "its n_iterations=0 run (kernels + initial estimate; timed as setup_s)"
    out["multiview_stitcher"] = got
    covered = (np.stack(weights) > 0).any(axis=0)
    m = args.psf_size
    interior = np.zeros_like(covered)
    interior[m:-m, m:-m, m:-m] = True
    vols = {"input_weighted_average": init, "scopeflow": ours}
    if got["ok"]:
        theirs = np.load(mvs.path("deconvolved.npy"))
        vols["multiview_stitcher"] = theirs
        for key in ("setup_s", "total_s"):
            got[key] = round(got[key], 3)
        got["s_per_iteration"] = round((got["total_s"] - got["setup_s"]) / n, 3) if n else None
        out["ncc_covered"] = _ncc(ours, theirs, covered)
        out["ncc_interior"] = _ncc(ours, theirs, covered & interior)
        if n and out["scopeflow"]["s_per_iteration"]:
            out["ratio_per_iteration"] = round(
                got["s_per_iteration"] / out["scopeflow"]["s_per_iteration"], 1
            )
    elif "timed_out_s" in got and n:
        out["ratio_per_iteration_at_least"] = round(
            (got["timed_out_s"] / n) / out["scopeflow"]["s_per_iteration"], 1
        )
    out["bead_fwhm_vox_zyx"] = _bead_fwhm(grid, beads_xyz[isolated], vols)
    out["bead_fwhm_vox_zyx"]["beads_used"] = (
        "true positions (registered frame), no other bead within 8 µm, seen by all views"
    )
    return out


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
