"""Minimum enclosing circles and Zernike shape moments of all objects at once.

Zernike features follow CellProfiler's ``MeasureObjectSizeShape`` (centrosome.zernike): each
object's pixel centres are mapped to the unit disk of its minimum enclosing circle, and the
feature ``Zernike_n_m`` is ``|sum_pixels V_nm(x, y)| / (pi R^2)`` for ``0 <= m <= n <= 9``,
``n - m`` even (30 features; Boland MV, Markey MK, Murphy RF (1998) Cytometry 33:366-375).
"""

from __future__ import annotations

from math import comb, factorial

import numpy as np
from numpy.typing import NDArray

from scopeflow.ops.cyto._moments import I64, Features, ObjectPixels, power_sums

F64 = NDArray[np.float64]

ZERNIKE_DEGREE = 9
ZERNIKE_INDEXES = tuple((n, m) for n in range(ZERNIKE_DEGREE + 1) for m in range(n % 2, n + 1, 2))


def minimum_enclosing_circle(x: I64, y: I64, count: I64) -> tuple[F64, F64, F64]:
    """Minimum enclosing circles of many convex polygons (Chrystal's algorithm, lock-step).

    Parameters
    ----------
    x, y
        ``(n, m)`` vertex coordinates of convex polygons in boundary order; entries from
        ``count`` on (and repeated vertices) are ignored.
    count
        ``(n,)`` number of vertices of each polygon (at least 1).

    Returns
    -------
    cx, cy, radius : numpy.ndarray
        ``(n,)`` centres and radii, in the units of ``x`` and ``y``.

    Notes
    -----
    Starting from a hull edge ``S``, the vertex ``V`` that sees ``S`` under the smallest angle
    is found; if that angle is at least 90 degrees ``S`` is a diameter, if the triangle
    ``S V`` has no obtuse angle its circumcircle is the answer, otherwise the obtuse end of
    ``S`` is replaced by ``V`` (P. Chrystal, Proc. Edinburgh Math. Soc. 3, 30-33, 1885).
    """
    xf, yf = x.astype(np.float64), y.astype(np.float64)
    n, m = xf.shape
    valid = np.arange(m)[None, :] < count[:, None]
    other = valid & ((xf != xf[:, :1]) | (yf != yf[:, :1]))
    s0 = np.zeros(n, dtype=np.int64)
    s1 = np.argmax(other, axis=1)
    cx, cy, radius = xf[:, 0].copy(), yf[:, 0].copy(), np.zeros(n)
    active = other.any(axis=1)
    for _ in range(4 * m + 8):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        ar = np.arange(idx.size)
        px, py, ok = xf[idx], yf[idx], valid[idx]
        ax, ay = px[ar, s0[idx]], py[ar, s0[idx]]
        bx, by = px[ar, s1[idx]], py[ar, s1[idx]]
        u0x, u0y = ax[:, None] - px, ay[:, None] - py
        u1x, u1y = bx[:, None] - px, by[:, None] - py
        norm = np.hypot(u0x, u0y) * np.hypot(u1x, u1y)
        ok = ok & (norm > 0)
        cos = np.where(ok, (u0x * u1x + u0y * u1y) / np.where(ok, norm, 1.0), -np.inf)
        j = np.argmax(cos, axis=1)
        diameter = cos[ar, j] <= 0
        vx, vy = px[ar, j], py[ar, j]
        at0 = (bx - ax) * (vx - ax) + (by - ay) * (vy - ay)
        at1 = (ax - bx) * (vx - bx) + (ay - by) * (vy - by)
        triangle = ~diameter & (at0 >= 0) & (at1 >= 0)
        d = idx[diameter]
        cx[d], cy[d] = (ax + bx)[diameter] / 2, (ay + by)[diameter] / 2
        radius[d] = np.hypot(ax - bx, ay - by)[diameter] / 2
        t = idx[triangle]
        if t.size:
            a_x, a_y, b_x, b_y = ax[triangle], ay[triangle], bx[triangle], by[triangle]
            v_x, v_y = vx[triangle], vy[triangle]
            den = 2 * (a_x * (b_y - v_y) + b_x * (v_y - a_y) + v_x * (a_y - b_y))
            a2, b2, v2 = a_x**2 + a_y**2, b_x**2 + b_y**2, v_x**2 + v_y**2
            cx[t] = (a2 * (b_y - v_y) + b2 * (v_y - a_y) + v2 * (a_y - b_y)) / den
            cy[t] = (a2 * (v_x - b_x) + b2 * (a_x - v_x) + v2 * (b_x - a_x)) / den
            radius[t] = np.hypot(a_x - cx[t], a_y - cy[t])
        move = ~diameter & ~triangle
        mv = idx[move]
        replace_s0 = at0[move] < 0
        s0[mv[replace_s0]] = j[move][replace_s0]
        s1[mv[~replace_s0]] = j[move][~replace_s0]
        active[d] = False
        active[t] = False
    # guard against rounding (and a non-converged iteration): the circle must enclose all
    far = np.where(valid, np.hypot(xf - cx[:, None], yf - cy[:, None]), 0.0).max(axis=1)
    return cx, cy, np.maximum(radius, far)


