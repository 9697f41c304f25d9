"""Granularity spectra (CellProfiler's MeasureGranularity) of all objects at once.

For every channel, as CellProfiler: the images are subsampled (bilinear, ``subsample``), a
background estimated at a further ``background_subsample`` by a grey opening with a disk of
radius ``background_radius`` is subtracted (negative values clipped to 0), and then for
``k = 1..spectrum`` the image is eroded ``k`` times by the radius-1 disk (the 3x3 cross) and
opened. ``Granularity_k`` of an object is the decrease of the object's mean from opening
``k - 1`` to opening ``k``, in percent of its mean before the first opening. Object means are
those of the spectrum images resampled (bilinearly) back to full resolution, computed as one
sparse matrix product for all objects.

Differences from CellProfiler, for speed (documented in :func:`measure_objects`): the opening
of size ``k`` is the plain morphological opening by the diamond ``k`` crosses wide (erosion
then dilation), not an opening by reconstruction; and each object's spectrum is normalised by
its own mean of the background-corrected image (CellProfiler uses the uncorrected image for
the object start mean but the corrected one for the following means). The background disk
filter mirrors the image repeatedly when the disk is larger than the (subsampled) image, where
``scipy.ndimage.grey_erosion`` (used by CellProfiler through scikit-image) reads out of bounds.

References
----------
Serra J (1982) Image Analysis and Mathematical Morphology. Academic Press (granulometries).
Maragos P (1989) Pattern spectrum and multiscale shape representation. IEEE Trans. Pattern
Anal. Mach. Intell. 11(7):701-716, doi:10.1109/34.192465.
CellProfiler's MeasureGranularity (after I. Ravkin's ``granspectr``).
"""

from __future__ import annotations

from math import ceil
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from scopeflow.ops.cyto._moments import F64, Features, ObjectPixels

F32 = NDArray[np.float32]
_BLOCK_BYTES = 1 << 20  # working set of one block of images (fits in L2 cache)


def _grid(n: float) -> int:
    """Number of samples of ``np.mgrid[0:n]`` for a float ``n`` (CellProfiler's shapes)."""
    return ceil(n)


def _resample(a: F32, coords: tuple[F64, F64]) -> F32:
    """Bilinear samples of ``(N, h, w, C)`` images at row / column coordinates (separable)."""
    out = a
    for axis, c in ((1, coords[0]), (2, coords[1])):
        n = out.shape[axis]
        if np.array_equal(c, np.round(c)):
            out = np.take(out, c.astype(np.int64), axis=axis)
            continue
        i0 = np.clip(np.floor(c).astype(np.int64), 0, max(n - 2, 0))
        i1 = np.minimum(i0 + 1, n - 1)
        t = (c - i0).astype(np.float32)
        shape = [1, 1, 1, 1]
        shape[axis] = t.size
        t = t.reshape(shape)
        out = np.take(out, i0, axis=axis) * (1 - t) + np.take(out, i1, axis=axis) * t
    return out


def _cross(a: F32, ufunc: np.ufunc, out: F32) -> F32:
    """Grey erosion / dilation of ``(N, h, w, C)`` by the 3x3 cross (out-of-image ignored)."""
    if a.shape[1] > 1:
        ufunc(a[:, :-2], a[:, 2:], out=out[:, 1:-1])
        out[:, 0], out[:, -1] = a[:, 1], a[:, -2]
        ufunc(out, a, out=out)
    else:
        np.copyto(out, a)
    ufunc(out[:, :, 1:], a[:, :, :-1], out=out[:, :, 1:])
    ufunc(out[:, :, :-1], a[:, :, 1:], out=out[:, :, :-1])
    return out


def disk_filter(a: F32, radius: int, ufunc: np.ufunc) -> F32:
    """Grey erosion (``np.minimum``) or dilation (``np.maximum``) of ``(N, h, w, C)`` by a disk.

    The disk is ``skimage.morphology.disk(radius)``; outside the image the values are mirrored
    as ``scipy.ndimage``'s ``"reflect"`` mode, repeatedly when the disk is larger than the image
    (where ``scipy.ndimage.grey_erosion`` reads out of bounds). The disk is decomposed into
    horizontal segments: running minima of growing width, then one ``ufunc`` per row offset.
    """
    _, h, w, _ = a.shape
    r = radius
    p = np.pad(a, ((0, 0), (r, r), (r, r), (0, 0)), mode="symmetric")
    half = {dy: int(np.floor(np.sqrt(r * r - dy * dy))) for dy in range(-r, r + 1)}
    out = None
    run = p  # running window of half-width k, column offset k
    for k in range(r + 1):
        if k == 1:
            run = ufunc(ufunc(p[:, :, :-2], p[:, :, 1:-1]), p[:, :, 2:])
        elif k > 1:
            run = ufunc(run[:, :, :-2], run[:, :, 2:])
        for dy in (dy for dy, hw in half.items() if hw == k):
            rows = run[:, r + dy : r + dy + h, r - k : r - k + w]
            out = rows.copy() if out is None else ufunc(out, rows, out=out)
    assert out is not None
    return out


