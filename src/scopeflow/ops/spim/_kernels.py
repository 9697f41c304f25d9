"""Numba kernels of SPIM fusion and deconvolution (CPU, one thread each, the GIL released).

The kernels are compiled on first use (``cache=True``: once per machine, the cache next to this
file or in ``NUMBA_CACHE_DIR``). They run serially and release the GIL, so callers parallelise
with ordinary threads, one block or slab each: no Numba threading layer is involved, which keeps
them safe in Dask workers with several threads. Compiled specialisations are few: one per view
dtype (uint8, uint16, float32) for the fusion kernel; float32 only for the others.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit
from numpy.typing import NDArray

ArrayF32 = NDArray[np.float32]
ArrayF64 = NDArray[np.float64]
ArrayAny = NDArray[Any]

__all__ = ["KERNEL_DTYPES", "reflect_pad", "rl_ratio", "rl_update", "sample_view"]

#: View dtypes :func:`sample_view` takes as they are (others are converted to float32 first).
KERNEL_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))

_fusion_jit = njit(nogil=True, cache=True, fastmath=True, error_model="numpy")


# Taylor coefficients of cos(x) in x^2, x in [0, pi/2]: error < 1e-8, below float32's epsilon
_COS = (1.0, -1.0 / 2, 1.0 / 24, -1.0 / 720, 1.0 / 40320, -1.0 / 3628800, 1.0 / 479001600)


@_fusion_jit
def _ramp(c: float, n: int, border: float, brange: float) -> np.float32:
    """Cosine-blending weight of view coordinate ``c`` on an axis of ``n`` pixels.

    ``0.5 - 0.5 cos(pi t)`` (``t`` = distance into the ramp over its length) in float32, like
    NumPy's float32 arithmetic: the ramp's first steps round to 0 alike. ``cos`` is a polynomial
    on ``[0, pi/2]`` (and ``cos(pi t) = -cos(pi (1 - t))``), free of branches and calls so that
    a row's weights are computed with SIMD instructions.
    """
    dist = np.float32(min(c, n - 1.0 - c) - border)
    t = min(max(dist / np.float32(max(brange, 1e-30)), np.float32(0.0)), np.float32(1.0))
    h = min(t, np.float32(1.0) - t) * np.float32(math.pi)
    x2 = h * h
    cos = np.float32(_COS[6])
    for p in range(5, -1, -1):
        cos = cos * x2 + np.float32(_COS[p])
    cos = -cos if t > np.float32(0.5) else cos
    w = np.float32(0.5) - np.float32(0.5) * cos
    w = np.float32(1.0) if dist >= np.float32(brange) else w
    return np.float32(0.0) if dist < np.float32(0.0) else w


@_fusion_jit
def _span(c0: float, step: float, lo: float, hi: float, n: int) -> tuple[int, int]:
    """Indices ``i`` of ``0..n-1`` with ``lo <= c0 + step * i <= hi``, widened by one each side."""
    if step == 0.0:
        return (0, n) if lo <= c0 <= hi else (0, 0)
    a, b = (lo - c0) / step, (hi - c0) / step
    if step < 0.0:
        a, b = b, a
    a, b = min(max(a, -2.0), n + 2.0), min(max(b, -2.0), n + 2.0)  # no int overflow
    return max(math.floor(a) - 1, 0), min(math.ceil(b) + 2, n)


@_fusion_jit
def _row_span(  # noqa: PLR0917 (Numba: no keyword-only arguments)
    bz: float,
    by: float,
    bx: float,
    mat: ArrayF64,
    vshape: tuple[int, int, int],
    border: float,
    n: int,
) -> tuple[int, int]:
    """Indices of a block row (view pixel ``b + mat[:, 2] * i``) that can have weight."""
    a0, b0 = _span(bz, mat[0, 2], border, vshape[0] - 1.0 - border, n)
    a1, b1 = _span(by, mat[1, 2], border, vshape[1] - 1.0 - border, n)
    a2, b2 = _span(bx, mat[2, 2], border, vshape[2] - 1.0 - border, n)
    return max(a0, a1, a2), min(b0, b1, b2)


@_fusion_jit
def _linear(a: ArrayAny, z: float, y: float, x: float) -> float:
    """Trilinear sample of ``a`` at ``(z, y, x)``, clamped to the array (ndimage ``'nearest'``)."""
    nz, ny, nx = a.shape
    z = min(max(z, 0.0), nz - 1.0)
    y = min(max(y, 0.0), ny - 1.0)
    x = min(max(x, 0.0), nx - 1.0)
    z0, y0, x0 = int(z), int(y), int(x)
    tz, ty, tx = z - z0, y - y0, x - x0
    z1, y1, x1 = min(z0 + 1, nz - 1), min(y0 + 1, ny - 1), min(x0 + 1, nx - 1)
    c00 = a[z0, y0, x0] + tx * (a[z0, y0, x1] - float(a[z0, y0, x0]))
    c01 = a[z0, y1, x0] + tx * (a[z0, y1, x1] - float(a[z0, y1, x0]))
    c10 = a[z1, y0, x0] + tx * (a[z1, y0, x1] - float(a[z1, y0, x0]))
    c11 = a[z1, y1, x0] + tx * (a[z1, y1, x1] - float(a[z1, y1, x0]))
    c0 = c00 + ty * (c01 - c00)
    c1 = c10 + ty * (c11 - c10)
    return float(c0 + tz * (c1 - c0))


@_fusion_jit
def sample_view(  # noqa: PLR0917 (Numba: no keyword-only arguments)
    data: ArrayAny,
    mat: ArrayF64,
    off: ArrayF64,
    shape: tuple[int, int, int],
    border: float,
    brange: float,
    content: ArrayF32,
    cscale: ArrayF64,
    use_content: bool,
    out_v: ArrayF32,
    out_w: ArrayF32,
    start: tuple[int, int, int],
    accumulate: bool,
) -> None:
    """One view's samples and weights over an output block (see :mod:`.fusion`).

    Block index ``(k, j, i)`` maps to view pixel ``mat @ (k, j, i) + off`` (z, y, x) and to
    output element ``start + (k, j, i)`` of ``out_v``/``out_w``. The weight is the cosine
    blending weight, times the trilinear sample of ``content`` at
    ``(pixel + 0.5) / cscale - 0.5`` when ``use_content``. Voxels of weight 0 are skipped.
    ``accumulate``: ``out_v += w * value`` and ``out_w += w``; else ``out_v = value``,
    ``out_w = w``.
    """
    vshape = data.shape
    iz, iy, ix = 1.0 / cscale[0], 1.0 / cscale[1], 1.0 / cscale[2]
    sz, sy, sx = mat[0, 2], mat[1, 2], mat[2, 2]
    wrow = np.empty(shape[2], dtype=np.float32)
    for k in range(shape[0]):
        for j in range(shape[1]):
            bz = mat[0, 0] * k + mat[0, 1] * j + off[0]
            by = mat[1, 0] * k + mat[1, 1] * j + off[1]
            bx = mat[2, 0] * k + mat[2, 1] * j + off[2]
            i0, i1 = _row_span(bz, by, bx, mat, vshape, border, shape[2])
            for i in range(i0, i1):  # weights first: a loop without branches, vectorised
                wrow[i] = (
                    _ramp(bz + sz * i, vshape[0], border, brange)
                    * _ramp(by + sy * i, vshape[1], border, brange)
                    * _ramp(bx + sx * i, vshape[2], border, brange)
                )
            oz, oy = start[0] + k, start[1] + j
            for i in range(i0, i1):
                w = wrow[i]
                if w <= 0.0:
                    continue
                cz, cy, cx = bz + sz * i, by + sy * i, bx + sx * i
                value = _linear(data, cz, cy, cx)
                if use_content:
                    w *= _linear(
                        content, (cz + 0.5) * iz - 0.5, (cy + 0.5) * iy - 0.5, (cx + 0.5) * ix - 0.5
                    )
                ox = start[2] + i
                if accumulate:
                    out_v[oz, oy, ox] += w * value
                    out_w[oz, oy, ox] += w
                else:
                    out_v[oz, oy, ox] = value
                    out_w[oz, oy, ox] = w


# Richardson-Lucy: float32 arithmetic in the NumPy expressions' order, and no fastmath (its
# "no NaN, no inf" assumption would remove the finite check)
_rl_jit = njit(nogil=True, cache=True, error_model="numpy")


@_rl_jit
def rl_ratio(  # noqa: PLR0917 (Numba: no keyword-only arguments)
    phi: ArrayF32,
    poff: tuple[int, int, int],
    ext: tuple[int, int, int],
    blurred: ArrayF32,
    boff: tuple[int, int, int],
    out: ArrayF32,
    ooff: tuple[int, int, int],
    z0: int,
    z1: int,
) -> None:
    """``q = phi / max(blurred, 1e-12)``, 1 where ``phi`` is 0, for block planes ``z0..z1-1``.

    The block has ``ext`` voxels; its voxel ``idx`` is ``phi[poff + idx]``, ``blurred[boff +
    idx]`` and ``out[ooff + idx]``. Whole arrays with offsets, not block views: their rows stay
    contiguous, so the loops vectorise.
    """
    tiny = np.float32(1e-12)
    one = np.float32(1.0)
    for k in range(z0, z1):
        for j in range(ext[1]):
            prow = phi[k + poff[0], j + poff[1], poff[2] :]
            brow = blurred[k + boff[0], j + boff[1], boff[2] :]
            orow = out[k + ooff[0], j + ooff[1], ooff[2] :]
            for i in range(ext[2]):
                p = prow[i]
                orow[i] = p / max(brow[i], tiny) if p > 0 else one


@_rl_jit
def rl_update(  # noqa: PLR0917 (Numba: no keyword-only arguments)
    psi: ArrayF32,
    poff: tuple[int, int, int],
    ext: tuple[int, int, int],
    u: ArrayF32,
    uoff: tuple[int, int, int],
    w: ArrayF32,
    woff: tuple[int, int, int],
    lam: float,
    top: float,
    floor: float,
    z0: int,
    z1: int,
) -> None:
    """``psi <- psi + w (new - psi)`` in place, for block planes ``z0..z1-1``.

    Offsets as in :func:`rl_ratio`. ``new = psi * u``; if ``lam > 0``, ``(sqrt(1 + 2 lam n /
    top) - 1) / lam * top`` with ``n = max(new, 0)``, computed as ``2 n / (1 + sqrt(1 + 2 lam
    n / top))`` (the same value without the cancellation of ``sqrt(...) - 1`` in float32);
    then ``max(new, floor)``, and ``floor`` where not finite.
    """
    two_lam = np.float32(2.0 * lam)
    top32, floor32 = np.float32(top), np.float32(floor)
    one, zero = np.float32(1.0), np.float32(0.0)
    for k in range(z0, z1):
        for j in range(ext[1]):
            prow = psi[k + poff[0], j + poff[1], poff[2] :]
            wrow = w[k + woff[0], j + woff[1], woff[2] :]
            urow = u[k + uoff[0], j + uoff[1], uoff[2] :]
            for i in range(ext[2]):
                p = prow[i]
                new = p * urow[i]
                if lam > 0:
                    n = max(new, zero)
                    new = np.float32(2.0) * n / (one + np.sqrt(one + two_lam * n / top32))
                new = max(new, floor32) if np.isfinite(new) else floor32
                prow[i] = p + wrow[i] * (new - p)


@_rl_jit
def reflect_pad(
    buf: ArrayF32,
    half: tuple[int, int, int],
    shape: tuple[int, int, int],
    z0: int,
    z1: int,
) -> None:
    """Fill the borders of ``buf[half : half + shape]`` as ``np.pad`` 'reflect'.

    Only padded planes ``z0..z1-1`` (of ``0 .. shape[0] + 2 half[0]``); needs ``half < shape``.
    Each padded row is its reflected source row's copy (rows of the border planes and rows)
    or only gets its two reflected ends (rows of the volume); planes of different calls share
    nothing, so slabs run in threads.
    """
    (h0, h1, h2), (n0, n1, n2) = half, shape
    for pz in range(z0, z1):
        sz = abs(pz - h0)  # reflect: index -g -> g, n - 1 + g -> n - 1 - g
        sz = h0 + (sz if sz < n0 else 2 * (n0 - 1) - sz)
        for py in range(n1 + 2 * h1):
            sy = abs(py - h1)
            sy = h1 + (sy if sy < n1 else 2 * (n1 - 1) - sy)
            dst = buf[pz, py]
            src = buf[sz, sy]
            if sz != pz or sy != py:
                for x in range(h2, h2 + n2):
                    dst[x] = src[x]
            for g in range(1, h2 + 1):
                dst[h2 - g] = src[h2 + g]
                dst[h2 + n2 - 1 + g] = src[h2 + n2 - 1 - g]
