"""Confocal fields: many cells per large multi-channel image, some of them touching.

Cells are ellipses with slightly wavy outlines, each fully inside the field. A controlled fraction
is placed against an already placed cell so that the two overlap; the label image then gives each
overlapping pixel to the cell whose (outline-normalised) elliptical radius there is smallest,
ties to the earlier cell, so labels never overlap and every touching pair shares a boundary.
Other cells keep a gap of at least 3 px. Channels (photons, flat-field, PSF blur, Poisson noise,
camera offset, ``uint16``):

``nucleus``
    a textured nucleus ellipse inside every cell.
``membrane``
    the label boundaries (shared boundaries included).
``cytoplasm``
    the cell body, dimmer over the nucleus.
``spots``
    puncta inside the cells.
``marker``
    a uniform cytoplasmic marker, bright in "positive" cells (``marker_positive`` in the truth
    table) and faint in the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from skimage.segmentation import find_boundaries

CONFOCAL_CHANNELS = ("nucleus", "membrane", "cytoplasm", "spots", "marker")
CONFOCAL_SHAPE = (900, 1600)
CONFOCAL_PIXEL_SIZE = 0.325
CELLS_PER_FIELD = (90, 110)
TOUCHING_FRACTION = 0.3
POSITIVE_FRACTION = 0.4
CAMERA_OFFSET = 100
PSF_SIGMA = 1.2
_GAP = 3.0


@dataclass(frozen=True, eq=False)
class Cells:
    """Parameters of the cells of one field, one entry per cell (label = index + 1)."""

    cx: NDArray[np.float64]
    cy: NDArray[np.float64]
    a: NDArray[np.float64]
    b: NDArray[np.float64]
    theta: NDArray[np.float64]
    amp: NDArray[np.float64]  # (n, 3) outline harmonics 2, 3, 4
    phase: NDArray[np.float64]  # (n, 3)

    @property
    def bound(self) -> NDArray[np.float64]:
        """Radius of a circle that holds each cell."""
        bound: NDArray[np.float64] = np.maximum(self.a, self.b) * (1.0 + self.amp.sum(axis=1))
        return bound


def _radius_along(a: float, b: float, theta: float, direction: float) -> float:
    d = direction - theta
    return float(1.0 / np.sqrt((np.cos(d) / a) ** 2 + (np.sin(d) / b) ** 2))


def place_cells(rng: np.random.Generator, shape: tuple[int, int], n: int) -> Cells:
    """Place ``n`` cells in a field of ``shape`` ``(H, W)`` (see the module docstring)."""
    h, w = shape
    a = rng.uniform(18.0, 30.0, n)
    b = a * rng.uniform(0.7, 1.0, n)
    theta = rng.uniform(0.0, np.pi, n)
    amp = rng.uniform(0.0, 0.03, (n, 3))
    phase = rng.uniform(0.0, 2 * np.pi, (n, 3))
    bound = np.maximum(a, b) * (1.0 + amp.sum(axis=1))
    cx = np.full(n, np.nan)
    cy = np.full(n, np.nan)
    placed: list[int] = []
    for i in range(n):
        lo = bound[i] + 2.0
        ok = False
        if placed and rng.random() < TOUCHING_FRACTION:
            for _ in range(50):
                j = placed[int(rng.integers(len(placed)))]
                direction = rng.uniform(0.0, 2 * np.pi)
                dist = rng.uniform(0.75, 0.88) * (
                    _radius_along(a[j], b[j], theta[j], direction)
                    + _radius_along(a[i], b[i], theta[i], direction + np.pi)
                )
                x = cx[j] + dist * np.cos(direction)
                y = cy[j] + dist * np.sin(direction)
                if _free(
                    x, y, i=i, lo=lo, shape=(h, w), cx=cx, cy=cy, bound=bound, placed=placed, skip=j
                ):
                    ok = True
                    break
        if not ok:
            for _ in range(2000):
                x = rng.uniform(lo, w - 1 - lo)
                y = rng.uniform(lo, h - 1 - lo)
                if _free(
                    x,
                    y,
                    i=i,
                    lo=lo,
                    shape=(h, w),
                    cx=cx,
                    cy=cy,
                    bound=bound,
                    placed=placed,
                    skip=-1,
                ):
                    ok = True
                    break
        if ok:
            cx[i], cy[i] = x, y
            placed.append(i)
    keep = np.array(placed, dtype=np.intp)
    return Cells(cx[keep], cy[keep], a[keep], b[keep], theta[keep], amp[keep], phase[keep])


def _free(
    x: float,
    y: float,
    *,
    i: int,
    lo: float,
    shape: tuple[int, int],
    cx: NDArray[np.float64],
    cy: NDArray[np.float64],
    bound: NDArray[np.float64],
    placed: list[int],
    skip: int,
) -> bool:
    """Whether cell ``i`` fits at ``(x, y)``: inside the field, clear of all but ``skip``."""
    h, w = shape
    if not (lo <= x <= w - 1 - lo and lo <= y <= h - 1 - lo):
        return False
    others = [k for k in placed if k != skip]
    if not others:
        return True
    d = np.hypot(cx[others] - x, cy[others] - y)
    return bool(np.all(d > bound[others] + bound[i] + _GAP))


def _cell_window(cells: Cells, i: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    r = cells.bound[i] + 2.0
    y0 = max(int(np.floor(cells.cy[i] - r)), 0)
    x0 = max(int(np.floor(cells.cx[i] - r)), 0)
    y1 = min(int(np.ceil(cells.cy[i] + r)) + 1, shape[0])
    x1 = min(int(np.ceil(cells.cx[i] + r)) + 1, shape[1])
    return slice(y0, y1), slice(x0, x1)


def _rho(cells: Cells, i: int, win: tuple[slice, slice]) -> NDArray[np.float64]:
    """Outline-normalised elliptical radius of cell ``i`` over the window (< 1 inside)."""
    yy, xx = np.mgrid[win]
    dx, dy = xx - cells.cx[i], yy - cells.cy[i]
    c, s = np.cos(cells.theta[i]), np.sin(cells.theta[i])
    un, vn = (dx * c + dy * s) / cells.a[i], (-dx * s + dy * c) / cells.b[i]
    phi = np.arctan2(vn, un)
    outline = 1.0 + sum(
        cells.amp[i, k] * np.cos((k + 2) * phi + cells.phase[i, k]) for k in range(3)
    )
    rho: NDArray[np.float64] = np.sqrt(un * un + vn * vn) / outline
    return rho


def label_cells(cells: Cells, shape: tuple[int, int]) -> NDArray[np.uint16]:
    """Label image: each pixel belongs to the cell of smallest ``rho`` < 1 (ties: lower label)."""
    labels = np.zeros(shape, dtype=np.uint16)
    best = np.full(shape, np.inf)
    for i in range(len(cells.cx)):
        win = _cell_window(cells, i, shape)
        rho = _rho(cells, i, win)
        take = (rho < 1.0) & (rho < best[win])
        best[win][take] = rho[take]
        labels[win][take] = i + 1
    return labels


def touching(labels: NDArray[np.integer[Any]]) -> NDArray[np.bool_]:
    """Per label (index = label), whether a pixel of it is 8-adjacent to another object."""
    flags = np.zeros(int(labels.max()) + 1, dtype=bool)
    pairs = (
        (labels[:, :-1], labels[:, 1:]),
        (labels[:-1, :], labels[1:, :]),
        (labels[:-1, :-1], labels[1:, 1:]),
        (labels[:-1, 1:], labels[1:, :-1]),
    )
    for p, q in pairs:
        m = (p != q) & (p > 0) & (q > 0)
        flags[p[m]] = True
        flags[q[m]] = True
    return flags


def render_field(
    rng: np.random.Generator, shape: tuple[int, int] = CONFOCAL_SHAPE
) -> tuple[NDArray[np.uint16], NDArray[np.uint16], NDArray[np.bool_]]:
    """Render one confocal field.

    Parameters
    ----------
    rng
        Random generator (all randomness of the field comes from it).
    shape
        ``(H, W)`` of the field.

    Returns
    -------
    image : numpy.ndarray
        ``(5, H, W)`` ``uint16``, channels :data:`CONFOCAL_CHANNELS`.
    labels : numpy.ndarray
        ``(H, W)`` ``uint16`` labels ``1 … n``, 0 = background.
    positive : numpy.ndarray
        ``(n + 1,)`` bool, marker-positive cells by label (index 0 unused).
    """
    h, w = shape
    n_target = int(rng.integers(CELLS_PER_FIELD[0], CELLS_PER_FIELD[1] + 1))
    cells = place_cells(rng, shape, n_target)
    labels = label_cells(cells, shape)
    n = len(cells.cx)
    positive = np.zeros(n + 1, dtype=bool)
    positive[1:] = rng.random(n) < POSITIVE_FRACTION

    photons = np.zeros((len(CONFOCAL_CHANNELS), h, w), dtype=np.float32)
    tex = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 2.5)
    tex /= float(tex.std()) or 1.0
    boundary = find_boundaries(labels, connectivity=1, mode="inner")
    levels = rng.lognormal(0.0, 0.3, (n, 4)) * [1200.0, 500.0, 400.0, 450.0]
    marker = np.where(positive[1:], 800.0 * rng.lognormal(0.0, 0.25, n), 0.0)
    marker += 60.0 * rng.lognormal(0.0, 0.3, n)
    for i in range(n):
        win = _cell_window(cells, i, shape)
        own = labels[win] == i + 1
        rho = _rho(cells, i, win)
        # nucleus: ellipse at an offset inside the cell, about half its size
        fu, fv = rng.uniform(-0.2, 0.2, 2)
        c, s = np.cos(cells.theta[i]), np.sin(cells.theta[i])
        ncx = cells.cx[i] + fu * cells.a[i] * c - fv * cells.b[i] * s
        ncy = cells.cy[i] + fu * cells.a[i] * s + fv * cells.b[i] * c
        na, nb = cells.a[i] * rng.uniform(0.4, 0.55), cells.b[i] * rng.uniform(0.45, 0.6)
        yy, xx = np.mgrid[win]
        nt = cells.theta[i] + rng.normal(0.0, 0.3)
        du, dv = xx - ncx, yy - ncy
        nrho = np.hypot(
            (du * np.cos(nt) + dv * np.sin(nt)) / na, (-du * np.sin(nt) + dv * np.cos(nt)) / nb
        )
        nuc = own / (1.0 + np.exp(np.clip((nrho - 1.0) * np.sqrt(na * nb) / 0.8, -30, 30)))
        photons[0][win] += levels[i, 0] * nuc * (1.0 + 0.2 * tex[win])
        photons[1][win] += levels[i, 1] * (boundary[win] & own)
        photons[2][win] += levels[i, 2] * own * (1.0 - 0.6 * nuc) * (1.0 + 0.25 * tex[win])
        photons[4][win] += marker[i] * own
        k = int(rng.poisson(12))
        r = 0.8 * np.sqrt(rng.uniform(0.0, 1.0, k))
        ang = rng.uniform(0.0, 2 * np.pi, k)
        su, sv = r * cells.a[i] * np.cos(ang), r * cells.b[i] * np.sin(ang)
        sx = np.rint(cells.cx[i] + su * c - sv * s).astype(np.intp)
        sy = np.rint(cells.cy[i] + su * s + sv * c).astype(np.intp)
        inside = (labels[sy, sx] == i + 1) & (rho[sy - win[0].start, sx - win[1].start] < 1.0)
        np.add.at(photons[3], (sy[inside], sx[inside]), levels[i, 3] * 2 * np.pi * PSF_SIGMA**2)

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    flat = 1.0 - 0.25 * (((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2) / 2
    background = np.array([12.0, 10.0, 15.0, 8.0, 20.0], dtype=np.float32)
    for ch in range(len(CONFOCAL_CHANNELS)):
        blurred = ndimage.gaussian_filter(photons[ch], PSF_SIGMA)
        photons[ch] = np.maximum(blurred, 0.0) * flat + background[ch]
    counts = rng.poisson(photons) + CAMERA_OFFSET
    image = np.clip(counts, 0, np.iinfo(np.uint16).max).astype(np.uint16)
    return image, labels, positive
