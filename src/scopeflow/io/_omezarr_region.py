"""Parallel region writes into a preallocated OME-Zarr image (one time point per call).

:func:`~scopeflow.io._omezarr_write.create_ome_zarr` makes every level with chunks of one time
point (and one channel), so writers of different time points never touch the same chunk file
and need no lock: a pipeline's units call :func:`write_ome_zarr_region` concurrently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr

from scopeflow.core import FormatError
from scopeflow.io import _omezarr_meta as meta
from scopeflow.io._omezarr_pyramid import PyramidLayout, as_dask, layout_of_levels, store_pyramid


def _read_layout(path: Path) -> tuple[list[Any], PyramidLayout]:
    """Level arrays and layout of an image made by :func:`create_ome_zarr`."""
    try:
        group = zarr.open_group(str(path), mode="r+")
        content, version = meta.ngff_content(dict(group.attrs))
        if version is None:
            raise ValueError("no OME-NGFF multiscales metadata")
        ms = content["multiscales"][0]
        arrays: list[Any] = [group[d["path"]] for d in ms["datasets"]]
        axes = meta.check_axes("".join(str(a["name"]) for a in ms["axes"]), arrays[0].ndim)
        shapes = [tuple(a.shape) for a in arrays]
        layout = layout_of_levels(axes, arrays[0].dtype, shapes, arrays[0].chunks)
    except Exception as exc:
        raise FormatError(path, f"not an OME-Zarr image to write into: {exc}") from exc
    return arrays, layout


def write_ome_zarr_region(path: str | Path, t: int, data: Any, *, c: int | None = None) -> None:
    """Write one time point (optionally one channel of it) into every level of an image.

    Safe to call concurrently for different ``t`` (or ``(t, c)``) on one image made by
    :func:`create_ome_zarr`: they write disjoint chunks. The pyramid of ``data`` is computed
    here, with Dask's local threaded scheduler (so it is safe inside a Dask worker task).

    Parameters
    ----------
    path
        An OME-Zarr image made by :func:`create_ome_zarr` with a ``t`` axis.
    t
        Time point index.
    data
        The time point, axes of the image without ``t`` (and without ``c`` when ``c`` is given).
    c
        Channel index, to write one channel at a time.

    Raises
    ------
    ValueError
        ``t`` / ``c`` out of range, or ``data`` of the wrong shape or dtype kind.
    FormatError
        ``path`` is not an OME-Zarr image with a block-mean pyramid.
    """
    path = Path(path)
    targets, layout = _read_layout(path)
    if "t" not in layout.axes:
        raise ValueError(f"{path} has no t axis (axes {layout.axes!r})")
    fixed = {"t": t} if c is None else {"t": t, "c": c}
    if c is not None and "c" not in layout.axes:
        raise ValueError(f"{path} has no c axis (axes {layout.axes!r})")
    for a, i in fixed.items():
        n = layout.shapes[0][layout.axes.index(a)]
        if not 0 <= i < n:
            raise ValueError(f"{a}={i} is out of range for {path} ({a} has {n} entries)")
    keep = [a not in fixed for a in layout.axes]
    want = tuple(n for n, k in zip(layout.shapes[0], keep, strict=True) if k)
    arr = data if isinstance(data, da.Array) else np.asarray(data)
    if tuple(arr.shape) != want:
        raise ValueError(f"data of shape {tuple(arr.shape)} does not fit {path}: expected {want}")
    arr = arr.astype(layout.dtype) if arr.dtype != layout.dtype else arr
    chunks0 = tuple(c0 for c0, k in zip(layout.level_chunks(0), keep, strict=True) if k)
    full = as_dask(arr, chunks0)[tuple(slice(None) if k else np.newaxis for k in keep)]
    regions = [
        tuple(
            slice(fixed[a], fixed[a] + 1) if a in fixed else slice(0, n)
            for a, n in zip(layout.axes, shape, strict=True)
        )
        for shape in layout.shapes
    ]
    store_pyramid(full, layout, targets, regions, scheduler="threads")


__all__ = ["write_ome_zarr_region"]
