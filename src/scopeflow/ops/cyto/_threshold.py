"""Automatic thresholds computed from histograms, vectorised over many images or objects at once.

scikit-image's ``threshold_otsu`` / ``threshold_li`` / ``threshold_triangle`` take one image per
call. The cytometry steps need one threshold per image of a batch of thousands, or per
(object, channel) pair, so this module bins every group's values into its own ``nbins``-bin
histogram over the group's ``[min, max]`` range with a single :func:`numpy.bincount`, then
evaluates each criterion on all histograms at once. The bins are those scikit-image uses for
float images (``nbins`` equal bins between the minimum and the maximum); for integer images
scikit-image uses one bin per integer value instead, so Otsu and triangle results can differ
from it by about half a bin width, ``(max - min) / (2 nbins)``. Li's iteration runs on the bin
centres here and on the pixel values in scikit-image: the two agree within about two bins.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage
from skimage.filters import threshold_local
from skimage.segmentation import expand_labels

from scopeflow.core.errors import ConfigError, UnknownNameError

__all__ = [
    "PLANES4",
    "PLANES8",
    "ThresholdMethod",
    "combine_channels",
    "group_thresholds",
    "histogram_threshold",
    "parse_method",
    "row_thresholds",
    "smooth_planes",
    "smoothed_or_edges",
    "sobel_planes",
    "territory_foreground",
    "threshold_mask",
]

F64 = NDArray[np.float64]
F32 = NDArray[np.float32]

#: Connectivity within an image plane only, for ``(N, H, W)`` stacks: 8- and 4-connected.
PLANES8 = np.zeros((3, 3, 3), dtype=bool)
PLANES8[1] = True
PLANES4 = ndimage.generate_binary_structure(3, 1)
PLANES4[0] = PLANES4[2] = False


class ThresholdMethod(StrEnum):
    """Automatic threshold criterion.

    ``OTSU``, ``LI`` and ``TRIANGLE`` are global (one value per image, or per object);
    ``LOCAL`` is scikit-image's adaptive :func:`skimage.filters.threshold_local` (field mode only).
    """

    OTSU = "otsu"
    LI = "li"
    TRIANGLE = "triangle"
    LOCAL = "local"


def parse_method(method: str | ThresholdMethod, *, allow_local: bool = True) -> ThresholdMethod:
    """Return ``method`` as a :class:`ThresholdMethod`.

    Raises
    ------
    scopeflow.core.errors.UnknownNameError
        ``method`` is not a known name (or is ``local`` where ``allow_local`` is false).
    """
    known = [m.value for m in ThresholdMethod if allow_local or m is not ThresholdMethod.LOCAL]
    if str(method) not in known:
        raise UnknownNameError("threshold method", str(method), known)
    return ThresholdMethod(str(method))


def smooth_planes(images: NDArray[Any], sigma: float) -> NDArray[np.float32]:
    """Gaussian-smooth the last two axes of ``images`` as ``float32`` (none if ``sigma`` is 0)."""
    out = np.asarray(images, dtype=np.float32)
    if sigma <= 0:
        return out.copy() if out is images else out
    sig = (0.0,) * (out.ndim - 2) + (float(sigma), float(sigma))
    smoothed: NDArray[np.float32] = ndimage.gaussian_filter(out, sig)
    return smoothed


def smoothed_or_edges(images: NDArray[Any], sigma: float, edges: bool) -> NDArray[np.float32]:
    """What segmentation and masks threshold: the smoothed images, or their edges.

    ``edges``: the Sobel magnitude of the smoothed images, smoothed again by ``2 * sigma``.
    """
    out = smooth_planes(images, sigma)
    return smooth_planes(sobel_planes(out), 2.0 * sigma) if edges else out


def sobel_planes(stack: NDArray[np.float32]) -> NDArray[np.float32]:
    """Sobel gradient magnitude of every plane of ``(..., H, W)`` (no mixing across planes)."""
    d = np.array([-1.0, 0.0, 1.0], dtype=np.float32)
    s = np.array([1.0, 2.0, 1.0], dtype=np.float32)
    gy = ndimage.correlate1d(ndimage.correlate1d(stack, d, axis=-2), s, axis=-1)
    gx = ndimage.correlate1d(ndimage.correlate1d(stack, d, axis=-1), s, axis=-2)
    out: NDArray[np.float32] = np.sqrt(0.5 * (gx * gx + gy * gy)).astype(np.float32)
    return out


def _histograms(
    values: NDArray[Any], groups: NDArray[np.intp], n_groups: int, nbins: int
) -> tuple[F64, F64, F64, NDArray[np.bool_]]:
    """Per-group histograms over each group's own ``[min, max]``.

    Returns counts ``(G, nbins)``, the groups' minima and bin widths ``(G,)``, and which groups
    hold any value.
    """
    vals = values.astype(np.float64, copy=False)
    lo = np.full(n_groups, np.inf)
    hi = np.full(n_groups, -np.inf)
    np.minimum.at(lo, groups, vals)
    np.maximum.at(hi, groups, vals)
    present = np.bincount(groups, minlength=n_groups) > 0
    lo[~present] = 0.0
    hi[~present] = 0.0
    width = (hi - lo) / nbins
    safe = np.where(width > 0, width, 1.0)
    bins = ((vals - lo[groups]) / safe[groups]).astype(np.intp)
    np.clip(bins, 0, nbins - 1, out=bins)
    counts = np.bincount(groups * nbins + bins, minlength=n_groups * nbins)
    return counts.reshape(n_groups, nbins).astype(np.float64), lo, width, present


def _row_histograms(flat: NDArray[Any], nbins: int) -> tuple[F64, F64, F64, NDArray[np.bool_]]:
    """:func:`_histograms` for equal-sized groups, the rows of ``flat`` ``(G, M)``."""
    g, m = flat.shape
    if m == 0:
        zeros = np.zeros(g)
        return np.zeros((g, nbins)), zeros, zeros, np.zeros(g, dtype=bool)
    work = flat if flat.dtype.kind == "f" else flat.astype(np.float32)
    lo = work.min(axis=1).astype(np.float64)
    hi = work.max(axis=1).astype(np.float64)
    width = (hi - lo) / nbins
    scale = np.where(width > 0, 1.0 / np.where(width > 0, width, 1.0), 0.0)
    bins = ((work - lo[:, None].astype(work.dtype)) * scale[:, None].astype(work.dtype)).astype(
        np.intp
    )
    np.clip(bins, 0, nbins - 1, out=bins)
    bins += (np.arange(g, dtype=np.intp) * nbins)[:, None]
    counts = np.bincount(bins.ravel(), minlength=g * nbins)
    return counts.reshape(g, nbins).astype(np.float64), lo, width, np.ones(g, dtype=bool)


def _otsu(counts: F64) -> NDArray[np.intp]:
    """Index of the last background bin maximising the between-class variance, per row."""
    x = np.arange(counts.shape[1], dtype=np.float64)
    w1 = np.cumsum(counts, axis=1)
    s1 = np.cumsum(counts * x, axis=1)
    total, mass = w1[:, -1:], s1[:, -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        w2 = total - w1
        between = w1 * w2 * (s1 / w1 - (mass - s1) / w2) ** 2
    between = np.nan_to_num(between[:, :-1], nan=-1.0, posinf=-1.0)
    idx: NDArray[np.intp] = np.argmax(between, axis=1)
    return idx


def _triangle(counts: F64) -> NDArray[np.intp]:
    """Zack's triangle criterion on each row (its lowest and highest bins are occupied)."""
    g, nbins = counts.shape
    peak = np.argmax(counts, axis=1)
    flip = peak < nbins - 1 - peak  # the longer tail is on the right: work on reversed rows
    h = np.where(flip[:, None], counts[:, ::-1], counts)
    p = np.where(flip, nbins - 1 - peak, peak)
    x = np.arange(nbins, dtype=np.float64)[None, :]
    length = h[np.arange(g), p][:, None] * x - p[:, None] * h
    length[x >= p[:, None]] = -np.inf
    level = np.where(p > 0, np.argmax(length, axis=1), p)
    out: NDArray[np.intp] = np.where(flip, nbins - 1 - level, level)
    return out


