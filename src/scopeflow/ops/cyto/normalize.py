"""Per-channel percentile normalisation of cytometry images to ``[0, 1]`` ``float32``.

Two modes, both per channel:

* **per image** -- :func:`normalize_per_image`: each image's own ``(lo, hi)`` percentiles.
* **per dataset** -- a reduction over all batches, then one ``(lo, hi)`` per channel for every
  image: :func:`channel_quantiles` on each batch gives a :class:`QuantileState`, states merge
  with :func:`merge_quantile_states` (associative and commutative, so a tree reduction over
  Dask partitions works), :func:`finalize_quantiles` turns the merged state into ``(lo, hi)``
  and :func:`normalize` applies them.

Exact quantiles over millions of pixels would need all pixels in one place. The state is
instead a fixed-bin histogram per channel, which merges by addition. For 8- and 16-bit
integer images the bins are the integer values themselves (65,536 bins for ``uint16``), so the
quantiles are *exact*: they equal ``numpy.quantile(..., method="inverted_cdf")``. For other
dtypes the bins span a ``value_range`` that the caller fixes for the whole dataset, values
outside it count in the first / last bin, and the quantiles are interpolated linearly inside
a bin: the result is within one bin width, ``(last - first) / (bins - 1)``, of the exact
inverted-CDF quantile.

Images are ``(N, C, H, W)`` batches (or one ``(C, H, W)`` image) with the channel axis given
by ``channel_axis`` (default ``-3``); any real dtype.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from scopeflow.core.errors import ConfigError

__all__ = [
    "QuantileState",
    "channel_quantiles",
    "finalize_quantiles",
    "image_quantiles",
    "merge_quantile_states",
    "normalize",
    "normalize_per_image",
]

F64 = NDArray[np.float64]
DEFAULT_Q = (1.0, 99.0)
FLOAT_BINS = 65536


@dataclass(frozen=True, eq=False)
class QuantileState:
    """Mergeable partial state of per-channel quantiles: one histogram per channel.

    Attributes
    ----------
    counts : (C, B) numpy.ndarray of int64
        Pixel counts per channel and bin.
    value_range : tuple of float
        ``(first, last)``: the value of the first bin and of the last bin (bin ``k`` holds values
        near ``first + k * (last - first) / (B - 1)``).
    q : tuple of float
        ``(lo, hi)`` percentiles, 0-100, that :meth:`finalize` returns.
    exact : bool
        Whether every bin is one integer value (8/16-bit integer images): quantiles are exact.
    """

    counts: NDArray[np.int64]
    value_range: tuple[float, float]
    q: tuple[float, float]
    exact: bool

    @property
    def n_pixels(self) -> NDArray[np.int64]:
        """Number of pixels counted per channel, ``(C,)``."""
        out: NDArray[np.int64] = self.counts.sum(axis=1)
        return out

    def merge(self, other: QuantileState) -> QuantileState:
        """Return the state of both inputs' pixels (see :func:`merge_quantile_states`)."""
        return merge_quantile_states([self, other])

    def finalize(self) -> tuple[F64, F64]:
        """Return ``(lo, hi)``, each ``(C,)`` (see :func:`finalize_quantiles`)."""
        return finalize_quantiles(self)


def _check_q(q: tuple[float, float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in q)
    if not 0.0 <= lo < hi <= 100.0:
        raise ConfigError("normalize", [("q", f"need 0 <= lo < hi <= 100 (percentiles), got {q}")])
    return lo, hi


def _channels_first(images: ArrayLike, channel_axis: int) -> NDArray[Any]:
    """Return ``(N, C, P)``: images with channels at axis 1 and pixels flattened."""
    arr = np.asarray(images)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"images must be a real-valued array, got dtype {arr.dtype}")
    if arr.ndim not in (3, 4):
        raise ValueError(f"expected (N, C, H, W) or (C, H, W) images, got shape {arr.shape}")
    arr = np.moveaxis(arr, channel_axis, -3)
    if arr.ndim == 3:
        arr = arr[None]
    return arr.reshape(arr.shape[0], arr.shape[1], -1)


