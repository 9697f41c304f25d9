"""Per-channel masks of segmented cells and their combined mask, as SCIP makes them.

SCIP [1]_ thresholds every channel of a cell image on its own (Li or Otsu, after Gaussian
smoothing, optionally on the Sobel gradient), so that each channel's features are measured on
the part of the cell where that channel has signal; a *combined* mask (the union of chosen
channels' masks) is used for features of the whole cell. Here the threshold of each
(cell, channel) pair is computed over the cell's *region*:

* ``region="territory"`` (default): the cell grown by ``margin`` pixels, never into another
  cell -- the cell plus a ring of its own background, which keeps the histogram bimodal also for
  many cells per field of different brightness;
* ``region="image"``: the whole image (SCIP's behaviour for imaging-flow-cytometry images
  holding one cell).

All thresholds of a batch come from one vectorised histogram pass (:mod:`._threshold`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from scopeflow.core.errors import ConfigError, UnknownNameError
from scopeflow.ops.cyto._threshold import (
    PLANES4,
    PLANES8,
    parse_method,
    row_thresholds,
    smoothed_or_edges,
    territory_foreground,
)
from scopeflow.ops.cyto._watershed import filter_label_area

__all__ = ["channel_masks", "combined_mask", "compute_masks"]

BoolArray = NDArray[np.bool_]


def _as_batch(
    images: ArrayLike, labels: ArrayLike, channel_axis: int
) -> tuple[NDArray[np.float32], NDArray[np.int64], bool]:
    img = np.asarray(images)
    lab = np.asarray(labels)
    single = img.ndim == 3
    if img.ndim not in (3, 4):
        raise ValueError(f"expected (N, C, H, W) or (C, H, W) images, got shape {img.shape}")
    img = np.moveaxis(img, channel_axis, -3)
    if single:
        img, lab = img[None], lab[None]
    if lab.shape != (img.shape[0], *img.shape[2:]):
        raise ConfigError(
            "channel_masks", [("labels", f"shape {lab.shape} does not match images {img.shape}")]
        )
    if lab.dtype.kind not in "iub":
        raise ConfigError("channel_masks", [("labels", f"integer labels needed, not {lab.dtype}")])
    return img.astype(np.float32), lab.astype(np.int64), single


def channel_masks(
    images: ArrayLike,
    labels: ArrayLike,
    *,
    channel_axis: int = -3,
    method: str = "li",
    smooth: float = 1.0,
    edges: bool = False,
    region: str = "territory",
    margin: float = 5.0,
    inside: bool = True,
    fill_holes: bool = False,
    min_size: int = 0,
    nbins: int = 256,
) -> BoolArray:
    """Threshold every channel of every cell in its own region.

    Parameters
    ----------
    images : (N, C, H, W) or (C, H, W) array_like
        Images, any real dtype; channels along ``channel_axis``.
    labels : (N, H, W) or (H, W) array_like of int
        Cell labels per image (0 = background), e.g. from :mod:`.segment`.
    channel_axis : int
        Axis of the channels in ``images``.
    method : {'li', 'otsu', 'triangle'}
        Threshold per (cell, channel).
    smooth : float
        Gaussian sigma (px) applied to each channel first (SCIP: 1).
    edges : bool
        Threshold the Sobel gradient magnitude (smoothed again by ``2 * smooth``) instead of
        the intensity (SCIP's ``li`` masking); holes are then filled.
    region : {'territory', 'image'}
        Pixels over which each threshold is computed (see the module docstring).
    margin : float
        Growth (px) of a cell into the background for ``region="territory"``.
    inside : bool
        Keep only mask pixels inside the cell's label (else: anywhere in its region).
    fill_holes : bool
        Fill holes of each channel mask.
    min_size : int
        Remove connected mask components smaller than this (px) per channel.
    nbins : int
        Histogram bins per threshold.

    Returns
    -------
    numpy.ndarray of bool
        ``(N, C, H, W)`` (``(C, H, W)`` for a single image): pixel ``(n, c, y, x)`` is in the
        mask of channel ``c``.

    References
    ----------
    .. [1] Lippeveld M et al. (2023) "SCIP: a scalable, reproducible and open-source pipeline
       for morphological profiling image cytometry and microscopy data", Bioinformatics.
       :DOI:`10.1093/bioinformatics/btad707`
    """
    img, lab, single = _as_batch(images, labels, channel_axis)
    thr = parse_method(method, allow_local=False)
    if region not in ("territory", "image"):
        raise UnknownNameError("mask region", region, ["territory", "image"])
    n, c, h, w = img.shape
    work = smoothed_or_edges(img, smooth, edges)

    if region == "image":
        t = row_thresholds(work.reshape(n * c, -1), method=thr, nbins=nbins).reshape(n, c)
        masks = work > t[:, :, None, None]
        owner = np.broadcast_to(lab[:, None] > 0, masks.shape) if inside else None
        if owner is not None:
            masks &= owner
    else:
        fg, _ = territory_foreground(np.moveaxis(work, 1, 0), lab, margin, method=thr, nbins=nbins)
        if inside:
            fg &= (lab > 0)[None]
        masks = np.ascontiguousarray(np.moveaxis(fg, 0, 1))

    flat = masks.reshape(n * c, h, w)
    if min_size > 0 and flat.any():
        components = ndimage.label(flat, structure=PLANES8)[0]
        flat = filter_label_area(components, min_area=min_size) > 0
    if fill_holes or edges:
        flat = ndimage.binary_fill_holes(flat, structure=PLANES4)
        if inside:
            flat &= np.repeat(lab > 0, c, axis=0)
    out: BoolArray = np.ascontiguousarray(flat.reshape(n, c, h, w))
    return out[0] if single else out


def combined_mask(
    masks: ArrayLike,
    labels: ArrayLike | None = None,
    *,
    channels: Sequence[int] | None = None,
    how: str = "union",
) -> BoolArray:
    """Combine per-channel masks into one mask per image.

    Parameters
    ----------
    masks : (N, C, H, W) or (C, H, W) array_like of bool
        Per-channel masks from :func:`channel_masks`.
    labels : (N, H, W) or (H, W) array_like of int, optional
        Cell labels (needed for ``how="labels"``).
    channels : sequence of int, optional
        Channels in the union (default all; SCIP's ``combined_indices``).
    how : {'union', 'labels'}
        ``union``: a pixel in any chosen channel's mask; ``labels``: the segmentation mask
        itself (``labels > 0``).

    Returns
    -------
    numpy.ndarray of bool
        ``(N, H, W)`` (``(H, W)`` for a single image).
    """
    m = np.asarray(masks, dtype=bool)
    if how == "labels":
        if labels is None:
            raise ConfigError("combined_mask", [("labels", "required when how='labels'")])
        out: BoolArray = np.asarray(np.asarray(labels) > 0)
        return out
    if how != "union":
        raise UnknownNameError("mask combination", how, ["union", "labels"])
    idx = list(range(m.shape[-3])) if channels is None else [int(i) for i in channels]
    union: BoolArray = np.asarray(m[..., idx, :, :].any(axis=-3), dtype=bool)
    return union


def compute_masks(
    images: ArrayLike,
    labels: ArrayLike,
    *,
    channel_axis: int = -3,
    combine: str = "union",
    combined_channels: Sequence[int] | None = None,
    method: str = "li",
    smooth: float = 1.0,
    edges: bool = False,
    region: str = "territory",
    margin: float = 5.0,
    inside: bool = True,
    fill_holes: bool = False,
    min_size: int = 0,
    nbins: int = 256,
) -> tuple[BoolArray, BoolArray]:
    """Per-channel masks and the combined mask of a batch, in one call.

    Parameters
    ----------
    images, labels
        As in :func:`channel_masks`.
    channel_axis : int
        Axis of the channels in ``images``.
    combine : {'union', 'labels'}
        See :func:`combined_mask`.
    combined_channels : sequence of int, optional
        Channels in the union (default all).
    method, smooth, edges, region, margin, inside, fill_holes, min_size, nbins
        See :func:`channel_masks`.

    Returns
    -------
    masks : numpy.ndarray of bool
        ``(N, C, H, W)`` per-channel masks (``(C, H, W)`` for one image).
    combined : numpy.ndarray of bool
        ``(N, H, W)`` combined mask (``(H, W)`` for one image).
    """
    masks = channel_masks(
        images,
        labels,
        channel_axis=channel_axis,
        method=method,
        smooth=smooth,
        edges=edges,
        region=region,
        margin=margin,
        inside=inside,
        fill_holes=fill_holes,
        min_size=min_size,
        nbins=nbins,
    )
    combined = combined_mask(masks, labels, channels=combined_channels, how=combine)
    return masks, combined
