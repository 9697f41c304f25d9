"""Haralick texture features (CellProfiler's MeasureTexture) of all objects at once.

For every scale ``d`` and direction (CellProfiler / mahotas order: ``00`` = (0, d) horizontal,
``01`` = (d, d), ``02`` = (d, 0) vertical, ``03`` = (d, -d)), the pixel pairs ``(p, p + offset)``
inside one object are collected for the whole batch; the symmetric grey-level co-occurrence
matrix of an object is never formed per object. Each feature is computed from four
histograms built with one ``np.bincount`` each over all pairs of all objects: the joint
histogram of ``(i, j)`` (for the angular second moment and the entropy), and the histograms of
``i + j``, ``|i - j|`` and of the levels ``i`` (all other features are moments of these).

References
----------
Haralick RM, Shanmugam K, Dinstein I (1973) Textural features for image classification.
IEEE Trans. Syst. Man Cybern. SMC-3(6):610-621, doi:10.1109/TSMC.1973.4309314.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from scopeflow.ops.cyto._moments import F64, I64, Features, ObjectPixels

HARALICK = (
    "AngularSecondMoment",
    "Contrast",
    "Correlation",
    "Variance",
    "InverseDifferenceMoment",
    "SumAverage",
    "SumVariance",
    "SumEntropy",
    "Entropy",
    "DifferenceVariance",
    "DifferenceEntropy",
    "InfoMeas1",
    "InfoMeas2",
)
DIRECTIONS = ((0, 1), (1, 1), (1, 0), (1, -1))
_DENSE_JOINT_BINS = 1 << 23  # largest dense joint histogram (objects x levels^2) per chunk


def quantize(values: F64, op: ObjectPixels, levels: int) -> I64:
    """Grey level ``min(floor(levels (v - min) / (max - min)), levels - 1)`` per object.

    ``min`` / ``max`` are those of the object in that channel; a constant object is level 0.
    ``values`` is ``(n_channels, n_pixels)``; returns the same shape, ``int64``.
    """
    vmin = np.minimum.reduceat(values, op.starts, axis=-1)
    vmax = np.maximum.reduceat(values, op.starts, axis=-1)
    span = vmax - vmin
    scale = np.where(span > 0, levels / np.where(span > 0, span, 1.0), 0.0)
    q = np.floor((values - vmin[:, op.obj]) * scale[:, op.obj]).astype(np.int64)
    return np.minimum(q, levels - 1)


def pixel_pairs(
    op: ObjectPixels, drow: int, dcol: int, inverse: NDArray[np.int32] | None = None
) -> tuple[I64, I64]:
    """Indices (into the pixel table) of all pairs ``(p, p + (drow, dcol))`` in one object.

    ``inverse`` (canvas index -> pixel index, -1 elsewhere) is built if not given.
    """
    off = op.offset(drow, dcol)
    if inverse is None:
        inverse = _inverse(op)
    first = np.flatnonzero(op.canvas[op.pix + off] == op.obj + 1)
    return first, inverse[op.pix[first] + off].astype(np.int64)


def _inverse(op: ObjectPixels) -> NDArray[np.int32]:
    """Canvas index -> pixel-table index (-1 outside objects)."""
    inverse = np.full(op.canvas.size, -1, dtype=np.int32)
    inverse[op.pix] = np.arange(op.pix.size, dtype=np.int32)
    return inverse


def _xlog2x(counts: NDArray[np.int64], top: int) -> F64:
    """Lookup table ``c log2 c`` for integer counts ``0..top``, gathered at ``counts``."""
    c = np.arange(top + 1, dtype=np.float64)
    table = np.zeros(top + 1)
    table[1:] = c[1:] * np.log2(c[1:])
    out: F64 = table[counts]
    return out


def _joint_sums(
    a: I64, b: I64, g: I64, n: int, *, levels: int, diagonal_pairs: I64
) -> tuple[F64, F64]:
    """Per group: ``sum P log2 P`` and ``sum P^2`` of the symmetric joint counts ``P``.

    Counts ``u`` of unordered level pairs ``{a, b}`` are enough: an off-diagonal ``u`` is two
    cells of ``P``, a diagonal one the cell ``2 u``, so ``sum P log2 P = 2 sum u log2 u + 2 *
    (pairs with a == b)`` and ``sum P^2 = 2 sum u^2 + 2 sum_diagonal u^2``.
    """
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    cells = levels * (levels + 1) // 2
    keys = g * cells + hi * (hi + 1) // 2 + lo
    if n * cells <= _DENSE_JOINT_BINS:
        u = np.bincount(keys, minlength=n * cells).reshape(n, cells)
        top = int(u.max()) if u.size else 0
        diag = np.arange(levels)
        u_diag = u[:, diag * (diag + 3) // 2]
        clog = _xlog2x(u, top).sum(axis=1)
        sq = (u * u).sum(axis=1) + (u_diag * u_diag).sum(axis=1)
    else:
        keys.sort()
        new = np.ones(keys.size, dtype=bool)
        new[1:] = keys[1:] != keys[:-1]
        first = np.flatnonzero(new)
        counts = np.diff(np.append(first, keys.size))
        group = keys[first] // cells
        cell = keys[first] - group * cells
        diagonal_cell = np.zeros(cells, dtype=bool)
        diagonal_cell[np.arange(levels) * (np.arange(levels) + 3) // 2] = True
        on_diag = diagonal_cell[cell]
        top = int(counts.max()) if counts.size else 0
        clog = np.bincount(group, _xlog2x(counts, top), minlength=n)
        c2 = (counts * counts).astype(np.float64)
        sq = np.bincount(group, c2 * (1 + on_diag), minlength=n)
    return 2 * clog + 2 * diagonal_pairs, 2 * sq.astype(np.float64)


def haralick(a: I64, b: I64, g: I64, n: int, levels: int) -> dict[str, F64]:
    """Haralick features of the symmetric co-occurrences of the pairs ``(a, b)`` per group.

    Parameters
    ----------
    a, b
        ``(n_pairs,)`` grey levels ``0..levels-1`` of the first and second pixel of each pair.
    g
        ``(n_pairs,)`` group (object) index of each pair, ``0..n-1``.
    n
        Number of groups.
    levels
        Number of grey levels.

    Returns
    -------
    dict
        The 13 :data:`HARALICK` features (mahotas / CellProfiler definitions, base-2
        entropies), plus ``Dissimilarity`` (``sum |i - j| p``), each ``(n,)``; NaN for a group
        without pairs. ``DifferenceVariance`` is the variance of ``|i - j|``.
    """
    k = np.arange(2 * levels - 1)
    h_sum = np.bincount(g * (2 * levels - 1) + a + b, minlength=n * (2 * levels - 1))
    h_sum = h_sum.reshape(n, 2 * levels - 1)
    h_diff = np.bincount(g * levels + np.abs(a - b), minlength=n * levels).reshape(n, levels)
    h_lev = np.bincount(
        np.concatenate([g * levels + a, g * levels + b]), minlength=n * levels
    ).reshape(n, levels)
    pairs = h_diff.sum(axis=1)
    kl = k[:levels]
    s1 = h_sum @ k  # sum (a + b)
    s2 = h_sum @ (k * k)  # sum (a + b)^2
    d1 = h_diff @ kl  # sum |a - b|
    d2 = h_diff @ (kl * kl)  # sum (a - b)^2
    l2 = h_lev @ (kl * kl)  # sum a^2 + b^2
    idm = h_diff @ (1.0 / (1.0 + kl * kl))
    joint_clog, joint_sq = _joint_sums(a, b, g, n, levels=levels, diagonal_pairs=h_diff[:, 0])
    top = 2 * int(pairs.max()) if pairs.size else 0
    clog_sum = _xlog2x(h_sum, top).sum(axis=1)
    clog_diff = _xlog2x(h_diff, top).sum(axis=1)
    clog_lev = _xlog2x(h_lev, top).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        npr = pairs.astype(np.float64)
        tot = 2 * npr
        # exact integer numerators: variance of i, covariance of (i, j), ...
        var_num = 2 * pairs * l2 - s1 * s1
        cov_num = (s2 - d2) * pairs - s1 * s1
        single_level = np.count_nonzero(h_lev, axis=1) == 1  # then P is one cell
        hxy = np.where(single_level, 0.0, np.log2(tot) - joint_clog / tot)
        hx = np.where(single_level, 0.0, np.log2(tot) - clog_lev / tot)
        info1 = np.where(hx > 0, (hxy - 2 * hx) / hx, hxy - 2 * hx)
        out = {
            "AngularSecondMoment": joint_sq / (tot * tot),
            "Contrast": d2 / npr,
            "Correlation": np.where(var_num > 0, cov_num / var_num, 1.0),
            "Variance": var_num / (tot * tot),
            "InverseDifferenceMoment": idm / npr,
            "SumAverage": s1 / npr,
            "SumVariance": (s2 * pairs - s1 * s1) / (npr * npr),
            "SumEntropy": np.log2(npr) - clog_sum / npr,
            "Entropy": hxy,
            "DifferenceVariance": (d2 * pairs - d1 * d1) / (npr * npr),
            "DifferenceEntropy": np.log2(npr) - clog_diff / npr,
            "InfoMeas1": info1,
            "InfoMeas2": np.sqrt(np.maximum(0.0, 1.0 - np.exp(-2.0 * (2 * hx - hxy)))),
            "Dissimilarity": d1 / npr,
        }
    empty = pairs == 0
    for v in out.values():
        v[empty] = np.nan
    return out


def texture_features(
    op: ObjectPixels,
    values: F64,
    *,
    scales: tuple[int, ...],
    levels: int,
    per_angle: bool,
) -> Features:
    """Haralick features of every channel, scale and direction, ``(n_channels, n)`` each.

    Keys are ``"<Feature>_<scale>_avg"`` (the mean over the directions that have pixel pairs)
    and, if ``per_angle``, ``"<Feature>_<scale>_<direction:02d>"``.
    """
    n = op.n_objects
    q = quantize(values, op, levels)
    inverse = _inverse(op)
    out: Features = {}
    for scale in scales:
        per_dir: list[dict[str, F64]] = []
        for drow, dcol in DIRECTIONS:
            first, second = pixel_pairs(op, drow * scale, dcol * scale, inverse)
            g = op.obj[first]
            feats = {name: np.empty((q.shape[0], n)) for name in HARALICK}
            for c in range(q.shape[0]):
                one = haralick(q[c, first], q[c, second], g, n, levels)
                for name in HARALICK:
                    feats[name][c] = one[name]
            per_dir.append(feats)
        for name in HARALICK:
            stack = np.stack([d[name] for d in per_dir])
            with np.errstate(invalid="ignore"):
                valid = ~np.isnan(stack)
                count = valid.sum(axis=0)
                mean = np.where(valid, stack, 0.0).sum(axis=0) / np.where(count, count, 1)
            out[f"{name}_{scale}_avg"] = np.where(count > 0, mean, np.nan)
            if per_angle:
                for d, feats in enumerate(per_dir):
                    out[f"{name}_{scale}_{d:02d}"] = feats[name]
    return out
