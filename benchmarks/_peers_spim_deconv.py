"""The deconvolution part of the SPIM side-by-side benchmark (see peers_spim.py)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._peers_spim_common import PSF_BEADS, Setup, _Mvs, _ncc  # noqa: E402
from scopeflow.core import affine as _affine  # noqa: E402
from scopeflow.ops.spim.deconvolution import (  # noqa: E402
    deconvolve_views,
    fwhm,
    normalise_weights,
)
from scopeflow.ops.spim.fusion import (  # noqa: E402
    FusionGrid,
    extract_psf,
    psf_to_grid,
    resample_to_grid,
)


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
