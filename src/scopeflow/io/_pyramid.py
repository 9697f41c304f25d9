"""Multi-resolution pyramids in the BigDataViewer convention, proposed as BigDataViewer does.

A pyramid is a list of *levels*. Level ``l`` has integer downsampling ``resolutions[l]`` relative
to the full-resolution image and is stored in blocks (HDF5 chunks) of ``subdivisions[l]`` voxels.
Both are given in ``(x, y, z)`` order, as BigDataViewer writes them into ``s{setup:02d}/...``.

:func:`propose_mipmaps` follows ``bdv.export.ProposeMipmaps`` of bigdataviewer-core:

1. Normalise the voxel size so that its smallest entry is 1.
2. Each level's block is ``32 x 32 x 4`` (the thin side along the coarsest axis) when the
   coarsest relative voxel size ``v`` satisfies ``4 v / 32 > 1 / v`` (``v > 2.83``), else
   ``16 x 16 x 16`` -- 4096 voxels either way.
3. Stop when the largest dimension of the level (``size // factor``) is at most 256. Otherwise
   double the factor of every axis whose relative voxel size is at most 2 (and double that voxel
   size), renormalise and add the next level.

Level shapes follow ``bdv.export.ExportScalePyramid``: ``max(size // factor, 1)`` per axis (the
remainder is dropped; an axis shorter than its factor is border-extended to one voxel), and each
output voxel is the mean of its ``factor`` block.

:func:`plan_passes` and :func:`block_shape` plan how a writer computes the levels block by block:
blocks of the source whose every level covers whole chunks, so no chunk is written twice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

XYZ = tuple[int, int, int]

#: Largest source block unit (bytes) of one writing pass (see :func:`plan_passes`).
MAX_UNIT_BYTES = 256 * 2**20
#: Largest slab of full source planes (bytes) one writing pass may need (see :func:`plan_passes`).
MAX_SLAB_BYTES = 2**30
#: Largest dimension (voxels) of the coarsest proposed level.
MAX_COARSEST_SIZE = 256
_BLOCK_ISOTROPIC: XYZ = (16, 16, 16)
_BLOCK_THIN: tuple[XYZ, XYZ, XYZ] = ((4, 32, 32), (32, 4, 32), (32, 32, 4))


@dataclass(frozen=True)
class Pyramid:
    """Downsampling factors and block sizes of every level, ``(x, y, z)`` order.

    Attributes
    ----------
    resolutions
        Integer downsampling factor of each level relative to level 0; level 0 is ``(1, 1, 1)``.
    subdivisions
        Block (HDF5 chunk) size of each level, voxels.
    """

    resolutions: tuple[XYZ, ...]
    subdivisions: tuple[XYZ, ...]

    def __post_init__(self) -> None:
        res = tuple(_xyz(r, "resolution") for r in self.resolutions)
        sub = tuple(_xyz(s, "subdivision") for s in self.subdivisions)
        if not res or len(res) != len(sub):
            raise ValueError("a pyramid needs one resolution and one subdivision per level (>= 1)")
        if res[0] != (1, 1, 1):
            raise ValueError(f"level 0 must have resolution (1, 1, 1), got {res[0]}")
        object.__setattr__(self, "resolutions", res)
        object.__setattr__(self, "subdivisions", sub)

    @classmethod
    def from_arrays(cls, resolutions: Any, subdivisions: Any) -> Pyramid:
        """Build from ``(levels, 3)`` arrays as stored in BDV HDF5 (any numeric dtype)."""
        res = np.asarray(resolutions, dtype=np.float64).reshape(-1, 3)
        sub = np.asarray(subdivisions, dtype=np.float64).reshape(-1, 3)
        if not (np.all(res == np.round(res)) and np.all(sub == np.round(sub))):
            raise ValueError("resolutions and subdivisions must be integers")
        return cls(
            tuple(_xyz(r, "resolution") for r in res.astype(np.int64).tolist()),
            tuple(_xyz(s, "subdivision") for s in sub.astype(np.int64).tolist()),
        )

    @property
    def levels(self) -> int:
        """Number of levels."""
        return len(self.resolutions)

    def level_shape_xyz(self, size_xyz: Sequence[int], level: int) -> XYZ:
        """Size ``(x, y, z)`` of ``level`` for a full-resolution image of ``size_xyz``."""
        return level_size(size_xyz, self.resolutions[level])

    def chunks_zyx(self, size_xyz: Sequence[int], level: int) -> XYZ:
        """HDF5 chunk shape ``(z, y, x)`` of ``level``: the subdivision, clipped to the level."""
        shape = self.level_shape_xyz(size_xyz, level)
        sub = self.subdivisions[level]
        return (min(sub[2], shape[2]), min(sub[1], shape[1]), min(sub[0], shape[0]))


def _xyz(values: Sequence[Any], what: str) -> XYZ:
    vals = tuple(int(v) for v in values)
    if len(vals) != 3 or min(vals) < 1:
        raise ValueError(f"a {what} needs 3 positive integers (x, y, z), got {tuple(values)}")
    return (vals[0], vals[1], vals[2])


def level_size(size_xyz: Sequence[int], factor_xyz: Sequence[int]) -> XYZ:
    """Size of a level downsampled by ``factor_xyz``: ``max(size // factor, 1)`` per axis."""
    s = [max(int(n) // int(f), 1) for n, f in zip(size_xyz, factor_xyz, strict=True)]
    return (s[0], s[1], s[2])


def _normalise(scale: list[float]) -> None:
    smallest = min(scale)
    for d in range(3):
        scale[d] /= smallest


def propose_mipmaps(
    size_xyz: Sequence[int], voxel_size_xyz: Sequence[float] = (1.0, 1.0, 1.0)
) -> Pyramid:
    """Propose pyramid levels and block sizes for an image, as BigDataViewer does.

    Parameters
    ----------
    size_xyz
        Full-resolution image size ``(x, y, z)`` in voxels.
    voxel_size_xyz
        Physical voxel size ``(x, y, z)`` (any unit; only the ratios matter).

    Returns
    -------
    Pyramid
        The proposed levels (see the module docstring for the rule).

    Examples
    --------
    >>> propose_mipmaps((512, 512, 512)).resolutions
    ((1, 1, 1), (2, 2, 2))
    >>> propose_mipmaps((1024, 1024, 200), (0.4, 0.4, 1.2)).subdivisions
    ((32, 32, 4), (16, 16, 16), (16, 16, 16))
    """
    size = [int(n) for n in size_xyz]
    scale = [float(v) for v in voxel_size_xyz]
    if len(size) != 3 or len(scale) != 3 or min(size) < 1 or min(scale) <= 0:
        raise ValueError(f"need a positive size and voxel size (x, y, z): {size}, {scale}")
    _normalise(scale)
    res = [1, 1, 1]
    resolutions: list[XYZ] = []
    subdivisions: list[XYZ] = []
    while True:
        resolutions.append((res[0], res[1], res[2]))
        vmax = max(scale)
        dmax = scale.index(vmax)  # first axis of the largest voxel size (Java's strict >)
        thin = 4 * vmax / 32 > 1 / vmax
        subdivisions.append(_BLOCK_THIN[dmax] if thin else _BLOCK_ISOTROPIC)
        if max(n // r for n, r in zip(size, res, strict=True)) <= MAX_COARSEST_SIZE:
            break
        for d in range(3):
            if scale[d] <= 2.0:
                res[d] *= 2
                scale[d] *= 2
        _normalise(scale)
    return Pyramid(tuple(resolutions), tuple(subdivisions))


def single_level(size_xyz: Sequence[int], voxel_size_xyz: Sequence[float] = (1, 1, 1)) -> Pyramid:
    """A pyramid with only the full-resolution level, blocked as :func:`propose_mipmaps` would."""
    proposed = propose_mipmaps(size_xyz, voxel_size_xyz)
    return Pyramid((proposed.resolutions[0],), (proposed.subdivisions[0],))


def block_mean(
    arr: NDArray[Any], factor_zyx: Sequence[int], out_shape: Sequence[int] | None = None
) -> NDArray[np.float64]:
    """Mean over non-overlapping ``factor_zyx`` blocks of a ``(z, y, x)`` array, as float64.

    The remainder of an axis that is not a multiple of its factor is dropped; an axis shorter than
    its factor is extended by repeating its last voxel (BigDataViewer's border extension), so it
    gives one output voxel. ``out_shape`` crops the result (e.g. to the part of a global level
    that a block of a larger volume covers).
    """
    a = np.asarray(arr)
    factors = [int(f) for f in factor_zyx]
    pad = [(0, max(f - n, 0)) for n, f in zip(a.shape, factors, strict=True)]
    if any(p[1] for p in pad):
        a = np.pad(a, pad, mode="edge")
    # sum strided slices axis by axis (z first: it shrinks the data before the strided x axis);
    # integers are summed exactly (int32 while that cannot overflow, else int64), floats in float64
    acc: type = np.float64
    if a.dtype.kind in "iub":
        small = a.dtype.itemsize <= 2 and math.prod(factors) <= 2**15
        acc = np.int32 if small else np.int64
    for axis, f in enumerate(factors):
        if f == 1:
            continue
        n = a.shape[axis] // f
        parts = [a[(slice(None),) * axis + (slice(i, n * f, f),)] for i in range(f)]
        total: NDArray[Any] = parts[0].astype(acc)
        for part in parts[1:]:
            total += part
        a = total
    out: NDArray[np.float64] = np.multiply(a, 1.0 / math.prod(factors), dtype=np.float64)
    if out_shape is not None:
        out = out[: out_shape[0], : out_shape[1], : out_shape[2]]
    return out


@dataclass(frozen=True)
class LevelPass:
    """Levels written from one source (level ``src`` of the pyramid), block by block."""

    src: int
    levels: tuple[int, ...]
    factors: tuple[XYZ, ...]  # per level, relative to src, (z, y, x)
    shapes: tuple[XYZ, ...]  # per level, whole level, (z, y, x)
    unit: XYZ  # smallest source block whose levels are whole chunks, (z, y, x)


def zyx(xyz: XYZ) -> XYZ:
    """Reverse an ``(x, y, z)`` triple to ``(z, y, x)`` (and back)."""
    return (xyz[2], xyz[1], xyz[0])


def plan_passes(
    pyr: Pyramid,
    size_xyz: XYZ,
    itemsize: int,
    max_unit_bytes: int | None = None,
    max_slab_bytes: int | None = None,
) -> list[LevelPass]:
    """Group levels into passes that a writer computes block by block from one source.

    A pass's blocks are multiples of its *unit*, the per-axis lcm of factor x chunk of its
    levels, so every level of a block is made of whole chunks. A level joins the pass while the
    unit stays under ``max_unit_bytes`` (default :data:`MAX_UNIT_BYTES`) and the slab of
    ``unit_z`` full source planes (what a plane-chunked source holds in memory) under
    ``max_slab_bytes`` (default :data:`MAX_SLAB_BYTES`). The first pass reads the volume; a
    later pass reads back the last level written (as BigDataViewer's "loopback"), or the volume
    again when factors are not multiples of it.
    """
    limit = MAX_UNIT_BYTES if max_unit_bytes is None else max_unit_bytes
    slab_limit = MAX_SLAB_BYTES if max_slab_bytes is None else max_slab_bytes
    passes: list[LevelPass] = []
    src, level = 0, 0
    while level < pyr.levels:
        unit: XYZ = (1, 1, 1)
        levels: list[int] = []
        factors: list[XYZ] = []
        base = zyx(pyr.resolutions[src])
        _, sy, sx = zyx(pyr.level_shape_xyz(size_xyz, src))
        for k in range(level, pyr.levels):
            res = zyx(pyr.resolutions[k])
            if any(r % b for r, b in zip(res, base, strict=True)):
                break
            rel = (res[0] // base[0], res[1] // base[1], res[2] // base[2])
            chunk = pyr.chunks_zyx(size_xyz, k)
            new = [math.lcm(u, r * c) for u, r, c in zip(unit, rel, chunk, strict=True)]
            big = math.prod(new) * itemsize > limit or new[0] * sy * sx * itemsize > slab_limit
            if levels and big:
                break
            unit = (new[0], new[1], new[2])
            levels.append(k)
            factors.append(rel)
        if not levels:  # `level` is no multiple of `src`: compute it from the volume
            src = 0
            continue
        shapes = tuple(zyx(pyr.level_shape_xyz(size_xyz, k)) for k in levels)
        passes.append(LevelPass(src, tuple(levels), tuple(factors), shapes, unit))
        src, level = levels[-1], levels[-1] + 1
    return passes


def block_shape(unit: XYZ, shape: Sequence[int], itemsize: int, target: int) -> XYZ:
    """Grow a (z, y, x) unit by whole multiples, x first then y then z, up to ``target`` bytes."""
    block = list(unit)
    for axis in (2, 1, 0):
        limit = -(-shape[axis] // unit[axis]) * unit[axis]
        while block[axis] < limit and math.prod(block) * itemsize * 2 <= target:
            block[axis] = min(block[axis] * 2, limit)
    return (block[0], block[1], block[2])
