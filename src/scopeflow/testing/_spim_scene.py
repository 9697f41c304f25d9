"""Random scene of a synthetic SPIM dataset: view geometry, drifts, specimen, nuclei and beads.

Everything here is pure (no file I/O) and deterministic in the ``numpy.random.Generator`` passed
in. World coordinates are micrometres, points are ``(N, 3)`` ``(x, y, z)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from scopeflow.core import affine as _affine

#: Beads per µm³ of agarose: about 1,600 per 128 x 128 x 128 µm³ view volume before the
#: specimen and too-close pairs are removed (≈ 1,200-1,400 visible per default view).
BEAD_DENSITY = 1600.0 / 128.0**3
#: Minimum distance between two beads, µm (closer pairs are thinned so beads stay resolvable).
BEAD_MIN_DISTANCE = 4.0
#: Error magnitudes of the true view affines relative to the nominal ones.
SCALE_ERROR = 0.01
SHEAR_ERROR = 0.01
TRANSLATION_ERROR = 3.0
#: Largest per-axis drift step between consecutive time points, µm.
DRIFT_STEP = 2.5


@dataclass(frozen=True, eq=False)
class Geometry:
    """View affines and drifts (see :mod:`scopeflow.testing._spim_truth` for the convention)."""

    angles: tuple[float, ...]
    nominal: NDArray[np.float64]  # (V, 3, 4)
    true: NDArray[np.float64]  # (V, 3, 4)
    drifts: NDArray[np.float64]  # (T, 3)
    centre: NDArray[np.float64]  # (3,) world centre of the nominal volumes


@dataclass(frozen=True, eq=False)
class Specimen:
    """Ellipsoidal specimen with nuclei in a shell below its surface."""

    centre: NDArray[np.float64]  # (3,)
    semi_axes: NDArray[np.float64]  # (3,)
    nuclei: NDArray[np.float64]  # (M, 4): x, y, z, radius
    nuclei_brightness: NDArray[np.float64]  # (M,)


def nominal_affine(
    angle_deg: float, shape: tuple[int, int, int], voxel_size: tuple[float, float, float]
) -> NDArray[np.float64]:
    """Nominal view affine: voxel scaling, then rotation about y through the volume centre.

    The same transforms the spim pipeline gives a raw view (:func:`~scopeflow.core.affine.
    nominal_view_transforms`).
    """
    return _affine.compose(*_affine.nominal_view_transforms(angle_deg, shape, voxel_size))


def make_geometry(
    rng: np.random.Generator,
    *,
    views: int,
    timepoints: int,
    shape: tuple[int, int, int],
    voxel_size: tuple[float, float, float],
) -> Geometry:
    """Draw the true view affines (setup 0 exact) and the drift of every time point."""
    centre = _affine.volume_centre(shape, voxel_size)
    angles = tuple(360.0 * v / views for v in range(views))
    nominal = np.array([nominal_affine(a, shape, voxel_size) for a in angles])
    true = nominal.copy()
    for v in range(1, views):
        m = np.eye(3) + np.diag(rng.uniform(-SCALE_ERROR, SCALE_ERROR, 3))
        off = ~np.eye(3, dtype=bool)
        m[off] += rng.uniform(-SHEAR_ERROR, SHEAR_ERROR, 6)
        err = np.zeros((3, 4))
        err[:, :3] = m
        err[:, 3] = rng.uniform(-TRANSLATION_ERROR, TRANSLATION_ERROR, 3)
        true[v] = _affine.compose(_affine.about_point(err, centre), nominal[v])
    steps = rng.uniform(-DRIFT_STEP, DRIFT_STEP, (max(timepoints - 1, 0), 3))
    drifts = np.vstack([np.zeros((1, 3)), np.cumsum(steps, axis=0)])
    return Geometry(angles=angles, nominal=nominal, true=true, drifts=drifts, centre=centre)


def make_specimen(
    rng: np.random.Generator,
    *,
    shape: tuple[int, int, int],
    voxel_size: tuple[float, float, float],
) -> Specimen:
    """An ellipsoid centred in the volume, fitting every view, with nuclei below its surface."""
    centre = _affine.volume_centre(shape, voxel_size)
    ext = np.array([shape[2], shape[1], shape[0]], dtype=np.float64) * np.asarray(voxel_size)
    r_xz = min(ext[0], ext[2])
    semi = np.array([0.30 * r_xz, 0.36 * ext[1], 0.25 * r_xz])
    n_try = 4000
    dirs = rng.normal(size=(n_try, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    depth = rng.uniform(0.55, 0.88, n_try)
    radii = rng.uniform(3.0, 4.5, n_try)
    cand = centre + dirs * depth[:, None] * semi
    kept: list[int] = []
    for i in range(n_try):
        if kept:
            d = np.linalg.norm(cand[kept] - cand[i], axis=1)
            if np.any(d < radii[kept] + radii[i] + 0.5):
                continue
        kept.append(i)
    nuclei = np.column_stack([cand[kept], radii[kept]])
    brightness = rng.uniform(0.6, 1.4, len(kept))
    return Specimen(centre=centre, semi_axes=semi, nuclei=nuclei, nuclei_brightness=brightness)


def world_bounds(
    geometry: Geometry, shape: tuple[int, int, int], margin: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Axis-aligned world box (sample frame) holding every view volume at every time point."""
    nz, ny, nx = shape
    corners = np.array(
        [[x, y, z] for x in (0, nx - 1) for y in (0, ny - 1) for z in (0, nz - 1)], dtype=np.float64
    )
    pts = [_affine.apply(a, corners) - d for a in geometry.true for d in geometry.drifts]
    allp = np.vstack(pts)
    return allp.min(axis=0) - margin, allp.max(axis=0) + margin


def make_beads(
    rng: np.random.Generator,
    *,
    geometry: Geometry,
    specimen: Specimen,
    shape: tuple[int, int, int],
    margin: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Uniform beads in the agarose around the specimen.

    Returns
    -------
    tuple of numpy.ndarray
        ``(N, 3)`` world positions and ``(N,)`` relative brightness (0.8-1.2).
    """
    lo, hi = world_bounds(geometry, shape, margin)
    n = int(rng.poisson(BEAD_DENSITY * float(np.prod(hi - lo))))
    pts = rng.uniform(lo, hi, (n, 3))
    brightness = rng.uniform(0.8, 1.2, n)
    rel = (pts - specimen.centre) / (specimen.semi_axes + 2.0)
    keep = np.sum(rel * rel, axis=1) >= 1.0
    pts, brightness = pts[keep], brightness[keep]
    keep = np.ones(len(pts), dtype=bool)
    pairs = cKDTree(pts).query_pairs(BEAD_MIN_DISTANCE, output_type="ndarray")
    for i, j in pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]:
        if keep[i] and keep[j]:
            keep[j] = False
    return pts[keep], brightness[keep]
