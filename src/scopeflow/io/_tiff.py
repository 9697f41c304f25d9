"""TIFF and OME-TIFF reader (tifffile), lazy through tifffile's Zarr store.

Each tifffile series (an OME ``Image``, an ImageJ hyperstack, a shaped tifffile array, or a
plain page sequence) is one scopeflow series; pyramids give their full-resolution level. Pixels
are read through :meth:`tifffile.TiffPageSeries.aszarr` (works with zarr 2 and 3) behind a small
picklable proxy: a lazy array carries only the path, and each process opens the file once (a
small cache of open files, keyed by path, size and modification time).

Axis mapping from tifffile's letters to scopeflow's ``TCZYXS`` (then transposed to that order):

- ``T C Z Y X S`` map to themselves (``S``: samples of an RGB(A) pixel);
- ``E`` (spectral lambda) becomes ``C`` when the series has no ``C``;
- ``I`` and ``Q`` (a page sequence of unknown meaning, e.g. a plain multi-page TIFF) and any other
  letter become the first of ``Z``, ``T``, ``C`` the series does not have: an unlabelled page
  sequence is a z-stack, as ImageJ opens it;
- unknown axes of length 1 are dropped; a series with more axes than that leaves room for raises
  :class:`~scopeflow.core.FormatError`.

Voxel size (µm): OME ``PhysicalSizeX/Y/Z`` with their units; else the ``XResolution`` /
``YResolution`` tags (pixels per unit) in the ImageJ ``unit`` (z from ImageJ ``spacing``) or in
the ``ResolutionUnit`` (inch, centimetre, millimetre, micrometre); a file with no unit keeps
``(1, 1, 1)`` and unit ``"pixel"``. Channel names: OME ``Channel/@Name``, else the ImageJ slice
labels of the first time point and slice, else ``C0``, ``C1``, …. Time interval: OME
``TimeIncrement`` or ImageJ ``finterval``.

Damaged files: tifffile logs (rather than raises) most structural damage and then returns a
shorter series — a silent partial read. The reader raises :class:`~scopeflow.core.FormatError`
when tifffile logs an error while opening, when any page's data lie past the end of the file,
and wraps any error of a lazy read in a ``FormatError`` naming the file.
"""

from __future__ import annotations

import logging
import math
import struct
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from dask.base import tokenize

from scopeflow.core import FormatError, InputNotFoundError

from ._base import AXES_ORDER, ImageMetadata, ImageReader, register_reader
from ._tiff_cache import OPEN_FILES

__all__ = ["OmeTiffReader", "TiffReader"]

#: micrometres per unit, for OME units, ImageJ unit strings and TIFF ResolutionUnit names
UNIT_UM: dict[str, float] = {
    "pm": 1e-6, "Å": 1e-4, "angstrom": 1e-4, "nm": 1e-3, "nanometer": 1e-3,
    "µm": 1.0, "\u03bcm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
    "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4, "m": 1e6, "meter": 1e6,
    "inch": 25400.0, "in": 25400.0,
}  # fmt: skip
_SECONDS = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "min": 60.0, "h": 3600.0}
_CHUNK_BYTES = 4 * 2**20  # small enough that a batch of small images reads little extra
_FREE_SLOTS = "ZTC"


def map_axes(axes: str, shape: tuple[int, ...]) -> tuple[tuple[int | slice, ...], str, list[int]]:
    """Map tifffile axis letters to scopeflow's (see the module docstring).

    Returns
    -------
    index
        Index into the tifffile-ordered array that drops unknown length-1 axes.
    canonical
        The kept axes' letters in ``TCZYXS`` order.
    perm
        Transpose of the indexed array that puts its axes in ``canonical`` order.
    """
    used = {a for a in axes if a in AXES_ORDER}
    if "E" in axes and "C" not in used:
        used.add("C")
        axes = axes.replace("E", "C")
    index: list[int | slice] = []
    letters: list[str] = []
    for letter, size in zip(axes, shape, strict=True):
        target = letter
        if letter not in AXES_ORDER:
            if size == 1:
                index.append(0)
                continue
            free = [s for s in _FREE_SLOTS if s not in used]
            if not free:
                raise ValueError(f"axes {axes!r} of shape {shape} do not fit {AXES_ORDER!r}")
            target = free[0]
            used.add(target)
        index.append(slice(None))
        letters.append(target)
    canonical = "".join(a for a in AXES_ORDER if a in letters)
    return tuple(index), canonical, [letters.index(a) for a in canonical]


