"""BigDataViewer HDF5 + XML reader (format ``"bdv"``): one series per view.

A series is one *view* (time point, setup) that is not missing, in the order of
:meth:`~scopeflow.io.spimdata.SpimData.views` (by time point, then setup): views of one dataset
may differ in size (setups) and a setup may lack some time points, so a T axis would not fit
them all. Axes are ``ZYX``; ``metadata(i).extra`` holds ``timepoint``, ``setup``, ``levels``
(the pyramid's ``(x, y, z)`` factors), ``model`` (the composed ``3 x 4`` view affine, row-major)
and ``attributes`` (attribute name -> id). ``to_dask(i, level)`` reads any pyramid level.

``uint16`` images are stored as ``int16`` (the BDV convention) and returned as ``uint16``;
other types follow the ``dataType`` attribute of ``s{setup:02d}``, else the stored type. The
XML's ``<hdf5>`` file is opened; partitions are reached through its external links. A view of the
XML whose pixels the file does not hold (e.g. never written by pybdv) counts as missing and is
listed in ``extra["absent_views"]``; a link to a partition that cannot be opened, a damaged
HDF5 file, or an XML that is not SpimData raise :class:`~scopeflow.core.FormatError`.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import h5py
import numpy as np
from dask.base import tokenize

from scopeflow.core import FormatError, InputNotFoundError
from scopeflow.io._base import ImageMetadata, ImageReader, register_reader
from scopeflow.io._bdv_hdf5 import cells_path, setup_group
from scopeflow.io._bdv_xml import read_spimdata
from scopeflow.io._pyramid import Pyramid
from scopeflow.io.spimdata import SpimData

__all__ = ["BdvReader"]

_MICROMETRE = {"micrometer", "micrometre", "micron", "microns", "um", "µm", "μm"}
_DASK_CHUNK_BYTES = 16 * 2**20


class _OpenFiles:
    """A small per-process cache of HDF5 files open for reading (keyed by path, mtime, size)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.files: OrderedDict[tuple[str, int, int], h5py.File] = OrderedDict()

    def get(self, path: Path) -> h5py.File:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        with self.lock:
            f = self.files.get(key)
            if f is None or not f.id.valid:
                f = h5py.File(path, "r", locking=False)
                self.files[key] = f
                while len(self.files) > self.size:
                    self.files.popitem(last=False)[1].close()
            self.files.move_to_end(key)
            return f

    def release(self, path: Path) -> None:
        with self.lock:
            for key in [k for k in self.files if k[0] == str(path)]:
                self.files.pop(key).close()


_FILES = _OpenFiles()


@dataclass(frozen=True)
class _Cells:
    """Picklable lazy view of one ``cells`` dataset; carries only paths."""

    xml: Path
    h5: Path
    key: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, index: Any) -> np.ndarray[Any, Any]:
        try:
            data = np.asarray(_FILES.get(self.h5)[self.key][index])
        except Exception as exc:
            raise FormatError(self.xml, f"cannot read {self.key} of {self.h5}: {exc}") from exc
        return data.view(self.dtype) if data.dtype != self.dtype else data


def _unit(unit: str) -> str:
    return "micrometer" if unit.strip().lower() in _MICROMETRE else unit


def _dask_chunks(shape: tuple[int, ...], chunks: tuple[int, ...] | None, itemsize: int) -> Any:
    """Dask chunks: whole HDF5 chunks, grown x then y then z to about 16 MiB."""
    block = list(chunks or shape)
    for axis in (2, 1, 0):
        while block[axis] < shape[axis] and 2 * np.prod(block) * itemsize <= _DASK_CHUNK_BYTES:
            block[axis] = min(2 * block[axis], shape[axis])
    return tuple(block)


