"""Cell segmentation for the cytometry pipeline.

* **IFC mode** -- :func:`segment_single_cell`: one cell per small image; a whole batch
  ``(N, C, H, W)`` is thresholded, labelled and cleaned in a handful of vectorised calls.
* **field mode** -- :func:`segment_field` / :func:`segment_fields`: threshold + seeded watershed
  to split touching cells (implementation in :mod:`._watershed`).
* **Cellpose** -- :func:`segment_cellpose`, only when the ``cellpose`` package is installed and the
  user gives a model file; weights are never downloaded.
* **user labels** -- :func:`validate_labels` checks and renumbers label images made elsewhere.

Every function returns ``int32`` label images, 0 = background.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage
from skimage.segmentation import relabel_sequential

from scopeflow.core.errors import ConfigError, UnknownNameError
from scopeflow.ops.cyto._threshold import (
    PLANES4,
    PLANES8,
    ThresholdMethod,
    combine_channels,
    parse_method,
    row_thresholds,
    smoothed_or_edges,
)
from scopeflow.ops.cyto._watershed import (
    Landscape,
    SeedMethod,
    fill_label_holes,
    filter_label_area,
    remove_border_labels,
    segment_field,
)

__all__ = [
    "Landscape",
    "SeedMethod",
    "ThresholdMethod",
    "fill_label_holes",
    "filter_label_area",
    "remove_border_labels",
    "segment_cellpose",
    "segment_field",
    "segment_fields",
    "segment_single_cell",
    "validate_labels",
]

I32 = NDArray[np.int32]


def segment_single_cell(
    images: ArrayLike,
    *,
    channel: int | Sequence[int] = 0,
    channel_axis: int | None = 1,
    method: str = "otsu",
    smooth: float = 1.0,
    threshold_correction: float = 1.0,
    combine: str = "max",
    edges: bool = False,
    select: str = "largest",
    fill_holes: bool = True,
    min_area: float = 0.0,
    nbins: int = 256,
) -> I32:
    """Segment the one cell of every image of a batch (imaging flow cytometry).

    Per image: smooth the chosen channel(s), threshold with one automatic threshold per image,
    keep one connected component (the largest, or the one nearest the image centre), fill its
    holes. The whole batch is processed at once: thresholds from per-image histograms
    (:mod:`._threshold`), one :func:`scipy.ndimage.label` call over the stack with in-plane
    connectivity.

    Parameters
    ----------
    images : (N, C, H, W) or (N, H, W) array_like
        A batch of images, any real dtype; channels along ``channel_axis`` (``None`` for
        single-channel ``(N, H, W)``).
    channel : int or sequence of int
        Channel(s) showing the cell; several are rescaled per image to ``[0, 1]`` and combined
        by ``combine``.
    channel_axis : int or None
        Axis of the channels.
    method : {'otsu', 'li', 'triangle'}
        Automatic threshold per image.
    smooth : float
        Gaussian sigma (px) before thresholding.
    threshold_correction : float
        Factor applied to each threshold.
    combine : {'max', 'mean'}
        Combination of several channels.
    edges : bool
        Threshold the Sobel gradient magnitude (smoothed again with ``2 * smooth``) instead of
        the intensity, as SCIP does for bright-field images whose cells are neither brighter
        nor darker than the background; holes are then filled.
    select : {'largest', 'central'}
        Which component is the cell.
    fill_holes : bool
        Fill holes of the cell mask.
    min_area : float
        Components smaller than this (px) are never chosen; an image without any gets no cell.
    nbins : int
        Histogram bins of the per-image thresholds.

    Returns
    -------
    (N, H, W) numpy.ndarray of int32
        1 on the cell, 0 elsewhere (all 0 when no cell was found).

    References
    ----------
    .. [1] Lippeveld M et al. (2023) "SCIP: a scalable, reproducible and open-source pipeline for
       morphological profiling image cytometry and microscopy data", Bioinformatics.
       :DOI:`10.1093/bioinformatics/btad707`
    """
    arr = np.asarray(images)
    if channel_axis is None:
        if arr.ndim != 3:
            raise ValueError(f"channel_axis=None needs (N, H, W) images, got shape {arr.shape}")
        arr = arr[:, None]
    elif arr.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) images, got shape {arr.shape}")
    else:
        arr = np.moveaxis(arr, channel_axis, 1)
    thr = parse_method(method, allow_local=False)
    if select not in ("largest", "central"):
        raise UnknownNameError("cell selection", select, ["largest", "central"])
    n, _, h, w = arr.shape
    if n == 0:
        return np.zeros((0, h, w), dtype=np.int32)

    x = combine_channels(arr, channel, combine=combine)
    x = smoothed_or_edges(x, smooth, edges)
    t = row_thresholds(x, method=thr, nbins=nbins) * threshold_correction
    binary = x > t[:, None, None]

    lab, n_lab = ndimage.label(binary, structure=PLANES8)
    if n_lab == 0:
        return np.zeros((n, h, w), dtype=np.int32)
    flat = lab.ravel()
    area = np.bincount(flat, minlength=n_lab + 1).astype(np.float64)
    plane = np.zeros(n_lab + 1, dtype=np.intp)
    plane[flat] = np.repeat(np.arange(n, dtype=np.intp), h * w)
    if select == "largest":
        score = area.copy()
    else:
        rows = np.broadcast_to(np.arange(h, dtype=np.float64)[None, :, None], lab.shape).ravel()
        cols = np.broadcast_to(np.arange(w, dtype=np.float64)[None, None, :], lab.shape).ravel()
        with np.errstate(invalid="ignore", divide="ignore"):
            cy = np.bincount(flat, weights=rows, minlength=n_lab + 1) / area
            cx = np.bincount(flat, weights=cols, minlength=n_lab + 1) / area
        score = -np.hypot(cy - (h - 1) / 2.0, cx - (w - 1) / 2.0)
    valid = area >= max(min_area, 1.0)
    valid[0] = False
    cand = np.flatnonzero(valid)
    # best candidate per plane: sort by (plane, score), keep the last of each plane
    order = cand[np.lexsort((score[cand], plane[cand]))]
    last = np.r_[plane[order][1:] != plane[order][:-1], True] if order.size else order
    keep = np.zeros(n_lab + 1, dtype=bool)
    keep[order[last]] = True
    mask = keep[lab]
    if fill_holes or edges:
        mask = ndimage.binary_fill_holes(mask, structure=PLANES4)
    out: I32 = np.asarray(mask, dtype=np.int32)
    return out


def segment_fields(images: ArrayLike, *, channel_axis: int = 1, **options: Any) -> I32:
    """:func:`segment_field` on every field of a batch.

    Parameters
    ----------
    images : (N, C, H, W) array_like
        Fields, channels along ``channel_axis``.
    channel_axis : int
        Axis of the channels.
    **options
        Keyword options of :func:`segment_field`.

    Returns
    -------
    (N, H, W) numpy.ndarray of int32
        Labels per field (numbered from 1 in each field).
    """
    arr = np.moveaxis(np.asarray(images), channel_axis, 1)
    if arr.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) fields, got shape {arr.shape}")
    out = np.zeros((arr.shape[0], *arr.shape[2:]), dtype=np.int32)
    for i, field in enumerate(arr):
        out[i] = segment_field(field, channel_axis=0, **options)
    return out


def segment_cellpose(
    image: ArrayLike,
    model_path: str | Path | None,
    *,
    channel_axis: int | None = None,
    diameter: float | None = None,
    gpu: bool = False,
    eval_options: Mapping[str, Any] | None = None,
) -> I32:
    """Segment with a user-supplied Cellpose model (optional; never downloads weights).

    Parameters
    ----------
    image : (H, W) or multichannel array_like
        One image; channels along ``channel_axis``.
    model_path : str or pathlib.Path
        A Cellpose model file that the user provides.
    channel_axis : int, optional
        Axis of the channels, passed to Cellpose.
    diameter : float, optional
        Expected cell diameter (px), passed to Cellpose.
    gpu : bool
        Let Cellpose use a GPU.
    eval_options : mapping, optional
        Further keyword arguments of ``CellposeModel.eval``.

    Returns
    -------
    (H, W) numpy.ndarray of int32
        Labels from Cellpose, renumbered ``1 ... n``.

    Raises
    ------
    scopeflow.core.errors.ConfigError
        ``cellpose`` is not installed, or no model file is given, or it does not exist (all
        problems are listed). Cellpose is not a dependency of scopeflow: install it yourself.

    References
    ----------
    .. [1] Stringer C, Wang T, Michaelos M, Pachitariu M (2021) "Cellpose: a generalist
       algorithm for cellular segmentation", Nat. Methods 18: 100-106.
       :DOI:`10.1038/s41592-020-01018-x`
    """
    problems = []
    if importlib.util.find_spec("cellpose") is None:
        problems.append(
            (
                "cellpose",
                "the 'cellpose' package is not installed (it is optional: pip install cellpose)",
            )
        )
    path = None if model_path is None or str(model_path) == "" else Path(model_path)
    if path is None:
        problems.append(
            ("model_path", "a Cellpose model file is required (weights are never downloaded)")
        )
    elif not path.is_file():
        problems.append(("model_path", f"model file not found: {path}"))
    if problems:
        raise ConfigError("segment_cellpose", problems)
    assert path is not None
    models = importlib.import_module("cellpose.models")
    model = models.CellposeModel(gpu=gpu, pretrained_model=str(path))
    result = model.eval(
        np.asarray(image), diameter=diameter, channel_axis=channel_axis, **dict(eval_options or {})
    )
    masks = np.asarray(result[0])
    out, _, _ = relabel_sequential(masks.astype(np.int64))
    labels: I32 = out.astype(np.int32)
    return labels


def validate_labels(
    labels: ArrayLike,
    shape: Sequence[int] | None = None,
    *,
    relabel: bool = True,
    source: str = "labels",
) -> I32:
    """Check a user-supplied label image (or stack) and return it as ``int32``.

    Parameters
    ----------
    labels : (H, W) or (N, H, W) array_like of int
        Label image(s), 0 = background; a stack holds one independent label image per plane.
    shape : sequence of int, optional
        Expected shape (e.g. the images' ``(N, H, W)`` or ``(H, W)``).
    relabel : bool
        Renumber each plane's labels to ``1 ... n`` in order of value.
    source : str
        Named in errors (e.g. the file the labels came from).

    Returns
    -------
    numpy.ndarray of int32
        Same shape as ``labels``.

    Raises
    ------
    scopeflow.core.errors.ConfigError
        Wrong shape, a non-integer (or boolean) dtype, negative labels or labels beyond int32.
    """
    arr = np.asarray(labels)
    problems = []
    if shape is not None and tuple(arr.shape) != tuple(int(s) for s in shape):
        problems.append(("shape", f"labels have shape {arr.shape}, images {tuple(shape)}"))
    if arr.dtype.kind == "b":
        problems.append(("dtype", "a boolean mask is not a label image; label it first"))
    elif arr.dtype.kind not in "iu":
        problems.append(("dtype", f"labels must be integers, got {arr.dtype}"))
    elif arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0:
            problems.append(("values", f"negative label {lo}"))
        if hi > np.iinfo(np.int32).max:
            problems.append(("values", f"label {hi} does not fit int32"))
    if arr.ndim not in (2, 3):
        problems.append(("ndim", f"expected (H, W) or (N, H, W), got {arr.ndim} dimensions"))
    if problems:
        raise ConfigError(source, problems)
    if not relabel:
        return arr.astype(np.int32)
    planes = arr[None] if arr.ndim == 2 else arr
    out = np.empty(planes.shape, dtype=np.int32)
    for i, plane in enumerate(planes):
        out[i] = relabel_sequential(plane.astype(np.int64))[0]
    result: I32 = out[0] if arr.ndim == 2 else out
    return result