class _TiffArray:
    """Picklable array-like over one series; reads go through the per-process file cache."""

    def __init__(self, path: Path, series: int, shape: tuple[int, ...], dtype: Any) -> None:
        self.path = path
        self.series = series
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.ndim = len(shape)

    def __getitem__(self, key: Any) -> np.ndarray[Any, Any]:
        try:
            pages = self._read_pages(key)
            if pages is not None:
                return pages
            with OPEN_FILES.array(self.path, self.series) as arr:
                if tuple(arr.shape) != self.shape:
                    raise ValueError(f"series shape is now {arr.shape}, was {self.shape}")
                return np.asarray(arr[key])
        except FormatError:
            raise
        except Exception as exc:
            raise FormatError(
                self.path, f"cannot read pixels of series {self.series}: {exc}"
            ) from exc

    def _read_pages(self, key: Any) -> np.ndarray[Any, Any] | None:
        """Fast path for page sequences (one 2-D page per plane, e.g. a stack of small images).

        Reads the selected pages in one ``TiffFile.asarray(key=pages)`` call instead of one Zarr
        chunk per page (measured 25x faster for 500 pages of 90 x 90). None when it does not
        apply (tiled pages, several pages per plane, or a key that is not a tuple of slices).
        """
        key = key if isinstance(key, tuple) else (key,)
        if len(key) != self.ndim or not all(isinstance(k, slice) for k in key):
            return None
        with OPEN_FILES.tiff(self.path) as tif:
            series = tif.series[self.series]
            page = series.keyframe
            if page.is_tiled:
                return None
            page_shape = tuple(page.shape)
            lead = self.ndim - len(page_shape)
            if lead < 1 or tuple(self.shape[lead:]) != page_shape:
                return None
            n_planes = int(np.prod(self.shape[:lead]))
            if len(series) != n_planes:
                return None
            index = np.arange(n_planes).reshape(self.shape[:lead])[key[:lead]]
            if index.size == 0:
                return None
            with OPEN_FILES.lock:
                data = tif.asarray(key=index.ravel().tolist(), series=self.series, maxworkers=1)
        out: np.ndarray[Any, Any] = np.asarray(data).reshape(index.shape + page_shape)
        return np.asarray(out[(slice(None),) * lead + key[lead:]])


