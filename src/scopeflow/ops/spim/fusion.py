"""Weighted-average fusion of registered views, block by block.

Every output voxel ``o`` (on a regular grid in world coordinates: ``origin + spacing * index``) is

``F(o) = sum_v w_v(o) I_v(T_v^-1 o) / sum_v w_v(o)``

where ``I_v`` is view ``v`` sampled with linear interpolation at the view-pixel position of
``o`` and ``w_v`` the product of

* **cosine blending** [1]_: per axis, 0 within ``border`` pixels of the view's edge, rising as a
  half cosine over the next ``blending_range`` pixels, 1 inside; so seams between views fade
  instead of stepping;
* optionally **content-based weights** [2]_: ``G_s2 * (I - G_s1 * I)^2`` (local variance of the
  high-pass image, sigmas 20 and 40 px), which favour the sharpest view where views overlap.
  They are computed once per view at reduced resolution (``content_downsample``) and sampled
  like the image; not normalised per view (that would make every view equally "sharp"), but
  floored at ``1e-3`` of the view's largest weight so that a blurred view still fills regions
  no other view sees.

The output is computed per block (:func:`fuse_block`), so memory stays bounded whatever the
volume size; :func:`fuse` tiles a bounding box into blocks, ``threads`` of them at once. Per view
and block, one compiled loop (Numba, :mod:`scopeflow.ops.spim._kernels`) maps each output voxel
to its view pixel, computes its weight and, where that is not 0, samples the view (linear
interpolation, edge values repeated: ``scipy.ndimage`` ``order=1, mode='nearest'``) and adds to
the block's weighted sum; no coordinate arrays are stored. Weights are float32 (as are the
output and the sums), coordinates float64.

References
----------
.. [1] Preibisch S, Saalfeld S, Rohlfing T, Tomancak P (2009) "Bead-based mosaicing of single
   plane illumination microscopy images using geometric local descriptor matching", Proc. SPIE
   7259. (cosine blending, as in the multiview-reconstruction plugins)
.. [2] Preibisch S, Rohlfing T, Hasak MP, Tomancak P (2008) "Mosaicing of single plane
   illumination microscopy images using groupwise registration and fast content-based image
   fusion", Proc. SPIE 6914: 69140E. :DOI:`10.1117/12.770893`
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from scopeflow.core import affine as _affine
from scopeflow.core.errors import ConfigError
from scopeflow.ops.spim._arrays import block_mean

__all__ = [
    "FusionGrid",
    "content_weights",
    "extract_psf",
    "fuse",
    "fuse_block",
    "grid_blocks",
    "psf_to_grid",
    "resample_to_grid",
    "union_bounds",
    "view_bounds",
]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
_NO_CONTENT = np.ones((1, 1, 1), dtype=np.float32)  # the kernel's content array when there is none


@dataclass(frozen=True)
class FusionGrid:
    """Output grid: world ``(x, y, z)`` of voxel ``[0, 0, 0]``, spacing, and ``(z, y, x)`` shape."""

    origin: tuple[float, float, float]
    spacing: float
    shape: tuple[int, int, int]

    @classmethod
    def from_bounds(cls, lo_xyz: ArrayLike, hi_xyz: ArrayLike, spacing: float = 1.0) -> FusionGrid:
        """The grid covering the world box ``lo``..``hi`` (inclusive) at ``spacing``."""
        lo = np.asarray(lo_xyz, dtype=np.float64)
        hi = np.asarray(hi_xyz, dtype=np.float64)
        n = np.floor((hi - lo) / spacing).astype(int) + 1
        if (n < 1).any():
            raise ConfigError(
                "fusion", [("bounding_box", f"empty box {lo.tolist()}..{hi.tolist()}")]
            )
        return cls((lo[0], lo[1], lo[2]), float(spacing), (int(n[2]), int(n[1]), int(n[0])))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (a completion record's)."""
        return {"origin": list(self.origin), "spacing": self.spacing, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FusionGrid:
        """The grid of :meth:`to_dict`."""
        o, n = d["origin"], d["shape"]
        return cls((o[0], o[1], o[2]), float(d["spacing"]), (int(n[0]), int(n[1]), int(n[2])))

    def index_to_world(self) -> F64:
        """``3 x 4`` affine from output index ``(x, y, z)`` to world ``(x, y, z)``."""
        m = np.zeros((3, 4))
        m[:, :3] = np.eye(3) * self.spacing
        m[:, 3] = self.origin
        return m


def view_bounds(shape_zyx: Sequence[int], view_to_world: ArrayLike) -> tuple[F64, F64]:
    """World bounding box ``(lo, hi)`` (x, y, z) of a view's voxel centres."""
    z, y, x = (int(s) - 1 for s in shape_zyx)
    corners = np.array([[i, j, k] for i in (0, x) for j in (0, y) for k in (0, z)], float)
    w = _affine.apply(view_to_world, corners)
    return w.min(axis=0), w.max(axis=0)


def union_bounds(
    shapes_zyx: Sequence[Sequence[int]], view_to_world: Sequence[ArrayLike]
) -> tuple[F64, F64]:
    """World box ``(lo, hi)`` (x, y, z) covering every view (see :func:`view_bounds`)."""
    boxes = [view_bounds(s, m) for s, m in zip(shapes_zyx, view_to_world, strict=True)]
    lo: F64 = np.min([b[0] for b in boxes], axis=0)
    hi: F64 = np.max([b[1] for b in boxes], axis=0)
    return lo, hi


def content_weights(
    volume: ArrayLike,
    *,
    sigma1: float = 20.0,
    sigma2: float = 40.0,
    downsample: int = 4,
    anisotropy: float = 1.0,
) -> F32:
    """Content-based weights of one view at ``1/downsample`` resolution (≥ 1e-3 of their max).

    Parameters
    ----------
    volume : (Z, Y, X) array_like
        The view.
    sigma1, sigma2 : float
        Sigmas (full-resolution xy pixels) of the high-pass and of the averaging of its square.
    downsample : int
        Block-averaging factor in x and y (z by ``max(1, downsample // anisotropy)``) before
        filtering; the weights are smooth, so little is lost and the filters run ~``d^3``
        times faster.
    anisotropy : float
        z spacing over xy spacing of the view.

    Returns
    -------
    numpy.ndarray
        ``(Z', Y', X')`` float32 weights; voxel ``i`` covers full-resolution voxels
        ``i * factor .. (i + 1) * factor - 1`` (``factor`` per axis: see :func:`_factors`).
    """
    vol = np.asarray(volume, dtype=np.float32)
    fz, fxy = _factors(downsample, anisotropy)
    small = block_mean(vol, fz, fxy, partial=True)
    s1 = (sigma1 / (anisotropy * fz), sigma1 / fxy, sigma1 / fxy)
    s2 = (sigma2 / (anisotropy * fz), sigma2 / fxy, sigma2 / fxy)
    high = small - ndimage.gaussian_filter(small, s1, mode="reflect")
    w = ndimage.gaussian_filter(high * high, s2, mode="reflect")
    top = float(w.max())
    out: F32 = w.astype(np.float32)
    np.maximum(out, np.float32(1e-3 * top if top > 0 else 1.0), out=out)
    return out


def _factors(downsample: int, anisotropy: float) -> tuple[int, int]:
    fxy = max(1, int(downsample))
    return max(1, round(fxy / max(anisotropy, 1e-9))), fxy


def _sample(volume: NDArray[np.generic], coords_zyx: F64) -> F32:
    out: F32 = ndimage.map_coordinates(
        volume, coords_zyx, order=1, mode="nearest", output=np.float32, prefilter=False
    )
    return out


def fuse_block(
    views: Sequence[NDArray[np.generic]],
    view_to_world: Sequence[ArrayLike],
    grid: FusionGrid,
    block: tuple[slice, slice, slice],
    *,
    border: float = 0.0,
    blending_range: float = 40.0,
    content: Sequence[F32] | None = None,
    content_factor: tuple[int, int] | None = None,
) -> F32:
    """Fuse one block ``(z, y, x)`` slices of the output grid (float32).

    Parameters
    ----------
    views : sequence of (Z, Y, X) arrays
        The views (any real dtype; NumPy arrays or array-likes sliced into memory).
    view_to_world : sequence of (3, 4) array_like
        Each view's pixel → world affine (its registered transforms composed).
    grid : FusionGrid
        The output grid.
    block : tuple of slices
        Part of ``grid`` to compute.
    border, blending_range : float
        Cosine blending (pixels of the view).
    content : sequence of arrays, optional
        Content-based weights per view (:func:`content_weights`).
    content_factor : (int, int), optional
        ``(fz, fxy)`` downsampling of the ``content`` arrays.

    Returns
    -------
    numpy.ndarray
        The block's ``(z, y, x)`` float32 values (0 where no view has weight).
    """
    shape = _block_shape(block)
    total = np.zeros(shape, dtype=np.float32)
    wsum = np.zeros(shape, dtype=np.float32)
    for v, (vol, a) in enumerate(zip(views, view_to_world, strict=True)):
        _view_block(
            _kernel_view(vol),
            a,
            grid,
            block,
            (total, wsum, (0, 0, 0)),
            border=border,
            blending_range=blending_range,
            content=None if content is None else content[v],
            content_factor=content_factor,
            accumulate=True,
        )
    np.divide(total, wsum, out=total, where=wsum > 0)  # total is 0 where wsum is
    return total


def _block_shape(block: tuple[slice, slice, slice]) -> tuple[int, int, int]:
    return (
        block[0].stop - block[0].start,
        block[1].stop - block[1].start,
        block[2].stop - block[2].start,
    )


def _kernel_view(vol: ArrayLike) -> NDArray[np.generic]:
    """A view as the kernel takes it: C-contiguous uint8, uint16 or float32 (else float32)."""
    from scopeflow.ops.spim._kernels import KERNEL_DTYPES  # Numba is imported when needed

    data = np.asarray(vol)
    if data.dtype not in KERNEL_DTYPES:
        data = data.astype(np.float32)
    return np.ascontiguousarray(data)


def _block_map(
    view_to_world: ArrayLike, grid: FusionGrid, block: tuple[slice, slice, slice]
) -> tuple[F64, F64]:
    """``(mat, off)``: block index ``(z, y, x)`` → view pixel ``(z, y, x) = mat @ idx + off``."""
    start_xyz = np.array([block[2].start, block[1].start, block[0].start], dtype=np.float64)
    m = _affine.compose(_affine.invert(view_to_world), grid.index_to_world())
    mat = np.ascontiguousarray(m[::-1, :3][:, ::-1], dtype=np.float64)
    off = np.ascontiguousarray((m[:, :3] @ start_xyz + m[:, 3])[::-1], dtype=np.float64)
    return mat, off


def _sees(mat: F64, off: F64, shape: tuple[int, int, int], vshape: tuple[int, ...]) -> bool:
    """Whether the block's view coordinates overlap the view's box on every axis."""
    corners = np.array(
        [
            [k, j, i]
            for k in (0, shape[0] - 1)
            for j in (0, shape[1] - 1)
            for i in (0, shape[2] - 1)
        ],
        dtype=np.float64,
    )
    c = corners @ mat.T + off
    return bool(((c.max(axis=0) >= 0) & (c.min(axis=0) <= np.asarray(vshape) - 1.0)).all())


def _view_block(
    data: NDArray[np.generic],
    view_to_world: ArrayLike,
    grid: FusionGrid,
    block: tuple[slice, slice, slice],
    out: tuple[F32, F32, tuple[int, int, int]],
    *,
    border: float,
    blending_range: float,
    content: F32 | None = None,
    content_factor: tuple[int, int] | None = None,
    accumulate: bool,
) -> None:
    """One view over an output block, by :func:`._kernels.sample_view`.

    ``out``: value and weight arrays and the index in them of the block's first voxel;
    ``accumulate``: add ``w * value`` and ``w`` to them, else write value and weight (voxels of
    weight 0 are left as they are).
    """
    from scopeflow.ops.spim._kernels import sample_view

    shape = _block_shape(block)
    mat, off = _block_map(view_to_world, grid, block)
    if not _sees(mat, off, shape, data.shape):
        return
    cvol, cscale = _NO_CONTENT, np.ones(3)
    if content is not None and content_factor is not None:
        cvol = np.ascontiguousarray(content, dtype=np.float32)
        cscale = np.array([content_factor[0], content_factor[1], content_factor[1]], np.float64)
    values, weights, start = out
    sample_view(
        data,
        mat,
        off,
        shape,
        float(border),
        float(blending_range),
        cvol,
        cscale,
        cvol is not _NO_CONTENT,
        values,
        weights,
        start,
        accumulate,
    )


def grid_blocks(shape_zyx: Sequence[int], block: int = 64) -> Iterator[tuple[slice, slice, slice]]:
    """Blocks of at most ``block`` voxels per side covering ``shape_zyx``."""
    z, y, x = shape_zyx
    for z0 in range(0, z, block):
        for y0 in range(0, y, block):
            for x0 in range(0, x, block):
                yield (
                    slice(z0, min(z, z0 + block)),
                    slice(y0, min(y, y0 + block)),
                    slice(x0, min(x, x0 + block)),
                )


def fuse(
    views: Sequence[NDArray[np.generic]],
    view_to_world: Sequence[ArrayLike],
    grid: FusionGrid,
    *,
    border: float = 0.0,
    blending_range: float = 40.0,
    content_based: bool = False,
    sigma1: float = 20.0,
    sigma2: float = 40.0,
    content_downsample: int = 4,
    anisotropy: float = 1.0,
    block: int = 64,
    dtype: str = "float32",
    threads: int = 1,
) -> NDArray[np.generic]:
    """Fuse whole views onto ``grid`` (see the module docstring), block by block.

    Parameters
    ----------
    views, view_to_world, grid, border, blending_range
        See :func:`fuse_block`.
    content_based : bool
        Multiply the blending weights by content-based weights.
    sigma1, sigma2, content_downsample, anisotropy
        Of :func:`content_weights`.
    block : int
        Output block size (voxels per side).
    dtype : {'float32', 'uint16'}
        Output type (``uint16``: rounded and clipped).
    threads : int
        Blocks fused at once (the kernels release the GIL); 1 inside a Dask worker whose cores
        are already used by the other units.

    Returns
    -------
    numpy.ndarray
        The fused ``grid.shape`` volume.
    """
    if dtype not in ("float32", "uint16"):
        raise ConfigError("fusion", [("pixel_type", f"expected float32 or uint16, got {dtype!r}")])
    views = [_kernel_view(v) for v in views]  # once, not per block
    content = None
    factor = None
    if content_based:
        content = [
            content_weights(
                v,
                sigma1=sigma1,
                sigma2=sigma2,
                downsample=content_downsample,
                anisotropy=anisotropy,
            )
            for v in views
        ]
        factor = _factors(content_downsample, anisotropy)
    out = np.zeros(grid.shape, dtype=np.float32 if dtype == "float32" else np.uint16)

    def one(sl: tuple[slice, slice, slice]) -> None:
        part = fuse_block(
            views,
            view_to_world,
            grid,
            sl,
            border=border,
            blending_range=blending_range,
            content=content,
            content_factor=factor,
        )
        out[sl] = np.clip(np.rint(part), 0, 65535) if dtype == "uint16" else part

    blocks = list(grid_blocks(grid.shape, block))
    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, blocks))
    else:
        for sl in blocks:
            one(sl)
    return out


