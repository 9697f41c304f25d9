"""Multiscale pyramids for the OME-Zarr writer: level plan, chunking and lazy block means.

Level ``k + 1`` is the block mean of level ``k`` over 2 voxels along the axes being halved. An
odd trailing voxel is averaged with itself, so a level has ``ceil(n / 2)`` voxels along a halved
axis and no data is dropped. Levels are lazy Dask arrays chunked exactly as they are stored, so
one Dask block is one Zarr chunk and parallel writes never share a chunk.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import numpy.typing as npt
from dask.base import compute

from scopeflow.io._omezarr_chunks import ChunkWriter
from scopeflow.io._omezarr_meta import check_axes

LEVELS_PER_PASS = 2
"""Pyramid levels derived per pass over the data (see :func:`store_pyramid`)."""
CHUNK_BYTES = 4 * 2**20
"""Target size of a level-0 chunk of a 3-D image; 2-D images use 1024 x 1024 tiles."""


@dataclass(frozen=True)
class PyramidLayout:
    """Geometry of a multiscale image.

    Attributes
    ----------
    axes
        Lower-case axis letters (subsequence of ``"tczyx"``).
    dtype
        Pixel type.
    shapes
        Shape of every level.
    steps
        Per level, the factor (1 or 2) of each axis relative to the level above; all ones for
        level 0.
    chunks
        Level-0 chunk shape; coarser levels use the same, capped at their shape.
    """

    axes: str
    dtype: np.dtype[Any]
    shapes: list[tuple[int, ...]]
    steps: list[tuple[int, ...]]
    chunks: tuple[int, ...]

    @property
    def cumulative(self) -> list[tuple[int, ...]]:
        """Per level, the factor of each axis relative to level 0."""
        out = [tuple(1 for _ in self.axes)]
        for step in self.steps[1:]:
            out.append(tuple(a * b for a, b in zip(out[-1], step, strict=True)))
        return out

    def level_chunks(self, level: int) -> tuple[int, ...]:
        """Chunk shape of ``level``."""
        return tuple(min(c, s) for c, s in zip(self.chunks, self.shapes[level], strict=True))


def pyramid_steps(
    shape: Sequence[int],
    axes: str,
    voxel_size: Sequence[float],
    *,
    n_levels: int | None = None,
    max_top_size: int = 256,
) -> list[tuple[int, ...]]:
    """Propose pyramid levels: per level, the factor (1 or 2) of each axis from the level above.

    A level halves every space axis (longer than 1 voxel) whose voxel size is at most twice the
    finest one, so x and y are halved first and z joins once the image is near-isotropic (the
    rule BigDataViewer uses).

    Parameters
    ----------
    shape
        Level-0 shape, one entry per letter of ``axes``.
    axes
        Lower-case axis letters (subsequence of ``"tczyx"``).
    voxel_size
        Level-0 voxel size ``(x, y, z)``.
    n_levels
        Number of levels; ``None`` adds levels until the largest space axis is at most
        ``max_top_size`` voxels. Fewer are made when every space axis is down to one voxel.
    max_top_size
        Size at which the automatic pyramid stops.

    Returns
    -------
    list of tuple of int
        One tuple per level, ``steps[0]`` all ones.
    """
    size = {a: int(n) for a, n in zip(axes, shape, strict=True)}
    vs = {"x": float(voxel_size[0]), "y": float(voxel_size[1]), "z": float(voxel_size[2])}
    space = [a for a in axes if a in "zyx"]
    steps = [tuple(1 for _ in axes)]
    while len(steps) < (n_levels if n_levels is not None else 64):
        if n_levels is None and max(size[a] for a in space) <= max_top_size:
            break
        candidates = [a for a in space if size[a] > 1]
        if not candidates:
            break
        finest = min(vs[a] for a in candidates)
        halve = {a for a in candidates if vs[a] <= 2.0 * finest}
        for a in halve:
            size[a] = -(-size[a] // 2)
            vs[a] *= 2.0
        steps.append(tuple(2 if a in halve else 1 for a in axes))
    return steps


def default_chunks(shape: Sequence[int], axes: str, itemsize: int) -> tuple[int, ...]:
    """Level-0 chunks: 1 along t and c, 256 x 256 tiles (1024 x 1024 in 2-D), ~4 MiB deep."""
    tile = 256 if "z" in axes else 1024
    out = []
    for a, n in zip(axes, shape, strict=True):
        if a in "yx":
            out.append(min(n, tile))
        elif a == "z":
            depth = max(1, CHUNK_BYTES // (tile * tile * itemsize))
            out.append(min(n, 1 << (depth.bit_length() - 1)))
        else:
            out.append(1)
    return tuple(out)


def plan_layout(
    shape: Sequence[int],
    dtype: npt.DTypeLike,
    axes: str,
    voxel_size: Sequence[float],
    *,
    chunks: Sequence[int] | None,
    n_levels: int | None,
    max_top_size: int,
) -> PyramidLayout:
    """Validate the writer's arguments and plan the pyramid (see :func:`pyramid_steps`)."""
    axes = check_axes(axes, len(shape))
    dt = np.dtype(dtype)
    if chunks is None:
        chunks = default_chunks(shape, axes, dt.itemsize)
    if len(chunks) != len(axes) or any(c < 1 for c in chunks):
        raise ValueError(f"chunks {tuple(chunks)} must give a positive size for each of {axes!r}")
    if any(c != 1 for a, c in zip(axes, chunks, strict=True) if a in "tc"):
        raise ValueError("chunks along t and c must be 1 (parallel writers never share a chunk)")
    if n_levels is not None and n_levels < 1:
        raise ValueError(f"n_levels must be >= 1, got {n_levels}")
    steps = pyramid_steps(shape, axes, voxel_size, n_levels=n_levels, max_top_size=max_top_size)
    shapes = [tuple(int(n) for n in shape)]
    for step in steps[1:]:
        shapes.append(tuple(-(-n // f) for n, f in zip(shapes[-1], step, strict=True)))
    return PyramidLayout(axes, dt, shapes, steps, tuple(int(c) for c in chunks))


def layout_of_levels(
    axes: str, dtype: npt.DTypeLike, shapes: Sequence[tuple[int, ...]], chunks: Sequence[int]
) -> PyramidLayout:
    """The layout of existing levels, which must halve or keep each axis from level to level.

    Raises
    ------
    ValueError
        Two successive levels are not related by a factor of 1 or 2 on every axis.
    """
    steps = [tuple(1 for _ in axes)]
    for prev, cur in itertools.pairwise(shapes):
        step = tuple(1 if c == p else 2 for p, c in zip(prev, cur, strict=True))
        if any(-(-p // f) != c for p, c, f in zip(prev, cur, step, strict=True)):
            raise ValueError(f"levels {prev} -> {cur} are not a pyramid of factor 2")
        steps.append(step)
    return PyramidLayout(axes, np.dtype(dtype), list(shapes), steps, tuple(chunks))


def mean_block(block: npt.NDArray[Any], factors: tuple[int, ...]) -> npt.NDArray[Any]:
    """Block mean over 2 voxels along the axes where ``factors`` is 2 (odd ends padded).

    Integers are summed exactly in a wider integer type and rounded half up (8-byte integers
    in float64); floats are averaged in their own precision (at least float32).
    """
    x: Any = block.view(np.uint8) if block.dtype == np.bool_ else block
    kind, size = x.dtype.kind, x.dtype.itemsize
    acc: Any
    if kind in "ui" and size <= 4:
        acc = np.dtype(f"{'i' if kind == 'i' or size == 4 else 'u'}{8 if size == 4 else 4}")
    else:
        acc = np.dtype(np.float64 if size >= 8 else np.float32)
    n = 1
    for ax, f in enumerate(factors):
        if f != 2:
            continue
        if x.shape[ax] % 2:
            x = np.concatenate([x, x.take([-1], axis=ax)], axis=ax)
        even: list[Any] = [slice(None)] * x.ndim
        odd: list[Any] = [slice(None)] * x.ndim
        even[ax], odd[ax] = slice(0, None, 2), slice(1, None, 2)
        x = x[tuple(even)].astype(acc) + x[tuple(odd)]
        n *= 2
    if n == 1:
        return block
    if acc.kind == "f":
        x /= n
        if kind != "f":  # 8-byte integers: round half up, as the integer path does
            x += 0.5
            np.floor(x, out=x)
    else:
        x += n // 2
        x //= n
    out: npt.NDArray[Any] = x.astype(block.dtype, copy=False)
    return out


def pyramid(
    source: da.Array, layout: PyramidLayout, first: int = 0, last: int | None = None
) -> list[da.Array]:
    """Lazy levels ``first`` to ``last`` of ``layout``, each chunked as stored.

    Parameters
    ----------
    source
        Level ``first`` (any chunks; size-1 entries along t / c for a region of the image).
    layout
        The pyramid.
    first, last
        Range of levels to return, both included (``last`` defaults to the coarsest).

    Returns
    -------
    list of dask.array.Array
        Levels ``first .. last``; one Dask block is one Zarr chunk of the stored level.
    """
    last = len(layout.shapes) - 1 if last is None else last
    current = source.rechunk(layout.level_chunks(first))
    levels = [current]
    for k in range(first + 1, last + 1):
        step = layout.steps[k]
        # blockwise means equal the global one when every block but the last is even
        even = tuple(
            c + c % 2 if f == 2 and any(b % 2 for b in bs[:-1]) else c
            for c, f, bs in zip(layout.level_chunks(k - 1), step, current.chunks, strict=True)
        )
        if even != layout.level_chunks(k - 1):
            current = current.rechunk(even)
        chunks = tuple(
            tuple(-(-b // f) for b in bs) for bs, f in zip(current.chunks, step, strict=True)
        )
        current = current.map_blocks(mean_block, step, chunks=chunks, dtype=current.dtype)
        current = current.rechunk(layout.level_chunks(k))
        levels.append(current)
    return levels


def as_dask(data: Any, chunks: tuple[int, ...]) -> da.Array:
    """``data`` as a Dask array (NumPy data is split into ``chunks``)."""
    out: da.Array = data if isinstance(data, da.Array) else da.from_array(data, chunks=chunks)
    return out


def store_pyramid(
    source: da.Array,
    layout: PyramidLayout,
    targets: Sequence[Any],
    regions: Sequence[tuple[slice, ...]] | None,
    *,
    extra: Sequence[da.Array] = (),
    scheduler: str | None = None,
) -> tuple[Any, ...]:
    """Compute and store every level, :data:`LEVELS_PER_PASS` derived levels per pass.

    Blocks are written by :class:`~scopeflow.io._omezarr_chunks.ChunkWriter`. A pass derives
    its levels from the previous pass's coarsest level, read back from the store: a Dask graph
    spanning the whole pyramid would keep a whole slab of the image in memory (the coarsest
    chunk depends on all of it), a short one only a few chunks per thread. ``extra`` arrays
    (of ``source``) are computed in the first pass and returned.
    """
    n = len(layout.shapes)
    first, current, results = 0, source, ()
    while True:
        last = min(first + LEVELS_PER_PASS, n - 1)
        levels = pyramid(current, layout, first, last)
        todo = range(first, last + 1) if first == 0 else range(first + 1, last + 1)
        writers: list[Any] = [ChunkWriter(targets[k]) for k in todo]
        store = da.store(
            [levels[k - first] for k in todo],
            writers,
            regions=None if regions is None else [regions[k] for k in todo],
            lock=False,
            compute=False,
        )
        if first == 0:
            _, *results = compute(store, *extra, scheduler=scheduler)
        else:
            compute(store, scheduler=scheduler)
        if last == n - 1:
            return tuple(results)
        first = last
        stored = da.from_array(targets[last], chunks=targets[last].chunks, inline_array=True)
        current = stored if regions is None else stored[regions[last]]