def _li(counts: F64, width: F64, *, max_iter: int = 256) -> F64:
    """Li's iterative minimum cross-entropy threshold, offset from each row's minimum.

    Bin ``j`` of a row has centre ``(j + 0.5) * width`` (> 0). Cumulative counts and sums make
    each iteration ``O(G)``: the background of threshold ``t`` is the first
    ``k = floor(t / width - 0.5) + 1`` bins.
    """
    g, nbins = counts.shape
    rows = np.arange(g)
    x = np.arange(nbins) + 0.5  # centres in units of the row's bin width
    n_cum = np.zeros((g, nbins + 1))
    s_cum = np.zeros((g, nbins + 1))
    np.cumsum(counts, axis=1, out=n_cum[:, 1:])
    np.cumsum(counts * x, axis=1, out=s_cum[:, 1:])
    total, mass = n_cum[:, -1], s_cum[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        active = (width > 0) & (total > 0)
        t = np.where(active, mass / total, 0.0)  # start at the mean, in bin-width units
        for _ in range(max_iter):
            if not active.any():
                break
            k = np.clip(np.floor(t - 0.5) + 1, 0, nbins).astype(np.intp)
            nb, sb = n_cum[rows, k], s_cum[rows, k]
            mb, mf = sb / nb, (mass - sb) / (total - nb)
            t_new = (mb - mf) / (np.log(mb) - np.log(mf))
            ok = active & np.isfinite(t_new)
            step = np.abs(t_new - t)
            t = np.where(ok, t_new, t)
            active = ok & (step > 0.5)
    out: F64 = np.where(width > 0, t * width, 0.0)
    return out


def _from_counts(
    counts: F64, lo: F64, width: F64, present: NDArray[np.bool_], method: ThresholdMethod
) -> F64:
    if method is ThresholdMethod.LI:
        thr = lo + _li(counts, width)
    else:
        idx = _otsu(counts) if method is ThresholdMethod.OTSU else _triangle(counts)
        thr = lo + (idx + 0.5) * width
    thr = np.where(width > 0, thr, lo)  # constant group: its value (nothing lies above it)
    out: F64 = np.where(present, thr, np.nan)
    return out


def group_thresholds(
    values: ArrayLike,
    groups: ArrayLike,
    n_groups: int,
    *,
    method: str | ThresholdMethod = ThresholdMethod.OTSU,
    nbins: int = 256,
) -> F64:
    """One automatic threshold per group of values (ragged groups).

    Parameters
    ----------
    values : (M,) array_like
        Values of any real dtype.
    groups : (M,) array_like of int
        Group of each value, in ``[0, n_groups)``.
    n_groups : int
        Number of groups ``G``.
    method : {'otsu', 'li', 'triangle'}
        Criterion (:class:`ThresholdMethod`; ``local`` is not a per-group method).
    nbins : int
        Histogram bins per group.

    Returns
    -------
    (G,) numpy.ndarray of float64
        Thresholds: a value is foreground where it is ``> threshold``. NaN for empty groups;
        a constant group's threshold is its value.

    References
    ----------
    .. [1] Otsu N (1979) "A threshold selection method from gray-level histograms", IEEE Trans.
       Syst. Man Cybern. 9(1): 62-66. :DOI:`10.1109/TSMC.1979.4310076`
    .. [2] Li CH, Tam PKS (1998) "An iterative algorithm for minimum cross entropy
       thresholding", Pattern Recognit. Lett. 19(8): 771-776.
       :DOI:`10.1016/S0167-8655(98)00057-9`
    .. [3] Zack GW, Rogers WE, Latt SA (1977) "Automatic measurement of sister chromatid exchange
       frequency", J. Histochem. Cytochem. 25(7): 741-753. :DOI:`10.1177/25.7.70454`
    """
    m = parse_method(method, allow_local=False)
    vals = np.asarray(values).ravel()
    grp = np.asarray(groups, dtype=np.intp).ravel()
    if vals.shape != grp.shape:
        raise ValueError(f"values {vals.shape} and groups {grp.shape} differ in length")
    return _from_counts(*_histograms(vals, grp, int(n_groups), int(nbins)), m)


def territory_foreground(
    values: ArrayLike,
    labels: ArrayLike,
    distance: float,
    *,
    method: str | ThresholdMethod = ThresholdMethod.OTSU,
    nbins: int = 256,
) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
    """Threshold every (image, channel, cell) over the cell's *territory*.

    The territory is the cell grown by ``distance`` px, never into another cell: the cell plus
    a ring of its own background, so each histogram is bimodal even when cells of one field
    differ in brightness. All thresholds come from one :func:`group_thresholds` call.

    Parameters
    ----------
    values : (C, N, H, W) array_like
        Channels of a stack of images.
    labels : (N, H, W) array_like of int
        Cells (0 = background).
    distance : float
        Growth of each cell, px (0: the cell itself).
    method, nbins
        Of the thresholds (global methods only).

    Returns
    -------
    foreground : (C, N, H, W) bool array
        Pixels of some territory above that territory's threshold in that channel.
    territory : (N, H, W) int64 array
        Cell id of each pixel's territory (0 outside every territory).
    """
    vals_all = np.asarray(values)
    lab = np.asarray(labels).astype(np.int64)
    c, n, h, w = vals_all.shape
    terr = lab
    if distance > 0:
        terr = np.stack([expand_labels(plane, distance) for plane in lab]).astype(np.int64)
    sel = terr > 0
    plane = np.repeat(np.arange(n, dtype=np.int64), sel.sum(axis=(1, 2)))
    region = terr[sel]
    top = int(region.max(initial=0)) + 1
    vals = vals_all[:, sel]  # (C, P) over the selected pixels
    groups = (plane[None, :] * c + np.arange(c)[:, None]) * top + region[None, :]
    t = group_thresholds(vals, groups, n * c * top, method=method, nbins=nbins)
    hit = vals > np.where(np.isnan(t), np.inf, t)[groups]
    out = np.zeros((c, n, h, w), dtype=bool)
    out[:, sel] = hit
    return out, terr


def row_thresholds(
    values: ArrayLike,
    *,
    method: str | ThresholdMethod = ThresholdMethod.OTSU,
    nbins: int = 256,
) -> F64:
    """One automatic threshold per row of ``values``.

    Parameters
    ----------
    values : (G, ...) array_like
        One group per index of the first axis (e.g. a batch of images ``(N, H, W)``).
    method : {'otsu', 'li', 'triangle'}
        Criterion.
    nbins : int
        Histogram bins per row.

    Returns
    -------
    (G,) numpy.ndarray of float64
        See :func:`group_thresholds`.
    """
    m = parse_method(method, allow_local=False)
    arr = np.asarray(values)
    return _from_counts(*_row_histograms(arr.reshape(arr.shape[0], -1), int(nbins)), m)


def combine_channels(
    planes: NDArray[Any], channels: int | Sequence[int], *, combine: str = "max"
) -> F32:
    """One intensity image from one or several channels.

    Parameters
    ----------
    planes : (..., C, H, W) numpy.ndarray
        Images with their channel axis at ``-3``, any real dtype.
    channels : int or sequence of int
        Channel(s) to use.
    combine : {'max', 'mean'}
        With several channels: each is rescaled to ``[0, 1]`` by its own minimum and maximum
        (per image), then the pixel-wise maximum or mean is taken.

    Returns
    -------
    (..., H, W) numpy.ndarray of float32
    """
    idx = [int(channels)] if isinstance(channels, int | np.integer) else [int(c) for c in channels]
    n_ch = planes.shape[-3]
    bad = [c for c in idx if not -n_ch <= c < n_ch]
    if not idx or bad:
        raise ConfigError("segment", [("channel", f"{channels} not in 0..{n_ch - 1}")])
    if len(idx) == 1:
        one: F32 = planes[..., idx[0], :, :].astype(np.float32)
        return one
    if combine not in ("max", "mean"):
        raise UnknownNameError("channel combination", combine, ["max", "mean"])
    sel = planes[..., idx, :, :].astype(np.float32)
    lo = sel.min(axis=(-2, -1), keepdims=True)
    span = sel.max(axis=(-2, -1), keepdims=True) - lo
    sel = (sel - lo) / np.where(span > 0, span, 1.0)
    out: F32 = sel.max(axis=-3) if combine == "max" else sel.mean(axis=-3)
    return out


def threshold_mask(
    image: F32, method: ThresholdMethod, correction: float, block_size: int, offset: float
) -> NDArray[np.bool_]:
    """Foreground of a 2-D image: ``image > threshold * correction`` (local or global)."""
    if method is ThresholdMethod.LOCAL:
        local = threshold_local(image, block_size, method="gaussian", offset=offset)
        mask: NDArray[np.bool_] = image > local * correction
        return mask
    return np.asarray(image > histogram_threshold(image, method=method) * correction)


def histogram_threshold(
    image: ArrayLike,
    *,
    method: str | ThresholdMethod = ThresholdMethod.OTSU,
    nbins: int = 256,
) -> float:
    """One automatic threshold for a whole image (see :func:`group_thresholds`)."""
    return float(row_thresholds(np.asarray(image).reshape(1, -1), method=method, nbins=nbins)[0])