def resample_to_grid(
    volume: NDArray[np.generic],
    view_to_world: ArrayLike,
    grid: FusionGrid,
    *,
    border: float = 0.0,
    blending_range: float = 40.0,
    block: int = 64,
) -> tuple[F32, F32]:
    """One view sampled on the output grid (linear, 0 where it has no data), and its weights.

    What multi-view deconvolution needs per view; the same sampling as :func:`fuse`.
    """
    values = np.zeros(grid.shape, dtype=np.float32)  # 0 = "no data here" for deconvolution
    weights = np.zeros(grid.shape, dtype=np.float32)
    data = _kernel_view(volume)
    for sl in grid_blocks(grid.shape, block):
        _view_block(
            data,
            view_to_world,
            grid,
            sl,
            (values, weights, (sl[0].start, sl[1].start, sl[2].start)),
            border=border,
            blending_range=blending_range,
            accumulate=False,
        )
    return values, weights


def _psf_box(spacing: float, size_xyz: tuple[int, int, int]) -> F64:
    """World offsets ``(3, z, y, x)`` (x, y, z µm) of a PSF box of odd ``size_xyz`` voxels."""
    if any(s % 2 == 0 for s in size_xyz):
        raise ConfigError("deconvolution", [("psf_size", f"sizes must be odd, got {size_xyz}")])
    half = np.array(size_xyz[::-1]) // 2  # z, y, x
    offs = np.meshgrid(*[np.arange(-h, h + 1) * spacing for h in half], indexing="ij")
    box: F64 = np.stack([offs[2], offs[1], offs[0]])
    return box