@register_reader
class BdvReader(ImageReader):
    """Reader of BigDataViewer datasets (``.xml`` + HDF5, partitions included)."""

    format = "bdv"
    suffixes = (".xml",)

    def _open(self) -> None:
        self.spimdata: SpimData = read_spimdata(self.path)
        sd = self.spimdata
        if sd.image_loader != "bdv.hdf5" or sd.hdf5 is None:
            raise FormatError(self.path, f"image loader {sd.image_loader!r} is not bdv.hdf5")
        self.h5 = sd.hdf5
        if not self.h5.exists():
            raise InputNotFoundError(self.h5, f"BDV HDF5 file of {self.path}")
        try:
            f = _FILES.get(self.h5)
            self._pyramids = {s: self._pyramid(f, s) for s in sd.setups}
            declared = {s: self._dtype(f, s) for s in sd.setups}
            self._stored: dict[int, np.dtype[Any]] = {}
            self._views: list[tuple[int, int]] = []
            self._absent: list[tuple[int, int]] = []
            self._shapes: dict[tuple[int, int], list[tuple[int, ...]]] = {}
            for view in sd.views():
                shapes = self._level_shapes(f, *view)
                if shapes:
                    self._views.append(view)
                    self._shapes[view] = shapes
                else:
                    self._absent.append(view)
            self._dtypes = {
                s: declared[s] or _uint16_if_int16(self._stored.get(s, np.dtype(np.int16)))
                for s in sd.setups
            }
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise FormatError(self.path, f"HDF5 file {self.h5}: {exc}") from exc

    def _pyramid(self, f: h5py.File, setup: int) -> Pyramid:
        group = f.get(setup_group(setup))
        if group is None:
            raise FormatError(self.path, f"{self.h5} has no {setup_group(setup)} (setup {setup})")
        return Pyramid.from_arrays(group["resolutions"][()], group["subdivisions"][()])

    def _dtype(self, f: h5py.File, setup: int) -> np.dtype[Any] | None:
        name = f[setup_group(setup)].attrs.get("dataType")
        if name is None:
            return None
        return np.dtype(name.decode() if isinstance(name, bytes) else str(name))

    def _walk(self, f: h5py.File, path: str) -> Any:
        """The object at ``path``; ``None`` if a link is absent; FormatError if one is broken."""
        obj: Any = f
        for name in path.split("/"):
            if not isinstance(obj, h5py.Group) or not obj.id.links.exists(name.encode()):
                return None
            try:
                obj = obj[name]
            except (KeyError, OSError) as exc:
                target = "?"
                with contextlib.suppress(Exception):  # only for the message
                    target = obj.id.links.get_val(name.encode())[0].decode()
                raise FormatError(
                    self.path, f"{self.h5}: {path} links to {target}, which cannot be read: {exc}"
                ) from exc
        return obj

    def _level_shapes(self, f: h5py.File, tp: int, setup: int) -> list[tuple[int, ...]]:
        shapes: list[tuple[int, ...]] = []
        for level in range(self._pyramids[setup].levels):
            dset = self._walk(f, cells_path(tp, setup, level))
            if dset is None:
                break
            if not isinstance(dset, h5py.Dataset) or dset.ndim != 3:
                raise FormatError(self.path, f"{self.h5}: {dset.name} is not a 3-D dataset")
            shapes.append(tuple(int(n) for n in dset.shape))
            stored = np.dtype(dset.dtype)
            self._stored[setup] = stored
        return shapes

    @property
    def series_count(self) -> int:
        """Number of views with pixels."""
        return len(self._views)

    def series_index(self, timepoint: int, setup: int) -> int:
        """Series index of a view (``IndexError`` if the dataset has no pixels for it)."""
        try:
            return self._views.index((timepoint, setup))
        except ValueError:
            raise IndexError(
                f"{self.path}: no view (timepoint {timepoint}, setup {setup})"
            ) from None

    def levels(self, series: int = 0) -> int:
        """Number of pyramid levels of a series."""
        self._check_series(series)
        return len(self._shapes[self._views[series]])

    def metadata(self, series: int = 0) -> ImageMetadata:
        """Metadata of a view (see the module docstring for ``extra``)."""
        self._check_series(series)
        tp, sid = self._views[series]
        sd, setup = self.spimdata, self.spimdata.setups[sid]
        channel = sd.attribute(sid, "channel")
        angle = sd.attribute(sid, "angle")
        tile = sd.attribute(sid, "tile")
        illum = sd.attribute(sid, "illumination")
        position = None
        if tile is not None and tile.get("location"):
            loc = [float(v) for v in (tile.get("location") or "").split()]
            position = (loc[0], loc[1], loc[2]) if len(loc) == 3 else None
        return ImageMetadata(
            axes="ZYX",
            shape=self._shapes[(tp, sid)][0],
            dtype=self._dtypes[sid],
            voxel_size=setup.voxel_size or (1.0, 1.0, 1.0),
            unit=_unit(setup.unit) if setup.voxel_size else "pixel",
            channel_names=(
                (channel.name or str(channel.id),) if channel is not None else (f"setup{sid}",)
            ),
            name=setup.name if setup.name is not None else f"setup {sid}",
            series=series,
            position=position,
            angle=_angle(angle),
            illumination=illum.id if illum is not None else None,
            tile=tile.id if tile is not None else None,
            extra={
                "timepoint": tp,
                "setup": sid,
                "levels": [list(r) for r in self._pyramids[sid].resolutions],
                "model": sd.view_model(tp, sid).tolist(),
                "attributes": dict(setup.attributes),
                "absent_views": [list(v) for v in self._absent],
            },
        )

    def to_dask(self, series: int = 0, level: int = 0) -> Any:
        """Lazy ``(z, y, x)`` array of a view at pyramid ``level`` (0: full resolution)."""
        self._check_series(series)
        tp, sid = self._views[series]
        shapes = self._shapes[(tp, sid)]
        if not 0 <= level < len(shapes):
            raise IndexError(f"{self.path}: level {level} out of range ({len(shapes)} levels)")
        key = cells_path(tp, sid, level)
        dtype = self._dtypes[sid]
        cells = _Cells(self.path, self.h5, key, shapes[level], dtype)
        try:
            stored_chunks = _FILES.get(self.h5)[key].chunks
        except (OSError, KeyError) as exc:
            raise FormatError(self.path, f"cannot open {key} of {self.h5}: {exc}") from exc
        st = self.h5.stat()
        name = "bdv-" + tokenize(str(self.h5), st.st_mtime_ns, st.st_size, key)
        chunks = _dask_chunks(shapes[level], stored_chunks, dtype.itemsize)
        return da.from_array(
            cells, chunks=chunks, name=name, asarray=False, meta=np.empty((0, 0, 0), dtype)
        )

    def close(self) -> None:
        """Close the cached HDF5 handle of this dataset."""
        if hasattr(self, "h5"):
            _FILES.release(self.h5)


def _uint16_if_int16(stored: np.dtype[Any]) -> np.dtype[Any]:
    return np.dtype(np.uint16) if stored == np.int16 else stored


def _angle(value: Any) -> float | None:
    if value is None:
        return None
    for text in (value.get("degrees"), value.name):
        try:
            return float(text)
        except (TypeError, ValueError):
            continue
    return None
