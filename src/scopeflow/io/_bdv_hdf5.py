"""Write BigDataViewer HDF5: one partition file per time point, and a master file linking them.

Layout (bigdataviewer-core ``bdv.img.hdf5.Util``), in every partition and in the master file:

* ``s{setup:02d}/resolutions`` float64 ``(levels, 3)`` and ``s{setup:02d}/subdivisions`` int32
  ``(levels, 3)``, both ``(x, y, z)``;
* ``t{tp:05d}/s{setup:02d}/{level}/cells``: the level, stored ``(z, y, x)``, HDF5-chunked by the
  level's subdivision (clipped to the level's shape), deflate-compressed (with HDF5's shuffle
  filter by default: a built-in filter every HDF5 reader decodes; it makes deflate about twice as
  fast on 16-bit images and the files about 25 % smaller).

Pixel types: ``uint16`` is stored as ``int16`` bit for bit with no ``dataType`` attribute, the
layout every BigDataViewer version reads. Other types (``uint8``, ``int8``, ``int16``, ``int32``,
``uint32``, ``int64``, ``uint64``, ``float32``, ``float64``) are stored as they are with a string
attribute ``dataType`` (``"uint8"``, ``"float32"`` …, the N5 names) on ``s{setup:02d}``, which is
what BigDataViewer's writer adds since its 2023 releases for non-``uint16`` data; older BDV reads
only ``uint16``.

Pyramid levels are block means (:func:`~scopeflow.io._pyramid.block_mean`, rounded half up for
integer types), computed from the previous level in float64, block by block from a Dask array:
memory stays bounded whatever the volume. Chunks are cut, shuffled and deflated by NumPy and zlib
in worker threads (both release the GIL) and written with ``write_direct_chunk``, so compression
runs on all cores while HDF5 writes.
"""

from __future__ import annotations

import itertools
import os
import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import h5py
import numpy as np
from numpy.typing import NDArray

from scopeflow.core import FormatError
from scopeflow.io._pyramid import (
    LevelPass,
    Pyramid,
    block_mean,
    block_shape,
    plan_passes,
    propose_mipmaps,
    zyx,
)
from scopeflow.io.spimdata import Partition

_deflate: Callable[[Any, int], bytes] = zlib.compress
DEFLATE_LIBRARY = "zlib"
"""Library that deflates chunks: ``"isal"`` (ISA-L, same zlib stream, about 3x faster at the
same ratio) when the ``isal`` package is installed, else the standard library's ``zlib``."""
try:
    from isal import isal_zlib as _isal  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    pass
else:  # pragma: no cover

    def _isal_deflate(data: Any, level: int) -> bytes:
        return bytes(_isal.compress(data, min(level, 3)))

    _deflate, DEFLATE_LIBRARY = _isal_deflate, "isal"

BLOCK_BYTES = 32 * 2**20
"""Target size of the blocks a partition is written in (memory per worker is a few times it)."""
_STORED_AS_IS = (
    "uint8",
    "int8",
    "int16",
    "uint32",
    "int32",
    "uint64",
    "int64",
    "float32",
    "float64",
)


def cells_path(timepoint: int, setup: int, level: int) -> str:
    """HDF5 path of a level's pixels: ``t{tp:05d}/s{setup:02d}/{level}/cells``."""
    return f"t{timepoint:05d}/s{setup:02d}/{level}/cells"


def setup_group(setup: int) -> str:
    """HDF5 group of a setup's pyramid description: ``s{setup:02d}``."""
    return f"s{setup:02d}"


def partition_filename(stem: str, timepoint: int) -> str:
    """File name of a time point's partition: ``{stem}-t{tp:05d}.h5``."""
    return f"{stem}-t{timepoint:05d}.h5"


def stored_dtype(dtype: Any) -> tuple[np.dtype[Any], str | None]:
    """HDF5 storage type and ``dataType`` attribute (``None``: none written) of a pixel type."""
    dt = np.dtype(dtype).newbyteorder("=")
    if dt == np.uint16:
        return np.dtype(np.int16), None
    if dt.name in _STORED_AS_IS:
        return dt, dt.name
    raise ValueError(f"BDV HDF5 cannot store pixel type {dt}")