def extract_psf(
    volume: NDArray[np.generic],
    view_to_world: ArrayLike,
    beads_world: ArrayLike,
    spacing: float,
    size_xyz: tuple[int, int, int] = (19, 19, 25),
) -> F32:
    """The view's average bead image in the output grid's orientation (a PSF for deconvolution).

    Around each bead's world position, a box of ``size_xyz`` voxels of ``spacing`` µm (odd
    sizes) is sampled from the view (linear interpolation), its minimum subtracted; boxes that
    leave the view are skipped; the mean is normalised to sum 1.

    Raises
    ------
    ConfigError
        Even sizes, or no bead whose box lies inside the view.
    """
    box = _psf_box(spacing, size_xyz)
    vol = np.asarray(volume)
    inv = _affine.invert(view_to_world)
    total = np.zeros(box.shape[1:], dtype=np.float64)
    used = 0
    upper = np.array(vol.shape[::-1]) - 1.0
    for b in np.asarray(beads_world, dtype=np.float64).reshape(-1, 3):
        world = box + b[:, None, None, None]
        pix = np.tensordot(inv[:, :3], world, axes=1) + inv[:, 3, None, None, None]
        if (pix.reshape(3, -1).min(axis=1) < 0).any() or (
            pix.reshape(3, -1).max(axis=1) > upper
        ).any():
            continue
        crop = _sample(vol, pix[::-1].reshape(3, -1)).reshape(total.shape).astype(np.float64)
        crop -= crop.min()
        if crop.sum() > 0:
            total += crop / crop.sum()
            used += 1
    if not used:
        raise ConfigError("deconvolution", [("psf", "no bead lies far enough inside the view")])
    out: F32 = (total / total.sum()).astype(np.float32)
    return out