class _LogCapture(logging.Handler):
    """Collect tifffile's error records of the current thread."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


def _seconds(value: str | float | None, unit: str | None) -> float | None:
    if value is None:
        return None
    return float(value) * _SECONDS.get((unit or "s").strip(), 1.0)


def _um(unit: str | None) -> float | None:
    """Micrometres per ``unit`` (None if unknown)."""
    if unit is None:
        return None
    unit = unit.replace("\\u00B5", "µ").replace("\\u00b5", "µ").strip()
    return UNIT_UM.get(unit, UNIT_UM.get(unit.lower()))


def _chunks(shape: tuple[int, ...], axes: str, itemsize: int) -> tuple[int, ...]:
    """Whole planes, grouped along the last non-plane axis up to ~32 MiB (rows if larger)."""
    plane_axes = [i for i, a in enumerate(axes) if a in "YXS"]
    plane = itemsize * math.prod(shape[i] for i in plane_axes)
    chunks = [shape[i] if i in plane_axes else 1 for i in range(len(shape))]
    if plane > _CHUNK_BYTES and "Y" in axes:
        y = axes.index("Y")
        chunks[y] = max(1, _CHUNK_BYTES // (plane // shape[y]))
    else:
        others = [i for i in range(len(shape)) if i not in plane_axes]
        if others:
            chunks[others[-1]] = max(1, min(shape[others[-1]], _CHUNK_BYTES // max(plane, 1)))
    return tuple(chunks)


def _voxel(sizes: dict[str, float]) -> dict[str, Any]:
    if not sizes:
        return {}
    return {
        "voxel_size": (sizes.get("X", 1.0), sizes.get("Y", 1.0), sizes.get("Z", 1.0)),
        "unit": "micrometer",
    }


def _ome_images(tif: tifffile.TiffFile) -> list[ET.Element]:
    if not tif.is_ome or not tif.ome_metadata:
        return []
    return ET.fromstring(tif.ome_metadata).findall("{*}Image")


def _ome_fields(image: ET.Element) -> dict[str, Any]:
    """Voxel size, channel names, time interval, stage position and name of an OME Image."""
    pixels = image.find("{*}Pixels")
    if pixels is None:
        return {}
    sizes: dict[str, float] = {}
    for ax in "XYZ":
        value = pixels.get(f"PhysicalSize{ax}")
        factor = _um(pixels.get(f"PhysicalSize{ax}Unit", "µm"))
        if value is not None and factor is not None:
            sizes[ax] = float(value) * factor
    fields = _voxel(sizes)
    names = [c.get("Name") for c in pixels.findall("{*}Channel")]
    if names and all(names):
        fields["channel_names"] = names
    interval = _seconds(pixels.get("TimeIncrement"), pixels.get("TimeIncrementUnit"))
    if interval is not None:
        fields["time_interval"] = interval
    plane = pixels.find("{*}Plane")
    if plane is not None and plane.get("PositionX") is not None:
        pos = [
            float(plane.get(f"Position{ax}", 0.0))
            * (_um(plane.get(f"Position{ax}Unit", "µm")) or 1.0)
            for ax in "XYZ"
        ]
        fields["position"] = (pos[0], pos[1], pos[2])
    if image.get("Name"):
        fields["name"] = image.get("Name")
    return fields


def _resolution_fields(page: Any, unit: str | None) -> dict[str, Any]:
    """X/Y pixel size from the resolution tags, per ``unit`` or the ResolutionUnit tag."""
    if unit is None:  # no ResolutionUnit tag: no physical size (not TIFF's default inch)
        tag = page.tags.get("ResolutionUnit")
        unit = {2: "inch", 3: "cm", 4: "mm", 5: "µm"}.get(int(tag.value)) if tag else None
    factor = _um(unit)
    sizes: dict[str, float] = {}
    for ax in "XY":
        tag = page.tags.get(f"{ax}Resolution")
        if factor is None or tag is None:
            continue
        num, den = tag.value
        if num > 0 and den > 0:
            sizes[ax] = den / num * factor
    return _voxel(sizes)


def _imagej_fields(tif: tifffile.TiffFile, channels: int) -> dict[str, Any]:
    ij = tif.imagej_metadata or {}
    unit = ij.get("unit")
    fields = _resolution_fields(tif.pages.first, unit if _um(unit) else None)
    spacing, factor = ij.get("spacing"), _um(unit)
    if spacing is not None and factor is not None:
        x, y, _ = fields.get("voxel_size", (1.0, 1.0, 1.0))
        fields.update(voxel_size=(x, y, float(spacing) * factor), unit="micrometer")
    if ij.get("finterval"):
        fields["time_interval"] = _seconds(ij["finterval"], ij.get("tunit"))
    labels = ij.get("Labels")
    if channels > 1 and isinstance(labels, list) and len(labels) >= channels:
        fields["channel_names"] = [str(x) for x in labels[:channels]]  # planes: C fastest
    return fields


def check_extent(path: Path, s: Any) -> None:
    """Every page's data of series ``s`` must lie inside its file (else it is truncated)."""
    if s.dataoffset is not None:  # contiguous, uncompressed: tifffile parsed one page only
        ends = [(s.dataoffset + s.nbytes, s.keyframe.parent.filehandle)]
    else:
        ends = [
            (offset + count, page.parent.filehandle)
            for page in s.pages
            if page is not None
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True)
            if count
        ]
    for end, fh in ends:
        if end > fh.size:
            raise FormatError(
                path, f"truncated TIFF: data end at byte {end} of {fh.name} ({fh.size} bytes)"
            )