@dataclass(frozen=True)
class PartitionInfo:
    """What :func:`write_bdv_partition` wrote.

    Attributes
    ----------
    path
        The partition file.
    timepoint
        Its time point.
    pyramids
        Setup id -> pyramid written.
    shapes
        Setup id -> full-resolution shape ``(z, y, x)``.
    dtypes
        Setup id -> pixel type of the data given (as a reader returns it).
    """

    path: Path
    timepoint: int
    pyramids: dict[int, Pyramid]
    shapes: dict[int, tuple[int, int, int]]
    dtypes: dict[int, np.dtype[Any]]

    @property
    def partition(self) -> Partition:
        """The :class:`~scopeflow.io.spimdata.Partition` describing this file."""
        return Partition(self.path, (self.timepoint,), tuple(sorted(self.pyramids)))


@dataclass(frozen=True)
class _Options:
    compression: str | None
    level: int
    shuffle: bool
    workers: int
    block_bytes: int


def _encode(data: NDArray[Any], chunks: Sequence[int], opts: _Options) -> list[bytes]:
    """The encoded HDF5 chunks of ``data`` (whole chunks), in C order of the chunk grid.

    One transposing copy cuts the chunks and, for the shuffle filter, also splits them into
    byte planes (what HDF5's shuffle does): ``(z, y, x, byte)`` -> ``(chunk, byte, voxel)``.
    """
    (cz, cy, cx), item = chunks, data.dtype.itemsize
    nz, ny, nx = data.shape[0] // cz, data.shape[1] // cy, data.shape[2] // cx
    if opts.compression is not None and opts.shuffle and item > 1:
        planes = data.view(np.uint8).reshape(nz, cz, ny, cy, nx, cx, item)
        tiles = np.ascontiguousarray(planes.transpose(0, 2, 4, 6, 1, 3, 5))
    else:
        tiles = np.ascontiguousarray(
            data.reshape(nz, cz, ny, cy, nx, cx).transpose(0, 2, 4, 1, 3, 5)
        )
    rows = tiles.reshape(nz * ny * nx, -1)
    if opts.compression is None:
        return [row.tobytes() for row in rows]
    return [_deflate(row, opts.level) for row in rows]


def _to_stored(values: NDArray[Any], dtype: np.dtype[Any], store: np.dtype[Any]) -> NDArray[Any]:
    if values.dtype != dtype:
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            values = np.clip(np.floor(values + 0.5), info.min, info.max)
        values = values.astype(dtype)
    return values.view(store)