def channel_quantiles(
    images: ArrayLike,
    q: tuple[float, float] = DEFAULT_Q,
    *,
    channel_axis: int = -3,
    value_range: tuple[float, float] | None = None,
    bins: int = FLOAT_BINS,
) -> QuantileState:
    """Histogram the pixels of a batch per channel: the mergeable state of dataset quantiles.

    Parameters
    ----------
    images : (N, C, H, W) or (C, H, W) array_like
        A batch of images, any real dtype.
    q : tuple of float
        ``(lo, hi)`` percentiles (0-100) that the final result will hold.
    channel_axis : int
        Axis of the channels.
    value_range : tuple of float, optional
        ``(min, max)`` covered by the bins. Not needed (and ignored) for 8- and 16-bit
        integer images, whose bins are their integer values; required otherwise, and must be
        the same for every batch of the dataset.
    bins : int
        Number of bins when ``value_range`` is used.

    Returns
    -------
    QuantileState
        Counts ``(C, B)``; merge states of all batches, then :func:`finalize_quantiles`.

    Raises
    ------
    scopeflow.core.errors.ConfigError
        ``q`` is not ``0 <= lo < hi <= 100``, or ``value_range`` is missing for a float or wide
        integer dtype, or is not increasing.
    """
    qq = _check_q(q)
    arr = _channels_first(images, channel_axis)
    n_ch = arr.shape[1]
    kind, size = arr.dtype.kind, arr.dtype.itemsize
    if kind in "biu" and size <= 2:
        info = np.iinfo(arr.dtype) if kind != "b" else np.iinfo(np.uint8)
        first, n_bins = int(info.min), int(info.max) - int(info.min) + 1
        idx = arr.astype(np.intp) - first if first else arr.astype(np.intp)
        state_range, exact = (float(first), float(info.max)), True
    else:
        if value_range is None:
            raise ConfigError(
                "normalize",
                [
                    (
                        "value_range",
                        f"required for dtype {arr.dtype} (only 8/16-bit integers have "
                        "a natural range); use the same range for every batch",
                    )
                ],
            )
        first_f, last_f = (float(v) for v in value_range)
        if not last_f > first_f:
            raise ConfigError("normalize", [("value_range", f"must increase, got {value_range}")])
        n_bins = int(bins)
        scale = (n_bins - 1) / (last_f - first_f)
        work = np.nan_to_num(arr.astype(np.float64), nan=first_f)
        idx = np.rint((work - first_f) * scale).astype(np.intp)
        np.clip(idx, 0, n_bins - 1, out=idx)
        state_range, exact = (first_f, last_f), False
    keys = idx + (np.arange(n_ch, dtype=np.intp) * n_bins)[None, :, None]
    counts = np.bincount(keys.ravel(), minlength=n_ch * n_bins).reshape(n_ch, n_bins)
    return QuantileState(counts.astype(np.int64), state_range, qq, exact)


def merge_quantile_states(states: Iterable[QuantileState]) -> QuantileState:
    """Merge partial states (sum of histograms).

    Parameters
    ----------
    states : iterable of QuantileState
        States of disjoint batches, all made with the same channels, bins, range and ``q``;
        consumed one at a time (a generator keeps memory constant).

    Returns
    -------
    QuantileState
        The state of all their pixels.

    Raises
    ------
    ValueError
        No state, or states that do not match.
    """
    first: QuantileState | None = None
    total: NDArray[np.int64] | None = None
    for s in states:  # a running sum: memory does not grow with the number of states
        if first is None or total is None:
            first, total = s, s.counts.astype(np.int64, copy=True)
            continue
        if (
            s.counts.shape != first.counts.shape
            or s.value_range != first.value_range
            or s.q != first.q
            or s.exact != first.exact
        ):
            raise ValueError(
                "quantile states differ in channels, bins, value_range or q: "
                f"{s.counts.shape} {s.value_range} {s.q} vs "
                f"{first.counts.shape} {first.value_range} {first.q}"
            )
        total += s.counts
    if first is None or total is None:
        raise ValueError("merge_quantile_states needs at least one state")
    return QuantileState(total, first.value_range, first.q, first.exact)


