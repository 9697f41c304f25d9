"""Plane ranges of a stack of small images in one multi-page TIFF (one image per page).

Imaging flow cytometry stores thousands of small images per channel as one multi-page TIFF. A
:class:`~scopeflow.io.TiffReader` parses every page's header when it opens such a file (≈ 50 ms
for 2,000 pages) and closing it drops the process's open handle, so a batch of images read
through ``open_image`` pays that parse twice per file and batch. These functions go through the
per-process cache of open files instead: a file is parsed and checked for damage once per
process, and each batch reads just its pages in one call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scopeflow.core import FormatError, InputNotFoundError

from ._tiff import _TiffArray, check_extent, tiff_errors
from ._tiff_cache import OPEN_FILES

__all__ = ["read_tiff_planes", "tiff_stack_shape"]


def _stack_series(path: Path, series: int) -> tuple[tuple[int, ...], Any]:
    """Native shape and dtype of a page-sequence series, checked once per process."""
    if not path.exists():
        raise InputNotFoundError(path, "tiff image stack")
    try:
        with tiff_errors(path), OPEN_FILES.file(path) as entry, OPEN_FILES.lock:
            s = entry.tif.series[series]
            if series not in entry.checked:
                check_extent(path, s)
                entry.checked.add(series)
            axes, shape, dtype = s.axes, tuple(int(n) for n in s.shape), s.dtype
    except FormatError:
        OPEN_FILES.release(path)  # damaged: do not keep it open
        raise
    if axes[-2:] != "YX" or len(shape) not in (2, 3):
        raise FormatError(path, f"expected a stack of 2-D images (pages), got axes {axes} {shape}")
    return shape, dtype


def tiff_stack_shape(path: str | Path, series: int = 0) -> tuple[int, int, int]:
    """``(planes, Y, X)`` of a TIFF holding one 2-D image per page.

    Raises
    ------
    FormatError
        The file is damaged or its series is not a sequence of 2-D planes.
    InputNotFoundError
        The file does not exist.
    """
    shape = _stack_series(Path(path), series)[0]
    return (1, shape[0], shape[1]) if len(shape) == 2 else (shape[0], shape[1], shape[2])


def read_tiff_planes(
    path: str | Path, start: int, stop: int, step: int = 1, series: int = 0
) -> np.ndarray[Any, Any]:
    """Planes ``start:stop:step`` of a TIFF holding one 2-D image per page, as ``(n, Y, X)``.

    Only those pages are read.

    Raises
    ------
    FormatError
        The file is damaged, has fewer planes than ``stop``, or a page cannot be decoded.
    InputNotFoundError
        The file does not exist.
    """
    path = Path(path)
    shape, dtype = _stack_series(path, series)
    planes = shape[0] if len(shape) == 3 else 1
    if not 0 <= start <= stop <= planes:
        raise FormatError(path, f"planes {start}:{stop} requested, the file has {planes}")
    array = _TiffArray(path, series, shape, dtype)
    if len(shape) == 2:
        return np.asarray(array[:, :])[None][start:stop:step]
    return np.asarray(array[start:stop:step, :, :])