def psf_to_grid(
    psf_zyx: ArrayLike,
    view_to_world: ArrayLike,
    spacing: float,
    size_xyz: tuple[int, int, int] = (19, 19, 25),
) -> F32:
    """A PSF given in a view's pixel frame, resampled into the output grid's orientation.

    The PSF's centre voxel is the view pixel the bead sits on; only the linear part of
    ``view_to_world`` matters (rotation, scaling, shear). Linear interpolation; normalised to
    sum 1.

    Raises
    ------
    ConfigError
        Even output sizes, or a PSF that is not 3-D with a positive sum.
    """
    psf = np.asarray(psf_zyx, dtype=np.float64)
    if psf.ndim != 3 or not psf.sum() > 0:
        raise ConfigError("deconvolution", [("psf_file", f"expected a 3-D PSF, got {psf.shape}")])
    box = _psf_box(spacing, size_xyz)
    a = np.asarray(view_to_world, dtype=np.float64)
    pix = np.tensordot(np.linalg.inv(a[:, :3]), box, axes=1)  # view pixel offsets (x, y, z)
    centre = (np.array(psf.shape[::-1], dtype=np.float64) - 1.0) / 2.0
    coords = (pix + centre[:, None, None, None])[::-1].reshape(3, -1)
    out = ndimage.map_coordinates(psf, coords, order=1, mode="constant", cval=0.0)
    out = out.reshape(box.shape[1:])
    if not out.sum() > 0:
        raise ConfigError("deconvolution", [("psf_file", "the PSF falls outside the box")])
    result: F32 = (out / out.sum()).astype(np.float32)
    return result