class TiffReader(ImageReader):
    """Lazy reader of TIFF files: ImageJ hyperstacks, shaped tifffile files, plain stacks.

    OME-TIFF files read the same way (see :class:`OmeTiffReader`); see the module docstring for
    the axis mapping and where voxel sizes and channel names come from.
    """

    format = "tiff"
    suffixes = (".tif", ".tiff", ".btf", ".tf8")

    def _open(self) -> None:
        with tiff_errors(self.path), tifffile.TiffFile(self.path) as tif:
            series = list(tif.series)
            images = _ome_images(tif)
            self._meta = [self._series_metadata(tif, i, s, images) for i, s in enumerate(series)]
            for s in series:
                check_extent(self.path, s)
        if not self._meta:
            raise FormatError(self.path, "the TIFF holds no image series")

    def _series_metadata(
        self, tif: tifffile.TiffFile, i: int, s: Any, images: list[ET.Element]
    ) -> ImageMetadata:
        tiff_shape = tuple(int(n) for n in s.shape)
        try:
            index, axes, perm = map_axes(s.axes, tiff_shape)
        except ValueError as exc:
            raise FormatError(self.path, f"series {i}: {exc}") from exc
        kept = [n for n, k in zip(tiff_shape, index, strict=True) if k != 0]
        shape = tuple(kept[p] for p in perm)
        channels = dict(zip(axes, shape, strict=True)).get("C", 1)
        by_name = [im for im in images if im.get("Name") == s.name]
        image = images[i] if len(images) == len(tif.series) else None
        if image is None and by_name:
            image = by_name[0]
        if image is not None:
            fields = _ome_fields(image)
        elif tif.is_imagej:
            fields = _imagej_fields(tif, channels)
        else:
            fields = _resolution_fields(s.keyframe, None)
        names = list(fields.pop("channel_names", []))
        if len(names) != channels:
            names = [f"C{c}" for c in range(channels)]
        return ImageMetadata(
            axes=axes,
            shape=shape,
            dtype=np.dtype(s.dtype),
            channel_names=tuple(names),
            name=fields.pop("name", None) or s.name or self.path.stem,
            series=i,
            extra={"tiff_axes": s.axes, "tiff_shape": list(tiff_shape), "levels": len(s.levels)},
            **fields,
        )

    @property
    def series_count(self) -> int:
        """Number of tifffile series (OME images) in the file."""
        return len(self._meta)

    def metadata(self, series: int = 0) -> ImageMetadata:
        """Metadata of ``series``."""
        self._check_series(series)
        return self._meta[series]

    def to_dask(self, series: int = 0) -> Any:
        """``series`` as a lazy dask array in canonical axis order (full resolution)."""
        self._check_series(series)
        meta = self._meta[series]
        tiff_axes: str = meta.extra["tiff_axes"]
        tiff_shape = tuple(meta.extra["tiff_shape"])
        index, _, perm = map_axes(tiff_axes, tiff_shape)
        stat = self.path.stat()
        import dask.array as da  # here: the eager paths (read_tiff*) must not pay for it

        arr = da.from_array(
            _TiffArray(self.path, series, tiff_shape, meta.dtype),
            chunks=_chunks(tiff_shape, tiff_axes, meta.dtype.itemsize),
            name="tiff-" + tokenize(str(self.path), stat.st_mtime_ns, stat.st_size, series),
            meta=np.empty((0,) * len(tiff_shape), dtype=meta.dtype),
        )
        return arr[index].transpose(perm)

    def close(self) -> None:
        """Close the files this process holds open for ``path`` (lazy arrays reopen them)."""
        OPEN_FILES.release(self.path)


