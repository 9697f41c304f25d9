"""``AreaShape_*`` features of all objects of a batch at once.

Convex hulls are computed for all objects together: the candidate points of every object are
the left- and right-most points of each of its rows (no other point can be a hull vertex), and
Andrew's monotone chain runs in lock-step over the objects (one numpy operation per step for
all objects). Coordinates are kept as integers in half-pixel units, so the convex area is an
exact lattice-point count (equal to ``regionprops(...).area_convex``) and the Feret diameters
are exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from scopeflow.ops.cyto._moments import I64, Features, ObjectPixels, moment_features
from scopeflow.ops.cyto._zernike import (
    ZERNIKE_INDEXES,
    minimum_enclosing_circle,
    zernike_features,
)

F64 = NDArray[np.float64]

SHAPE_FEATURES = (
    "Area", "Perimeter", "ConvexArea", "Solidity", "Extent", "FormFactor", "Compactness",
    "EulerNumber", "EquivalentDiameter", "MaxFeretDiameter", "MinFeretDiameter",
    "MaximumRadius", "MeanRadius", "MedianRadius", "BoundingBoxArea",
    "BoundingBoxMinimum_X", "BoundingBoxMaximum_X", "BoundingBoxMinimum_Y",
    "BoundingBoxMaximum_Y", "Center_X", "Center_Y",
    *(f"SpatialMoment_{p}_{q}" for p in range(3) for q in range(4)),
    *(f"CentralMoment_{p}_{q}" for p in range(3) for q in range(4)),
    *(f"NormalizedMoment_{p}_{q}" for p in range(4) for q in range(4)),
    *(f"HuMoment_{k}" for k in range(7)),
    "InertiaTensor_0_0", "InertiaTensor_0_1", "InertiaTensor_1_0", "InertiaTensor_1_1",
    "InertiaTensorEigenvalues_0", "InertiaTensorEigenvalues_1",
    "MajorAxisLength", "MinorAxisLength", "Eccentricity", "Orientation",
    *(f"Zernike_{n}_{m}" for n, m in ZERNIKE_INDEXES),
)  # fmt: skip
_BIG = np.int64(1) << 40
_STRIP_WIDTH = 4096  # packing width of the radius canvas (pixels)
_HULL_CELLS = 1 << 20  # largest (objects x rows) block of the hull computations


def _chain(x: I64, y: I64, left: bool) -> tuple[I64, I64, I64]:
    """One convex chain (Andrew's monotone chain) of many point sequences in lock-step.

    ``x``, ``y`` are ``(n, m)``; every row is sorted by ``y`` (one point per ``y`` level, or a
    repeat of the previous point). ``left`` keeps the chain bounding the points on the side of
    decreasing ``x``. Returns the chain coordinates ``(n, m)`` and chain lengths ``(n,)``.
    """
    n, m = x.shape
    sx = np.zeros_like(x)
    sy = np.zeros_like(y)
    sx[:, 0], sy[:, 0] = x[:, 0], y[:, 0]
    t = np.ones(n, dtype=np.int64)
    rows = np.arange(n)
    sign = 1 if left else -1
    for k in range(1, m):
        xk, yk = x[:, k], y[:, k]
        idx = rows[t >= 2]
        while idx.size:
            ti = t[idx]
            ax, ay = sx[idx, ti - 2], sy[idx, ti - 2]
            bx, by = sx[idx, ti - 1], sy[idx, ti - 1]
            cross = (bx - ax) * (yk[idx] - ay) - (by - ay) * (xk[idx] - ax)
            idx = idx[sign * cross >= 0]
            t[idx] -= 1
            idx = idx[t[idx] >= 2]
        sx[rows, t] = xk
        sy[rows, t] = yk
        t += 1
    return sx, sy, t


def _forward_fill(valid: NDArray[np.bool_], *arrays: I64) -> list[I64]:
    """Replace invalid entries of ``(n, m)`` arrays by the previous valid one along a row."""
    m = valid.shape[1]
    idx = np.maximum.accumulate(np.where(valid, np.arange(m), 0), axis=1)
    return [np.take_along_axis(a, idx, axis=1) for a in arrays]


def _hull(x_left: I64, x_right: I64, y: I64, valid: NDArray[np.bool_]) -> tuple[I64, ...]:
    """Left and right convex chains from per-level extreme points (invalid levels skipped)."""
    yy = np.broadcast_to(y, x_left.shape)
    xl, xr, yf = _forward_fill(valid, x_left, x_right, yy)
    lx, ly, lt = _chain(xl, yf, left=True)
    rx, ry, rt = _chain(xr, yf, left=False)
    return lx, ly, lt, rx, ry, rt


def _polygon(chains: tuple[I64, ...]) -> tuple[I64, I64, I64]:
    """Closed hull polygon: left chain top-down, then right chain bottom-up, padded."""
    lx, ly, lt, rx, ry, rt = chains
    m = lx.shape[1]
    count = lt + rt
    j = np.minimum(np.arange(int(count.max()))[None, :], count[:, None] - 1)
    from_left = j < lt[:, None]
    jl = np.minimum(j, m - 1)
    jr = np.clip(rt[:, None] - 1 - (j - lt[:, None]), 0, m - 1)
    px = np.where(from_left, np.take_along_axis(lx, jl, 1), np.take_along_axis(rx, jr, 1))
    py = np.where(from_left, np.take_along_axis(ly, jl, 1), np.take_along_axis(ry, jr, 1))
    return px, py, count


def _row_runs(
    row: I64, col: I64, obj: I64, starts: I64, area: I64
) -> tuple[I64, I64, I64, I64, I64, int]:
    """Left/right-most column of every object row, as ``(n, rows)`` arrays (+ row bounds)."""
    n = area.size
    rmin = row[starts]
    rmax = row[starts + area - 1]
    nrows = int((rmax - rmin).max()) + 1
    new = np.ones(obj.size, dtype=bool)
    new[1:] = (obj[1:] != obj[:-1]) | (row[1:] != row[:-1])
    first = np.flatnonzero(new)
    last = np.append(first[1:], obj.size) - 1
    where = obj[first] * nrows + row[first] - rmin[obj[first]]
    cl = np.full(n * nrows, _BIG, dtype=np.int64)
    cr = np.full(n * nrows, -_BIG, dtype=np.int64)
    cl[where] = col[first]
    cr[where] = col[last]
    return cl.reshape(n, nrows), cr.reshape(n, nrows), rmin, rmax, rmax - rmin + 1, nrows


def _hull_features(row: I64, col: I64, obj: I64, starts: I64, area: I64) -> tuple[F64, ...]:
    """Convex area, max / min Feret diameter and enclosing circle (col, row, radius)."""
    cl, cr, rmin, _, rows, nrows = _row_runs(row, col, obj, starts, area)
    levels = np.arange(2 * nrows + 1)[None, :]  # y in half pixels from the top of the object
    # hull of the pixel-edge mid-points, as skimage.morphology.convex_hull_image
    half_l = np.minimum(_pad_rows(cl, _BIG)[:, :-1], _pad_rows(cl, _BIG)[:, 1:])
    half_r = np.maximum(_pad_rows(cr, -_BIG)[:, :-1], _pad_rows(cr, -_BIG)[:, 1:])
    dl = _interleave(2 * half_l, 2 * cl - 1)
    dr = _interleave(2 * half_r, 2 * cr + 1)
    first, last = _convex_rows(_hull(dl, dr, levels, np.abs(dl) < _BIG), nrows, rows)
    convex_area = np.maximum(last - first + 1, 0).sum(axis=1).astype(np.float64)
    # marching-squares contour of the convex image, as regionprops(...).feret_diameter_max
    xl, xr, valid = _contour_levels(first, last)
    max_feret, min_feret = _feret(*_polygon(_hull(xl, xr, levels, valid)))
    # hull of the pixel centres -> minimum enclosing circle (for the Zernike moments)
    px, py, pcount = _polygon(_hull(cl, cr, np.arange(nrows)[None, :], cl < _BIG))
    centre_x, centre_y, radius = minimum_enclosing_circle(px, py, pcount)
    return convex_area, max_feret, min_feret, centre_x, rmin + centre_y, radius


def _object_ranges(heights: I64, budget: int) -> list[tuple[int, int]]:
    """Consecutive object ranges with ``count * max height <= budget`` (at least one object)."""
    if heights.size * int(heights.max()) <= budget:
        return [(0, heights.size)]
    ranges, start, tallest = [], 0, 0
    for k, hk in enumerate(heights.tolist()):
        tallest = max(tallest, hk)
        if (k + 1 - start) * tallest > budget and k > start:
            ranges.append((start, k))
            start, tallest = k, hk
    ranges.append((start, heights.size))
    return ranges


def _interleave(half: NDArray[Any], full: NDArray[Any]) -> NDArray[Any]:
    """``[half_0, full_0, half_1, ..., full_{R-1}, half_R]`` along axis 1."""
    n, r = full.shape
    out = np.empty((n, 2 * r + 1), dtype=full.dtype)
    out[:, 0::2] = half
    out[:, 1::2] = full
    return out


def _pad_rows(a: NDArray[Any], fill: Any) -> NDArray[Any]:
    """One extra column of ``fill`` on both sides of axis 1."""
    return np.pad(a, ((0, 0), (1, 1)), constant_values=fill)


def _convex_rows(hull: tuple[I64, ...], nrows: int, rows: I64) -> tuple[I64, I64]:
    """Lattice points of the hull in every object row: ``(n, nrows)`` first and last column.

    The chains' ``y`` are levels in half pixels (row ``k`` of an object is level ``2k + 1``),
    ``x`` in half pixels; the crossing of a chain edge with a row is a rational number whose
    ceiling (left chain) or floor (right chain) is computed exactly in integers.
    """
    lx, ly, lt, rx, ry, rt = hull
    n = lx.shape[0]
    q_obj = np.repeat(np.arange(n), rows)
    q_row = np.arange(q_obj.size) - np.repeat(np.cumsum(rows) - rows, rows)
    q_y = 2 * q_row + 1
    cols = []
    for cx, cy, ct, lower in ((lx, ly, lt, True), (rx, ry, rt, False)):
        m = cx.shape[1]
        key_base = 2 * nrows + 3
        valid = np.arange(m)[None, :] < ct[:, None]
        keys = np.arange(n)[:, None] * key_base + np.where(valid, cy, key_base - 1)
        flat_x, flat_y, flat_k = cx.ravel(), cy.ravel(), keys.ravel()
        j = np.searchsorted(flat_k, q_obj * key_base + q_y, side="right") - 1
        exact = flat_y[j] == q_y
        j1 = np.where(exact, j, j + 1)
        den = np.where(exact, 1, flat_y[j1] - flat_y[j])
        num = np.where(
            exact, flat_x[j], flat_x[j] * den + (q_y - flat_y[j]) * (flat_x[j1] - flat_x[j])
        )
        # x = num / (2 den) exactly: ceiling on the left chain, floor on the right chain
        cols.append(-((-num) // (2 * den)) if lower else num // (2 * den))
    first = np.full((n, nrows), _BIG, dtype=np.int64)
    last = np.full((n, nrows), -_BIG, dtype=np.int64)
    first[q_obj, q_row] = cols[0]
    last[q_obj, q_row] = cols[1]
    return first, last


def _contour_levels(a: I64, b: I64) -> tuple[I64, I64, NDArray[np.bool_]]:
    """Extreme marching-squares contour points (half-pixel x) of rows ``[a, b]`` per level."""
    empty = a > b
    ap, bp = _pad_rows(a, _BIG), _pad_rows(b, -_BIG)
    ep = _pad_rows(empty, True)
    i_a, i_b, i_e = ap[:, :-1], bp[:, :-1], ep[:, :-1]
    j_a, j_b, j_e = ap[:, 1:], bp[:, 1:], ep[:, 1:]
    overlap = ~i_e & ~j_e & (np.maximum(i_a, j_a) <= np.minimum(i_b, j_b))
    left = np.where(i_a != j_a, np.minimum(i_a, j_a), np.minimum(i_b, j_b) + 1)
    right = np.where(i_b != j_b, np.maximum(i_b, j_b), np.maximum(i_a, j_a) - 1)
    left = np.where(overlap, left, np.where(i_e, j_a, np.where(j_e, i_a, np.minimum(i_a, j_a))))
    right = np.where(overlap, right, np.where(i_e, j_b, np.where(j_e, i_b, np.maximum(i_b, j_b))))
    half_valid = ~(i_e & j_e) & ~(overlap & (i_a == j_a) & (i_b == j_b))
    x_left = _interleave(2 * left, 2 * a - 1)
    x_right = _interleave(2 * right, 2 * b + 1)
    valid = _interleave(half_valid, ~empty)
    return x_left, x_right, valid


def _feret(px: I64, py: I64, count: I64) -> tuple[F64, F64]:
    """Maximum and minimum caliper width of padded polygons (half-pixel units in, pixels out)."""
    n, m = px.shape
    max_d = np.empty(n)
    min_d = np.empty(n)
    step = max(1, (1 << 22) // (m * m))
    for s in range(0, n, step):
        x, y, c = px[s : s + step], py[s : s + step], count[s : s + step]
        dx = x[:, None, :] - x[:, :, None]  # [b, j, i] = v_i - v_j
        dy = y[:, None, :] - y[:, :, None]
        max_d[s : s + step] = np.sqrt((dx * dx + dy * dy).max(axis=(1, 2))) / 2
        nxt = (np.arange(m)[None, :] + 1) % c[:, None]
        ex = np.take_along_axis(x, nxt, 1) - x
        ey = np.take_along_axis(y, nxt, 1) - y
        length = np.hypot(ex, ey)
        # distance of every vertex i from the line of edge j: |cross(e_j, v_i - v_j)| / |e_j|
        cross = np.abs(ex[:, :, None] * dy - ey[:, :, None] * dx).max(axis=2)
        ok = (length > 0) & (np.arange(m)[None, :] < c[:, None])
        width = np.where(ok, cross / np.where(ok, length, 1.0), np.inf).min(axis=1)
        min_d[s : s + step] = np.where(np.isfinite(width), width, 0.0) / 2
    return max_d, min_d


def _perimeter(op: ObjectPixels) -> F64:
    """``skimage.measure.perimeter(object, 4)`` of every object (Benkrid & Crookes weights)."""
    me = op.obj + 1
    border = np.zeros(op.obj.size, dtype=bool)
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        border |= op.canvas[op.pix + op.offset(dr, dc)] != me
    bmap = np.zeros(op.canvas.size, dtype=bool)
    bpix, bme = op.pix[border], me[border]
    bmap[bpix] = True
    code = np.ones(bpix.size, dtype=np.int64)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr == dc == 0:
                continue
            off = op.offset(dr, dc)
            hit = bmap[bpix + off] & (op.canvas[bpix + off] == bme)
            code += hit * (2 if dr == 0 or dc == 0 else 10)
    weights = np.zeros(50)
    weights[[5, 7, 15, 17, 25, 27]] = 1
    weights[[21, 33]] = np.sqrt(2)
    weights[[13, 23]] = (1 + np.sqrt(2)) / 2
    return np.bincount(op.obj[border], weights[code], minlength=op.n_objects).astype(np.float64)


def _euler_number(op: ObjectPixels) -> I64:
    """Euler number (8-connectivity, Ohser et al. 2002 weights) of every object."""
    same = {d: op.neighbour_is_same(*d) for d in ((0, 1), (1, 0), (1, 1), (1, -1), (0, -1))}
    right, down, diag = same[(0, 1)], same[(1, 0)], same[(1, 1)]
    # 2x2 windows with the pixel at the top-left: alone (+1) or missing only bottom-right (-1)
    value = (~right & ~down & ~diag).astype(np.int64) - (right & down & ~diag)
    # pixel at top-right with only the bottom-left diagonal neighbour (-1)
    value -= same[(1, -1)] & ~same[(0, -1)] & ~down
    return np.bincount(op.obj, value, minlength=op.n_objects).astype(np.int64)


def _radii(op: ObjectPixels, rmin: I64, cmin: I64, h: I64, w: I64) -> tuple[F64, F64, F64]:
    """Max / mean / median distance to the nearest pixel outside the object.

    As CellProfiler: Euclidean distance transform of each object's own mask, padded by one
    background pixel (so the image border and other objects count as outside). All objects are
    packed, each with its one-pixel frame, into strips of one canvas: one transform in all.
    """
    ph, pw = h + 2, w + 2
    order = np.argsort(-ph, kind="stable")
    end = np.cumsum(pw[order])
    start = end - pw[order]
    strip = start // _STRIP_WIDTH
    first = np.searchsorted(strip, np.arange(strip[-1] + 1))
    strip_h = ph[order][first]
    strip_y = np.cumsum(strip_h) - strip_h
    y0 = np.empty_like(ph)
    x0 = np.empty_like(pw)
    y0[order] = strip_y[strip]
    x0[order] = start - start[first][strip]
    canvas = np.zeros((int(strip_h.sum()), int((end - start[first][strip]).max())), dtype=bool)
    yy = y0[op.obj] + 1 + op.row - rmin[op.obj]
    xx = x0[op.obj] + 1 + op.col - cmin[op.obj]
    canvas[yy, xx] = True
    d2 = np.rint(ndimage.distance_transform_edt(canvas)[yy, xx] ** 2).astype(np.int64)
    dist = np.sqrt(d2.astype(np.float64))
    max_r = np.maximum.reduceat(dist, op.starts)
    mean_r = op.sum(dist) / op.area
    key = np.sort(op.obj * (int(d2.max()) + 1) + d2) % (int(d2.max()) + 1)
    lo = op.starts + (op.area - 1) // 2
    hi = op.starts + op.area // 2
    median_r = (np.sqrt(key[lo].astype(np.float64)) + np.sqrt(key[hi].astype(np.float64))) / 2
    return max_r, mean_r, median_r


def shape_features(op: ObjectPixels) -> tuple[Features, F64, F64]:
    """All ``AreaShape_*`` columns (names without the prefix) of the objects of ``op``.

    Returns
    -------
    features : dict
        Column name (without ``AreaShape_``) to ``(n_objects,)`` array.
    centroid_row, centroid_col : numpy.ndarray
        ``(n_objects,)`` centroids (image coordinates), for the location family.
    """
    area = op.area
    rmin = op.row[op.starts]
    rmax = op.row[op.starts + area - 1]
    cmin = np.minimum.reduceat(op.col, op.starts)
    cmax = np.maximum.reduceat(op.col, op.starts)
    # hulls use (objects x rows) arrays: split the objects so that these stay small
    parts = []
    for o0, o1 in _object_ranges(rmax - rmin + 1, _HULL_CELLS):
        p0, p1 = op.starts[o0], op.starts[o1 - 1] + area[o1 - 1]
        parts.append(
            _hull_features(
                op.row[p0:p1],
                op.col[p0:p1],
                op.obj[p0:p1] - o0,
                op.starts[o0:o1] - p0,
                area[o0:o1],
            )
        )
    hull = [np.concatenate(values) for values in zip(*parts, strict=True)]
    convex_area, max_feret, min_feret, centre_x, centre_y, radius = hull
    moments, centroid_row, centroid_col = moment_features(op)
    perimeter = _perimeter(op)
    h, w = rmax - rmin + 1, cmax - cmin + 1
    max_r, mean_r, median_r = _radii(op, rmin, cmin, h, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        form_factor = np.where(perimeter > 0, 4 * np.pi * area / perimeter**2, np.nan)
        compactness = np.where(perimeter > 0, perimeter**2 / (4 * np.pi * area), np.nan)
    f: Features = {
        "Area": area,
        "Perimeter": perimeter,
        "ConvexArea": convex_area.astype(np.int64),
        "Solidity": area / convex_area,
        "Extent": area / (h * w),
        "FormFactor": form_factor,
        "Compactness": compactness,
        "EulerNumber": _euler_number(op),
        "EquivalentDiameter": np.sqrt(4 * area / np.pi),
        "MaxFeretDiameter": max_feret,
        "MinFeretDiameter": min_feret,
        "MaximumRadius": max_r,
        "MeanRadius": mean_r,
        "MedianRadius": median_r,
        "BoundingBoxArea": h * w,
        "BoundingBoxMinimum_X": cmin,
        "BoundingBoxMaximum_X": cmax + 1,
        "BoundingBoxMinimum_Y": rmin,
        "BoundingBoxMaximum_Y": rmax + 1,
    }
    f.update(moments)
    f.update(zernike_features(op, centre_x, centre_y, radius))
    return f, centroid_row, centroid_col