def finalize_quantiles(state: QuantileState) -> tuple[F64, F64]:
    """Per-channel ``(lo, hi)`` quantile values from a (merged) state.

    Parameters
    ----------
    state : QuantileState
        Histograms of the whole dataset.

    Returns
    -------
    lo, hi : (C,) numpy.ndarray of float64
        The ``state.q`` percentiles per channel. Exact (``numpy.quantile`` with
        ``method="inverted_cdf"``) for 8/16-bit integer data; otherwise linearly interpolated
        inside the bin, within one bin width of that. NaN for a channel without pixels.
    """
    counts = state.counts
    n_bins = counts.shape[1]
    first, last = state.value_range
    step = (last - first) / (n_bins - 1)
    cum = np.cumsum(counts, axis=1)
    total = cum[:, -1].astype(np.float64)
    out = []
    for p in state.q:
        target = p / 100.0 * total
        # first bin whose cumulative count reaches the target (inverted CDF)
        k = np.array([np.searchsorted(cum[c], max(target[c], 1e-12)) for c in range(len(cum))])
        k = np.minimum(k, n_bins - 1)
        if state.exact:
            value = first + k * step
        else:
            before = np.where(k > 0, cum[np.arange(len(k)), np.maximum(k - 1, 0)], 0)
            inside = counts[np.arange(len(k)), k]
            frac = np.where(inside > 0, (target - before) / np.maximum(inside, 1), 0.5)
            value = first + (k - 0.5 + np.clip(frac, 0.0, 1.0)) * step
            value = np.clip(value, first, last)
        out.append(np.where(total > 0, value, np.nan).astype(np.float64))
    return out[0], out[1]


def image_quantiles(
    images: ArrayLike, q: tuple[float, float] = DEFAULT_Q, *, channel_axis: int = -3
) -> tuple[F64, F64]:
    """Per-image, per-channel percentiles.

    Parameters
    ----------
    images : (N, C, H, W) or (C, H, W) array_like
        Images, any real dtype.
    q : tuple of float
        ``(lo, hi)`` percentiles, 0-100.
    channel_axis : int
        Axis of the channels.

    Returns
    -------
    lo, hi : (N, C) numpy.ndarray of float64
        ``numpy.percentile`` (linear interpolation) of each image's channel; ``N = 1`` for a
        single image.
    """
    qq = _check_q(q)
    arr = _channels_first(images, channel_axis)
    vals = np.percentile(arr, qq, axis=-1)
    return vals[0].astype(np.float64), vals[1].astype(np.float64)


def normalize(
    images: ArrayLike, lo: ArrayLike, hi: ArrayLike, *, channel_axis: int = -3
) -> NDArray[np.float32]:
    """Clip each channel to ``[lo, hi]`` and rescale it to ``[0, 1]``.

    Parameters
    ----------
    images : (N, C, H, W) or (C, H, W) array_like
        Images, any real dtype.
    lo, hi : (C,) or (N, C) array_like
        Per-channel (dataset) or per-image-and-channel bounds, e.g. from
        :func:`finalize_quantiles` or :func:`image_quantiles`.
    channel_axis : int
        Axis of the channels (the output keeps the input's layout).

    Returns
    -------
    numpy.ndarray of float32
        Same shape as ``images``, values in ``[0, 1]``. A channel with ``hi <= lo`` maps to 0.
    """
    arr = np.asarray(images)
    if arr.ndim not in (3, 4):
        raise ValueError(f"expected (N, C, H, W) or (C, H, W) images, got shape {arr.shape}")
    moved = np.moveaxis(arr, channel_axis, -3)
    lo_a = np.asarray(lo, dtype=np.float64)
    hi_a = np.asarray(hi, dtype=np.float64)
    n_ch = moved.shape[-3]
    if lo_a.shape[-1:] != (n_ch,) or lo_a.shape != hi_a.shape:
        raise ValueError(f"lo {lo_a.shape} and hi {hi_a.shape} must be (C,) or (N, C), C={n_ch}")
    if lo_a.ndim == 2 and moved.ndim == 3:
        lo_a, hi_a = lo_a[0], hi_a[0]
    span = hi_a - lo_a
    scale = np.where(span > 0, 1.0 / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)
    lo32 = lo_a.astype(np.float32)[..., None, None]
    out = moved.astype(np.float32)
    out -= lo32
    out *= scale[..., None, None]
    np.clip(out, 0.0, 1.0, out=out)
    result: NDArray[np.float32] = np.moveaxis(out, -3, channel_axis)
    return result


def normalize_per_image(
    images: ArrayLike, q: tuple[float, float] = DEFAULT_Q, *, channel_axis: int = -3
) -> NDArray[np.float32]:
    """Normalise every image and channel by its own ``(lo, hi)`` percentiles.

    Parameters
    ----------
    images : (N, C, H, W) or (C, H, W) array_like
        Images, any real dtype.
    q : tuple of float
        ``(lo, hi)`` percentiles, 0-100.
    channel_axis : int
        Axis of the channels.

    Returns
    -------
    numpy.ndarray of float32
        Same shape as ``images``, in ``[0, 1]``.
    """
    arr = np.asarray(images)
    lo, hi = image_quantiles(arr, q, channel_axis=channel_axis)
    return normalize(arr, lo, hi, channel_axis=channel_axis)