def _zernike_monomials() -> tuple[list[tuple[int, int]], NDArray[np.complex128]]:
    """Zernike polynomials as complex combinations of the monomials ``x^a y^b``.

    ``V_nm(x, y) = R_nm(rho) e^{i m theta} = sum_k c_k (x^2 + y^2)^{(n - m)/2 - k} (x + i y)^m``
    with ``c_k = (-1)^k (n - k)! / (k! ((n + m)/2 - k)! ((n - m)/2 - k)!)``.

    Returns the monomial exponents ``(a, b)`` and the ``(n_zernike, n_monomials)`` matrix.
    """
    monomials = [(a, d - a) for d in range(ZERNIKE_DEGREE + 1) for a in range(d + 1)]
    column = {ab: i for i, ab in enumerate(monomials)}
    matrix = np.zeros((len(ZERNIKE_INDEXES), len(monomials)), dtype=np.complex128)
    for row, (n, m) in enumerate(ZERNIKE_INDEXES):
        # (x + iy)^m
        zm = np.zeros(m + 1, dtype=np.complex128)  # coefficient of x^(m - t) y^t
        for t in range(m + 1):
            zm[t] = comb(m, t) * 1j**t
        for k in range((n - m) // 2 + 1):
            j = (n - m) // 2 - k
            c = (-1) ** k * factorial(n - k)
            c /= factorial(k) * factorial((n + m) // 2 - k) * factorial((n - m) // 2 - k)
            # (x^2 + y^2)^j
            for s in range(j + 1):
                for t in range(m + 1):
                    a, b = 2 * (j - s) + m - t, 2 * s + t
                    matrix[row, column[(a, b)]] += c * comb(j, s) * zm[t]
    return monomials, matrix


_MONOMIALS, _ZERNIKE_MATRIX = _zernike_monomials()


def zernike_features(op: ObjectPixels, centre_col: F64, centre_row: F64, radius: F64) -> Features:
    """``Zernike_n_m`` magnitudes of every object, within its enclosing circle.

    Parameters
    ----------
    op
        Object pixel table.
    centre_col, centre_row, radius
        ``(n_objects,)`` enclosing circle of every object (image coordinates, pixels).

    Returns
    -------
    dict
        ``Zernike_n_m`` -> ``(n_objects,)``; NaN for objects of radius 0 (single pixels).
    """
    scale = 1.0 / np.where(radius > 0, radius, 1.0)
    x = (op.col - centre_col[op.obj]) * scale[op.obj]
    y = (op.row - centre_row[op.obj]) * scale[op.obj]
    sums = _ZERNIKE_MATRIX @ power_sums(op, x, y, _MONOMIALS)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.abs(sums) / (np.pi * radius**2)
    value[:, radius == 0] = np.nan
    return {f"Zernike_{n}_{m}": value[k] for k, (n, m) in enumerate(ZERNIKE_INDEXES)}