def read_tiff(path: str | Path, series: int = 0) -> tuple[np.ndarray[Any, Any], str]:
    """Read a whole TIFF series at once, with the reader's damage checks: for small images.

    Opening a :class:`TiffReader` parses all metadata and builds a lazy array; for thousands
    of small files (one per cell and channel) that costs more than the pixels. This reads the
    pixels eagerly in one call and refuses damaged files the same way.

    Returns
    -------
    pixels, axes
        The series in canonical axis order, and its axis letters (e.g. ``"YX"``, ``"CYX"``).
    """
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(path, "tiff image")
    if series == 0:
        plane = _read_single_plane(path)
        if plane is not None:
            return plane, "YX"
    with tiff_errors(path), tifffile.TiffFile(path) as tif:
        s = tif.series[series]
        check_extent(path, s)
        data = s.asarray(maxworkers=1)
        index, axes, perm = map_axes(s.axes, tuple(int(n) for n in s.shape))
    return np.asarray(data[index].transpose(perm)), axes


SMALL_TIFF = 4 * 2**20  # files up to this size may take the single-plane fast path


def _one_ifd(data: bytes) -> bool:
    """Whether TIFF (or BigTIFF) bytes hold exactly one image file directory."""
    if len(data) < 16 or data[:2] not in (b"II", b"MM"):
        return False
    order = "<" if data[:2] == b"II" else ">"
    version = struct.unpack_from(order + "H", data, 2)[0]
    if version == 42:
        count_fmt, count_size, entry_size, off_fmt = "H", 2, 12, "I"
        first = struct.unpack_from(order + "I", data, 4)[0]
    elif version == 43:
        count_fmt, count_size, entry_size, off_fmt = "Q", 8, 20, "Q"
        first = struct.unpack_from(order + "Q", data, 8)[0]
    else:
        return False
    if first + count_size > len(data):
        return False
    n = struct.unpack_from(order + count_fmt, data, first)[0]
    nxt_at = first + count_size + n * entry_size
    if nxt_at + struct.calcsize(off_fmt) > len(data):
        return False
    return bool(struct.unpack_from(order + off_fmt, data, nxt_at)[0] == 0)


def _read_single_plane(path: Path) -> np.ndarray[Any, Any] | None:
    """A small one-page grey-level TIFF decoded by libtiff (imagecodecs), else None.

    About 5x cheaper than parsing the file with tifffile (measured: 31 vs 163 µs for a
    90 x 90 plane). Anything unusual (several pages, RGB, a decoding error) returns None, and
    the caller reads the file the general way, which also reports damage.
    """
    if path.stat().st_size > SMALL_TIFF:
        return None
    data = path.read_bytes()
    if not _one_ifd(data):
        return None
    try:
        import imagecodecs

        plane = np.asarray(imagecodecs.tiff_decode(data))
    except Exception:  # libtiff refused it: let tifffile say why
        return None
    return plane if plane.ndim == 2 else None


@contextmanager
def tiff_errors(path: Path) -> Iterator[None]:
    """Make tifffile's logged damage, and any error reading ``path``, one FormatError."""
    logger = logging.getLogger("tifffile")
    capture = _LogCapture()
    logger.addHandler(capture)
    try:
        yield
    except (FormatError, InputNotFoundError):
        raise
    except Exception as exc:
        raise FormatError(path, f"cannot read as TIFF: {exc}") from exc
    finally:
        logger.removeHandler(capture)
    if capture.messages:
        raise FormatError(path, "damaged TIFF: " + "; ".join(capture.messages))


@register_reader
class OmeTiffReader(TiffReader):
    """Lazy reader of OME-TIFF files (``.ome.tif``): one series per OME ``Image``.

    The same implementation as :class:`TiffReader`, registered for the OME suffixes; a file
    named ``.ome.tif`` without OME-XML still reads, as a plain TIFF.
    """

    format = "ome-tiff"
    suffixes = (".ome.tif", ".ome.tiff", ".ome.btf", ".ome.tf8")


register_reader(TiffReader)