@dataclass
class _SetupWriter:
    """Writes the pyramid of one view (time point, setup) into an open HDF5 file."""

    f: h5py.File
    tp: int
    setup: int
    dtype: np.dtype[Any]
    opts: _Options
    lock: threading.Lock = field(default_factory=threading.Lock)

    def write(self, arr: da.Array, pyr: Pyramid) -> None:
        store, type_name = stored_dtype(self.dtype)
        _write_pyramid_description(self.f, self.setup, pyr, type_name)
        size_xyz = (arr.shape[2], arr.shape[1], arr.shape[0])
        compressed = self.opts.compression is not None
        for level in range(pyr.levels):
            self.f.create_dataset(
                cells_path(self.tp, self.setup, level),
                shape=zyx(pyr.level_shape_xyz(size_xyz, level)),
                dtype=store,
                chunks=pyr.chunks_zyx(size_xyz, level),
                compression=self.opts.compression,
                compression_opts=self.opts.level if compressed else None,
                shuffle=self.opts.shuffle and compressed,
            )
        for step in plan_passes(pyr, size_xyz, self.dtype.itemsize):
            src = arr
            if step.src:
                stored = self.f[cells_path(self.tp, self.setup, step.src)]
                src = da.from_array(stored, chunks=stored.chunks, lock=True)
                src = src.map_blocks(lambda b: b.view(self.dtype), dtype=self.dtype)
            self._run(src, step)

    def _write_chunks(self, level: int, data: NDArray[Any], origin: Sequence[int]) -> None:
        """Write ``data`` (whole chunks from a chunk-aligned ``origin``) as direct chunk writes."""
        dset = self.f[cells_path(self.tp, self.setup, level)]
        cz, cy, cx = dset.chunks
        nz, ny, nx = (-(-n // c) for n, c in zip(data.shape, (cz, cy, cx), strict=True))
        pad = [
            (0, n * c - s) for n, c, s in zip((nz, ny, nx), dset.chunks, data.shape, strict=True)
        ]
        if any(p[1] for p in pad):
            data = np.pad(data, pad)
        encoded = _encode(np.ascontiguousarray(data), (cz, cy, cx), self.opts)
        offsets = itertools.product(
            range(origin[0], origin[0] + nz * cz, cz),
            range(origin[1], origin[1] + ny * cy, cy),
            range(origin[2], origin[2] + nx * cx, cx),
        )
        with self.lock:
            write = dset.id.write_direct_chunk
            for offset, chunk in zip(offsets, encoded, strict=True):
                write(offset, chunk)

    def _run(self, src: da.Array, step: LevelPass) -> None:
        store, _ = stored_dtype(self.dtype)
        src = src.rechunk(
            block_shape(step.unit, src.shape, self.dtype.itemsize, self.opts.block_bytes)
        )
        full = src.shape

        def process(block: NDArray[Any], block_info: dict[Any, Any] | None = None) -> NDArray[Any]:
            loc = block_info[0]["array-location"]  # type: ignore[index]
            start = [lo for lo, _ in loc]
            last = [hi == n for (_, hi), n in zip(loc, full, strict=True)]
            values: NDArray[Any] = np.asarray(block)
            prev = (1, 1, 1)
            for level, factor, shape in zip(step.levels, step.factors, step.shapes, strict=True):
                origin = [s // f for s, f in zip(start, factor, strict=True)]
                stop = [
                    n if end else (s + b) // f
                    for n, end, s, b, f in zip(shape, last, start, block.shape, factor, strict=True)
                ]
                expected = [b - a for a, b in zip(origin, stop, strict=True)]
                if min(expected) <= 0:
                    break
                if factor != (1, 1, 1):
                    rel = [a // b for a, b in zip(factor, prev, strict=True)]
                    values = block_mean(values, rel, expected)
                self._write_chunks(level, _to_stored(values, self.dtype, store), origin)
                prev = factor
            return np.zeros((1, 1, 1), np.int8)

        chunks = tuple((1,) * n for n in src.numblocks)
        tokens = da.map_blocks(process, src, chunks=chunks, meta=np.empty((0, 0, 0), np.int8))
        tokens.compute(scheduler="threads", num_workers=self.opts.workers)


def _as_dask(volume: Any) -> da.Array:
    arr = volume if isinstance(volume, da.Array) else da.from_array(np.asarray(volume), chunks=-1)
    if arr.ndim != 3:
        raise ValueError(f"a BDV view is a 3-D (z, y, x) volume, got shape {arr.shape}")
    stored_dtype(arr.dtype)  # fail early on a type BDV cannot store
    native = np.dtype(arr.dtype).newbyteorder("=")
    return arr if arr.dtype == native else arr.astype(native)


def write_bdv_partition(
    path: str | Path,
    timepoint: int,
    volumes: Mapping[int, Any],
    *,
    voxel_size: Mapping[int, Sequence[float]] | Sequence[float] | None = None,
    pyramid: Mapping[int, Pyramid] | Pyramid | None = None,
    compression: str | None = "gzip",
    compression_level: int = 1,
    shuffle: bool = True,
    num_workers: int | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> PartitionInfo:
    """Write one time point's views to a BDV HDF5 partition file (a valid BDV file by itself).

    Parameters
    ----------
    path
        Output file (replaced atomically: a crash never leaves a partial file there).
    timepoint
        Time point id.
    volumes
        Setup id -> ``(z, y, x)`` volume (NumPy or Dask; read block by block).
    voxel_size
        ``(x, y, z)`` voxel size (one for all setups, or per setup) for the pyramid proposal.
    pyramid
        Pyramid to write (one for all setups, or per setup); default: proposed by
        :func:`~scopeflow.io._pyramid.propose_mipmaps`.
    compression
        ``"gzip"`` (HDF5 deflate) or ``None``.
    compression_level
        Deflate level 1-9 (1 is fastest; higher levels gain little on microscopy images).
    shuffle
        Add HDF5's byte-shuffle filter before deflate.
    num_workers
        Threads computing and compressing blocks (default: the CPUs this process may use).
    block_bytes
        Target size of the blocks read from each volume.

    Returns
    -------
    PartitionInfo
        What was written.
    """
    if compression not in ("gzip", None):
        raise ValueError(f"compression must be 'gzip' or None, got {compression!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    workers = num_workers or len(os.sched_getaffinity(0))
    opts = _Options(compression, int(compression_level), shuffle, workers, block_bytes)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    info = PartitionInfo(path, timepoint, {}, {}, {})
    try:
        with h5py.File(tmp, "w") as f:
            for setup in sorted(volumes):
                arr = _as_dask(volumes[setup])
                size_xyz = (arr.shape[2], arr.shape[1], arr.shape[0])
                vox = voxel_size.get(setup) if isinstance(voxel_size, Mapping) else voxel_size
                pyr = pyramid.get(setup) if isinstance(pyramid, Mapping) else pyramid
                pyr = pyr or propose_mipmaps(size_xyz, vox or (1.0, 1.0, 1.0))
                _SetupWriter(f, timepoint, setup, np.dtype(arr.dtype), opts).write(arr, pyr)
                info.pyramids[setup] = pyr
                info.shapes[setup] = (arr.shape[0], arr.shape[1], arr.shape[2])
                info.dtypes[setup] = np.dtype(arr.dtype)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return info


def _write_pyramid_description(
    f: h5py.File, setup: int, pyr: Pyramid, type_name: str | None
) -> None:
    group = f.require_group(setup_group(setup))
    group.create_dataset("resolutions", data=np.array(pyr.resolutions, dtype=np.float64))
    group.create_dataset("subdivisions", data=np.array(pyr.subdivisions, dtype=np.int32))
    if type_name is not None:
        group.attrs["dataType"] = type_name


def write_bdv_master(master: str | Path, partitions: Sequence[str | Path | Partition]) -> Path:
    """Write the master HDF5 file that links the partitions' pixels with external links.

    The setups' ``resolutions``/``subdivisions`` (and ``dataType``) are copied from the
    partitions; every ``t*/s*/*/cells`` of a partition becomes an external link (path relative
    to the master's folder). Written once, by a non-parallel step; replaced atomically.

    Raises
    ------
    FormatError
        A partition is not BDV HDF5, or two partitions describe one setup's pyramid differently.
    """
    master = Path(master)
    master.parent.mkdir(parents=True, exist_ok=True)
    tmp = master.with_name(f".{master.name}.{os.getpid()}.tmp")
    described: dict[int, Any] = {}
    try:
        with h5py.File(tmp, "w") as out:
            for item in partitions:
                part = item if isinstance(item, Partition) else Partition(Path(item), (), ())
                _link_partition(out, master.parent, part, described)
        tmp.replace(master)
    finally:
        tmp.unlink(missing_ok=True)
    return master


def _link_partition(
    out: h5py.File, folder: Path, part: Partition, described: dict[int, Any]
) -> None:
    path = part.path if part.path.is_absolute() else folder / part.path
    target = Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()
    # ids inside the partition file -> ids of the dataset (identity when not mapped)
    tmap = dict(zip(part.timepoints_mapped or part.timepoints, part.timepoints, strict=True))
    smap = dict(zip(part.setups_mapped or part.setups, part.setups, strict=True))
    try:
        with h5py.File(path, "r") as f:
            for name in (n for n in f if n[:1] == "s" and n[1:].isdigit()):
                if smap and int(name[1:]) not in smap:
                    continue
                g = f[name]
                pyr = Pyramid.from_arrays(g["resolutions"][()], g["subdivisions"][()])
                type_name = g.attrs.get("dataType")
                setup = smap.get(int(name[1:]), int(name[1:]))
                if setup in described:
                    if described[setup][:2] != (pyr, type_name):
                        other = described[setup][2]
                        raise FormatError(
                            path, f"setup {setup} is described differently in {other}"
                        )
                    continue
                described[setup] = (pyr, type_name, path)
                _write_pyramid_description(out, setup, pyr, type_name)
            for tname in (n for n in f if n[:1] == "t" and n[1:].isdigit()):
                t = int(tname[1:])
                if tmap and t not in tmap:
                    continue
                for sname in f[tname]:
                    s = int(sname[1:])
                    if smap and s not in smap:
                        continue
                    for level in f[tname][sname]:
                        link = h5py.ExternalLink(target, f"{tname}/{sname}/{level}/cells")
                        out[cells_path(tmap.get(t, t), smap.get(s, s), int(level))] = link
    except (OSError, KeyError, ValueError) as exc:
        raise FormatError(path, f"cannot read as a BDV HDF5 partition: {exc}") from exc