def _object_weights(
    op: ObjectPixels, lo_shape: tuple[int, int], frac: float
) -> tuple[NDArray[np.int64], NDArray[np.int64], F64]:
    """Mean operator of the bilinear upsampling to full size, as COO ``(object, column, w)``.

    Columns index the ``(n_images * h * w)`` low-resolution pixels; entries sorted by object.
    """
    _, h_full, w_full = op.shape
    h, w = lo_shape
    y = op.row * ((frac * h_full - 1) / max(h_full - 1, 1))
    x = op.col * ((frac * w_full - 1) / max(w_full - 1, 1))
    i0 = np.clip(np.floor(y).astype(np.int64), 0, max(h - 2, 0))
    j0 = np.clip(np.floor(x).astype(np.int64), 0, max(w - 2, 0))
    ty, tx = y - i0, x - j0
    base = (op.src // (h_full * w_full)) * (h * w)
    inv_area = 1.0 / op.area[op.obj]
    cols, data = [], []
    for di, wy in ((0, 1 - ty), (1, ty)):
        for dj, wx in ((0, 1 - tx), (1, tx)):
            cols.append(base + np.minimum(i0 + di, h - 1) * w + np.minimum(j0 + dj, w - 1))
            data.append(wy * wx * inv_area)
    return np.repeat(op.obj, 4), np.stack(cols, axis=1).ravel(), np.stack(data, axis=1).ravel()


def _prepare(images: NDArray[Any], frac: float, bfrac: float, radius: int) -> F32:
    """Subsampled, background-subtracted ``(N, h, w, C)`` float32 images (CellProfiler)."""
    _, _, h_full, w_full = images.shape
    pixels = np.ascontiguousarray(np.moveaxis(images, 1, -1), dtype=np.float32)
    if frac < 1:
        lo = (_grid(h_full * frac), _grid(w_full * frac))
        pixels = _resample(pixels, (np.arange(lo[0]) / frac, np.arange(lo[1]) / frac))
    if radius <= 0:
        return pixels
    h, w = pixels.shape[1:3]
    back = pixels
    bh, bw = h_full * frac * bfrac, w_full * frac * bfrac  # CellProfiler's float shapes
    if bfrac < 1:
        back = _resample(back, (np.arange(_grid(bh)) / bfrac, np.arange(_grid(bw)) / bfrac))
    back = disk_filter(disk_filter(back, radius, np.minimum), radius, np.maximum)
    if bfrac < 1:
        back = _resample(
            back,
            (
                np.arange(h) * ((bh - 1) / max(h_full * frac - 1, 1e-12)),
                np.arange(w) * ((bw - 1) / max(w_full * frac - 1, 1e-12)),
            ),
        )
    out: F32 = np.maximum(pixels - back, 0.0, dtype=np.float32)
    return out


def granularity_features(
    images: NDArray[Any],
    op: ObjectPixels,
    *,
    spectrum: int,
    subsample: float,
    background_subsample: float,
    background_radius: int,
) -> Features:
    """``Granularity_k`` for ``k = 1..spectrum`` per channel: ``{"k": (n_channels, n)}``.

    ``images`` is ``(n_images, n_channels, height, width)``. Images are processed in small
    blocks (so that the repeated erosions and dilations run in cache); images without objects
    are skipped.
    """
    n_img, n_ch, h_full, w_full = images.shape
    frac, bfrac = min(subsample, 1.0), min(background_subsample, 1.0)
    h, w = (_grid(h_full * frac), _grid(w_full * frac)) if frac < 1 else (h_full, w_full)
    w_obj, w_col, w_val = _object_weights(op, (h, w), frac)
    out = np.zeros((spectrum, n_ch, op.n_objects))
    first_object = np.searchsorted(op.image_index, np.arange(n_img + 1))
    first_entry = np.searchsorted(w_obj, first_object)
    block = max(1, _BLOCK_BYTES // (h * w * n_ch * 4))
    for i0 in range(0, n_img, block):
        i1 = min(i0 + block, n_img)
        o0, o1 = int(first_object[i0]), int(first_object[i1])
        if o0 == o1:
            continue
        e0, e1 = first_entry[i0], first_entry[i1]
        weights = sparse.csr_matrix(
            (w_val[e0:e1], (w_obj[e0:e1] - o0, w_col[e0:e1] - i0 * h * w)),
            shape=(o1 - o0, (i1 - i0) * h * w),
        )
        pixels = _prepare(images[i0:i1], frac, bfrac, background_radius)
        flat = ((i1 - i0) * h * w, n_ch)
        previous = weights @ pixels.reshape(flat)  # (objects, C)
        start = np.maximum(previous, np.finfo(np.float64).eps)
        eroded = pixels
        ero_bufs = (np.empty_like(pixels), np.empty_like(pixels))
        dil_bufs = (np.empty_like(pixels), np.empty_like(pixels))
        for k in range(1, spectrum + 1):
            eroded = _cross(eroded, np.minimum, ero_bufs[k % 2])
            opened = eroded
            for i in range(k):
                opened = _cross(opened, np.maximum, dil_bufs[i % 2])
            current = weights @ opened.reshape(flat)
            out[k - 1, :, o0:o1] = ((previous - current) * 100 / start).T
            previous = current
    return {str(k + 1): out[k] for k in range(spectrum)}
