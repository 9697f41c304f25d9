"""``Intensity_*`` features (CellProfiler's MeasureObjectIntensity) of all objects at once.

Order statistics are computed after one sort of all pixel values of the batch by (object,
value): integer-valued images use a single ``np.sort`` of combined integer keys; other values
are ranked first. Quantiles use numpy's default ("linear") definition.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from scopeflow.core.errors import ConfigError
from scopeflow.ops.cyto._moments import F64, Features, ObjectPixels, segment_reduce

INTENSITY_FEATURES = (
    "IntegratedIntensity", "MeanIntensity", "StdIntensity", "MinIntensity", "MaxIntensity",
    "LowerQuartileIntensity", "MedianIntensity", "UpperQuartileIntensity", "MADIntensity",
    "Skewness", "Kurtosis", "MassDisplacement", "IntegratedIntensityEdge",
    "MeanIntensityEdge", "StdIntensityEdge", "MinIntensityEdge", "MaxIntensityEdge",
)  # fmt: skip


def gather_values(images: NDArray[Any], op: ObjectPixels) -> F64:
    """Values of every channel at every object pixel, ``(n_channels, n_pixels)`` float64.

    ``images`` is ``(n_images, n_channels, height, width)``.
    """
    _, n_ch, h, w = images.shape
    flat = np.ascontiguousarray(images).reshape(-1)
    img = op.src // (h * w)
    base = img * (n_ch * h * w) + op.src % (h * w)
    out = np.empty((n_ch, op.src.size))
    for c in range(n_ch):
        out[c] = flat[base + c * h * w]
    return out


def resolve_background(
    background: str | ArrayLike | None, n_img: int, n_ch: int, *, source: str
) -> NDArray[np.float64] | str | None:
    """Validate the ``background`` option: None, ``"median_outside"`` or ``(N, C)`` levels."""
    if background is None or (isinstance(background, str) and background == "median_outside"):
        return background
    if isinstance(background, str):
        problem = f"expected None, 'median_outside' or values, got {background!r}"
        raise ConfigError(source, [("background", problem)])
    try:
        return np.broadcast_to(np.asarray(background, dtype=np.float64), (n_img, n_ch))
    except (ValueError, TypeError) as err:
        problem = f"cannot broadcast to (N, C) = ({n_img}, {n_ch}): {err}"
        raise ConfigError(source, [("background", problem)]) from err


def background_levels(images: NDArray[Any], labels: NDArray[Any]) -> F64:
    """Median of the pixels outside all objects, per image and channel: ``(n_images, n_ch)``.

    NaN for an image without background pixels.
    """
    n_img, n_ch, h, w = images.shape
    fg = labels.reshape(n_img, 1, h * w) > 0
    vals = np.where(fg, np.inf, images.reshape(n_img, n_ch, h * w).astype(np.float64))
    vals.sort(axis=-1)
    n_bg = (h * w - fg.sum(axis=-1)).astype(np.int64)  # (n_img, 1)
    lo = np.maximum((n_bg - 1) // 2, 0)
    hi = np.maximum(n_bg // 2, 0)
    a = np.take_along_axis(vals, np.broadcast_to(lo[:, :, None], (n_img, n_ch, 1)), -1)[..., 0]
    b = np.take_along_axis(vals, np.broadcast_to(hi[:, :, None], (n_img, n_ch, 1)), -1)[..., 0]
    with np.errstate(invalid="ignore"):
        levels: F64 = np.where(n_bg > 0, (a + b) / 2, np.nan)
    return levels


def is_integral(values: F64) -> bool:
    """Whether all values are integers (then sorts use one integer key sort)."""
    return bool(np.array_equal(values, np.floor(values)))


def sort_within_objects(values: F64, op: ObjectPixels, integral: bool | None = None) -> F64:
    """Sort ``(n_channels, n_pixels)`` values within every object (pixel order of ``op``)."""
    if values.size == 0:
        return values.copy()
    if integral is None:
        integral = is_integral(values)
    vmin, vmax = float(values.min()), float(values.max())
    span = vmax - vmin + 1
    if integral and np.isfinite(span) and span * (op.n_objects + 1) < 2.0**62:
        key = op.obj * np.int64(span) + (values - vmin).astype(np.int64)
        key.sort(axis=-1)
        return (key % np.int64(span)).astype(np.float64) + vmin
    out = np.empty_like(values)
    n = values.shape[-1]
    rank = np.empty(n, dtype=np.int64)
    for c in range(values.shape[0]):
        order = np.argsort(values[c], kind="stable")
        rank[order] = np.arange(n)
        key = op.obj * n + rank
        key.sort()
        out[c] = values[c][order[key % n]]
    return out


def quantile_sorted(
    sorted_values: F64, starts: NDArray[np.int64], counts: NDArray[np.int64], q: float
) -> F64:
    """Quantile ``q`` of every segment of within-segment sorted values (numpy "linear")."""
    pos = q * (counts - 1)
    lo = np.floor(pos).astype(np.int64)
    t = pos - lo
    hi = np.minimum(lo + 1, counts - 1)
    a = sorted_values[..., starts + lo]
    b = sorted_values[..., starts + hi]
    diff = b - a
    # numpy's _lerp: exact at both ends
    out: F64 = np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)
    return out


def edge_mask(op: ObjectPixels) -> NDArray[np.bool_]:
    """Object pixels with a 4-neighbour (inside the image) of another label or background.

    Equals ``skimage.segmentation.find_boundaries(labels, mode="inner")`` (as CellProfiler).
    """
    _, h, w = op.shape
    me = op.obj + 1
    edge = np.zeros(op.obj.size, dtype=bool)
    for (dr, dc), inside in (
        ((-1, 0), op.row > 0),
        ((1, 0), op.row < h - 1),
        ((0, -1), op.col > 0),
        ((0, 1), op.col < w - 1),
    ):
        edge |= inside & (op.canvas[op.pix + op.offset(dr, dc)] != me)
    return edge


def intensity_features(
    op: ObjectPixels, values: F64, centroid_row: F64, centroid_col: F64
) -> Features:
    """``Intensity_*`` features per channel (names without prefix/channel), ``(C, n)`` each.

    Parameters
    ----------
    op
        Object pixel table.
    values
        ``(n_channels, n_pixels)`` pixel values (background already subtracted if wanted).
    centroid_row, centroid_col
        ``(n_objects,)`` object centroids (for ``MassDisplacement``).
    """
    area = op.area.astype(np.float64)
    total = op.sum(values)
    mean = total / area
    dev = values - mean[:, op.obj]
    dev2 = dev * dev
    m2 = op.sum(dev2) / area
    m3 = op.sum(dev2 * dev) / area
    m4 = op.sum(dev2 * dev2) / area
    integral = is_integral(values)
    srt = sort_within_objects(values, op, integral)
    median = quantile_sorted(srt, op.starts, op.area, 0.5)
    if integral:  # twice the deviations from the median are integers too
        absdev2 = np.abs(2 * values - 2 * median[:, op.obj])
        mad = quantile_sorted(sort_within_objects(absdev2, op, True), op.starts, op.area, 0.5) / 2
    else:
        absdev = np.abs(values - median[:, op.obj])
        mad = quantile_sorted(sort_within_objects(absdev, op, False), op.starts, op.area, 0.5)
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = np.where(m2 > 0, m3 / m2**1.5, np.nan)
        kurt = np.where(m2 > 0, m4 / m2**2 - 3.0, np.nan)
        cm_row = op.sum(values * op.row) / total
        cm_col = op.sum(values * op.col) / total
    displacement = np.hypot(cm_row - centroid_row, cm_col - centroid_col)
    f: Features = {
        "IntegratedIntensity": total,
        "MeanIntensity": mean,
        "StdIntensity": np.sqrt(m2),
        "MinIntensity": srt[:, op.starts],
        "MaxIntensity": srt[:, op.starts + op.area - 1],
        "LowerQuartileIntensity": quantile_sorted(srt, op.starts, op.area, 0.25),
        "MedianIntensity": median,
        "UpperQuartileIntensity": quantile_sorted(srt, op.starts, op.area, 0.75),
        "MADIntensity": mad,
        "Skewness": skew,
        "Kurtosis": kurt,
        "MassDisplacement": displacement,
    }
    f.update(_edge_features(op, values))
    return f


def _edge_features(op: ObjectPixels, values: F64) -> Features:
    """Integrated / mean / std / min / max over each object's edge pixels (NaN if none)."""
    edge = edge_mask(op)
    counts = np.bincount(op.obj[edge], minlength=op.n_objects).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    ev = values[:, edge]
    total = segment_reduce(np.add, ev, starts, counts)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(counts > 0, total / counts, np.nan)
        dev = ev - mean[:, op.obj[edge]]
        var = segment_reduce(np.add, dev * dev, starts, counts) / counts
    return {
        "IntegratedIntensityEdge": total,
        "MeanIntensityEdge": mean,
        "StdIntensityEdge": np.sqrt(var),
        "MinIntensityEdge": segment_reduce(np.minimum, ev, starts, counts),
        "MaxIntensityEdge": segment_reduce(np.maximum, ev, starts, counts),
    }
