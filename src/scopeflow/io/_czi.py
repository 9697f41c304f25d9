"""Zeiss CZI reader through ZEISS' pylibCZIrw (libCZI), lazy per Z-slab.

Chosen over aicspylibczi and bioio-czi by measurement (``benchmarks/czi_readers.py``): fastest
per plane, complete dimensions from the subblock directory (bioio-czi takes scenes from the XML
and missed three of four scenes of a pylibCZIrw-written file), already scopeflow's CZI writer.

Series
    One per scene (files without scenes: one series) and, where the file has them with more
    than one index, per view ``V``, illumination ``I``, rotation ``R`` and phase ``H``
    (``extra["plane"]`` holds those indices; ``illumination`` is the ``I`` index). A mosaic
    scene reads as its stitched bounding box, as ZEN shows it (libCZI composes the tiles; where
    tiles overlap the later tile wins); the tile rectangles of the scene, relative to its origin
    in pixels, are in ``extra["tiles"]``. Per-tile reading is not offered: pylibCZIrw composes
    planes and has no single-tile read.
Axes
    Always ``TCZYX``, plus ``S`` (samples, RGB order) for ``Bgr24``/``Bgr48``/``Bgr96Float``
    pixels: CZI stores B, G, R in memory and the reader reverses them. Channels of different
    pixel types are read as the widest of them.
Metadata
    Voxel size from ``Metadata/Scaling/Items/Distance[@Id]/Value`` (metres → µm); channel names
    from ``…/Dimensions/Channels/Channel/@Name``; time interval from ``…/Dimensions/T/Positions``
    (``Interval/Increment``, or the mean step of ``List/Offsets``; seconds); scene names from
    ``…/Dimensions/S/Scenes/Scene/@Name``; ``position`` = origin of the series' bounding box in
    the file's pixel frame times the voxel size (µm); ``angle`` from the custom attribute
    ``ScopeflowAngles`` written by :mod:`scopeflow.testing`.
Laziness
    One dask task per chunk (one T, one C, a slab of Z planes up to ~32 MiB, whole rows of Y
    unless a plane alone is larger); each task opens the file by path (pickle-safe; opening
    costs well under a millisecond) and wraps any failure in :class:`~scopeflow.core.FormatError`.
"""

from __future__ import annotations

import itertools
import math
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from pylibCZIrw import czi as pyczi

from scopeflow.core import FormatError

from ._base import ImageMetadata, ImageReader, register_reader

__all__ = ["CziReader"]

#: pylibCZIrw pixel type -> (dtype, samples per pixel)
PIXEL_TYPES: dict[str, tuple[str, int]] = {
    "Gray8": ("uint8", 1),
    "Gray16": ("uint16", 1),
    "Gray32Float": ("float32", 1),
    "Bgr24": ("uint8", 3),
    "Bgr48": ("uint16", 3),
    "Bgr96Float": ("float32", 3),
}
_BY_DTYPE = {(np.dtype(d), n): name for name, (d, n) in PIXEL_TYPES.items()}
_SERIES_DIMS = "VIRH"
_CHUNK_BYTES = 32 * 2**20
_DIMS = "Metadata/Information/Image/Dimensions"


@dataclass(frozen=True)
class _Layout:
    """Where one series' pixels are: everything a read task needs, all picklable."""

    path: str
    scene: int | None
    plane: tuple[tuple[str, int], ...]  # V/I/R/H indices
    starts: tuple[int, int, int]  # first T, C, Z index
    roi: tuple[int, int, int, int]  # x, y, w, h in the file's pixel frame
    pixel_type: str
    dtype: str
    rgb: bool


def _read_chunk(
    layout: _Layout, block: tuple[int, int, int, int, int, int]
) -> np.ndarray[Any, Any]:
    """Pixels ``[t, c, z0:z1, y0:y1, :]`` of a series for ``block = (t, c, z0, z1, y0, y1)``.

    Returns an array of shape ``(1, 1, z1 - z0, y1 - y0, x[, 3])``.
    """
    t, c, z0, z1, y0, y1 = block
    x, y, w, _ = layout.roi
    t0, c0, zs = layout.starts
    out = np.empty((1, 1, z1 - z0, y1 - y0, w) + ((3,) if layout.rgb else ()), layout.dtype)
    try:
        with pyczi.open_czi(layout.path) as czi:
            for k, z in enumerate(range(z0, z1)):
                plane = czi.read(
                    roi=(x, y + y0, w, y1 - y0),
                    plane={"T": t0 + t, "C": c0 + c, "Z": zs + z, **dict(layout.plane)},
                    scene=layout.scene,
                    pixel_type=layout.pixel_type,
                )
                out[0, 0, k] = plane[..., ::-1] if layout.rgb else plane[..., 0]  # BGR -> RGB
    except Exception as exc:
        where = f"scene {layout.scene}, T={t}, C={c}, Z={z0}..{z1 - 1}"
        raise FormatError(layout.path, f"cannot read pixels of {where}: {exc}") from exc
    return out


def check_segments(path: Path) -> None:
    """Walk the chain of ZISRAW segments; raise :class:`FormatError` if the file is cut short.

    Every CZI segment starts with a 32-byte header (16-byte id, allocated size, used size) and
    the segments (with their allocated padding) follow each other up to the end of the file. ZEN
    puts the subblock directory near the start, so libCZI opens a truncated ZEN file and only
    fails (or not, for a cut in the attachments) on the pixels; this walk catches a truncation at
    open, at the cost of one 32-byte read per segment.
    """
    size = path.stat().st_size
    offset = 0
    with path.open("rb") as fh:
        while offset < size:
            fh.seek(offset)
            header = fh.read(32)
            ident = header[:16].rstrip(b"\0")
            if len(header) < 32 or not (ident.startswith(b"ZISRAW") or ident == b"DELETED"):
                what = "not a CZI file" if offset == 0 else "damaged or truncated CZI"
                raise FormatError(path, f"{what}: no segment header at byte {offset}")
            allocated, used = struct.unpack("<qq", header[16:32])
            end = offset + 32 + max(allocated, used)
            if end > size:
                raise FormatError(
                    path,
                    f"truncated CZI: segment {ident.decode()} at byte {offset} spans "
                    f"{end - offset} bytes, the file ends {size - offset} bytes after it",
                )
            offset = end


def _text_float(root: ET.Element, path: str) -> float | None:
    text = root.findtext(path)
    try:
        return float(text) if text is not None and text.strip() else None
    except ValueError:
        return None


def _time_interval(root: ET.Element) -> float | None:
    step = _text_float(root, f"{_DIMS}/T/Positions/Interval/Increment")
    if step is not None:
        return step
    offsets = root.findtext(f"{_DIMS}/T/Positions/List/Offsets")
    if offsets:
        values = [float(v) for v in offsets.split()]
        if len(values) > 1:
            return (values[-1] - values[0]) / (len(values) - 1)
    return None


def _pixel_type(types: set[str], path: Path) -> str:
    unknown = sorted(types - set(PIXEL_TYPES))
    if unknown:
        raise FormatError(path, f"unsupported CZI pixel type(s) {', '.join(unknown)}")
    dtype = np.result_type(*(np.dtype(PIXEL_TYPES[t][0]) for t in types))
    samples = max(PIXEL_TYPES[t][1] for t in types)
    return _BY_DTYPE[(dtype, samples)]


@register_reader
class CziReader(ImageReader):
    """Lazy reader of Zeiss CZI files (see the module docstring for series, axes, metadata)."""

    format = "czi"
    suffixes = (".czi",)

    def _open(self) -> None:
        check_segments(self.path)
        with pyczi.open_czi(str(self.path)) as czi:
            box = czi.total_bounding_box_no_pyramid
            scene_rects = czi.scenes_bounding_rectangle_no_pyramid
            total = czi.total_bounding_rectangle_no_pyramid
            channels = range(box["C"][0], box["C"][1]) if "C" in box else range(1)
            types = {czi.get_channel_pixel_type(c) for c in channels}
            root = ET.fromstring(czi.raw_metadata)
            tiles = self._tiles(czi)
        if not types or total.w <= 0 or total.h <= 0:
            raise FormatError(self.path, "the CZI holds no image data")
        pixel_type = _pixel_type(types, self.path)
        dtype, samples = PIXEL_TYPES[pixel_type]
        scaling = {  # metres; 0 (pylibCZIrw's default) or missing means unknown
            d.get("Id"): value * 1e6
            for d in root.iterfind("Metadata/Scaling/Items/Distance")
            if (value := _text_float(d, "Value") or 0.0) > 0 and math.isfinite(value)
        }
        voxel = tuple(scaling.get(a, 1.0) for a in "XYZ")
        known = "X" in scaling or "Y" in scaling
        names = [
            ch.get("Name") or ch.get("Id") or f"C{i}"
            for i, ch in enumerate(root.iterfind(f"{_DIMS}/Channels/Channel"))
        ]
        n_c = box["C"][1] - box["C"][0] if "C" in box else 1
        if len(names) < n_c:
            names = [f"C{i}" for i in range(n_c)]
        scene_names = {
            int(s.get("Index", i)): s.get("Name")
            for i, s in enumerate(root.iterfind(f"{_DIMS}/S/Scenes/Scene"))
        }
        angles_text = root.findtext(
            "Metadata/Information/CustomAttributes/KeyValue/ScopeflowAngles"
        )
        angles = [float(a) for a in angles_text.split(",")] if angles_text else []
        extra_dims = [d for d in _SERIES_DIMS if d in box and box[d][1] - box[d][0] > 1]
        starts = tuple(box[d][0] if d in box else 0 for d in "TCZ")
        sizes = tuple(box[d][1] - box[d][0] if d in box else 1 for d in "TCZ")
        scenes: list[int | None] = sorted(scene_rects) or [None]
        interval = _time_interval(root)

        self._layouts: list[_Layout] = []
        self._meta: list[ImageMetadata] = []
        combos = itertools.product(*(range(*box[d]) for d in extra_dims))
        for scene, combo in itertools.product(scenes, list(combos)):
            rect = total if scene is None else scene_rects[scene]
            plane = tuple(zip(extra_dims, combo, strict=True))
            layout = _Layout(
                path=str(self.path),
                scene=scene,
                plane=plane,
                starts=(starts[0], starts[1], starts[2]),
                roi=(rect.x, rect.y, rect.w, rect.h),
                pixel_type=pixel_type,
                dtype=dtype,
                rgb=samples == 3,
            )
            rects = sorted(tiles.get(scene, set()))
            extra: dict[str, Any] = {"pixel_type": pixel_type, "plane": dict(plane)}
            if len(rects) > 1:
                extra["tiles"] = [[x - rect.x, y - rect.y, w, h] for x, y, w, h in rects]
            name = self.path.stem + (f"_S{scene}" if len(scenes) > 1 else "")
            name = (scene_names.get(scene) if scene is not None else None) or name
            if plane:
                name += "_" + "".join(f"{d}{i}" for d, i in plane)
            angle = None
            if scene is not None and scene < len(angles):
                angle = angles[scene]
            self._layouts.append(layout)
            self._meta.append(
                ImageMetadata(
                    axes="TCZYX" + ("S" if samples == 3 else ""),
                    shape=(*sizes, rect.h, rect.w) + ((3,) if samples == 3 else ()),
                    dtype=np.dtype(dtype),
                    voxel_size=(voxel[0], voxel[1], voxel[2]) if known else (1.0, 1.0, 1.0),
                    unit="micrometer" if known else "pixel",
                    channel_names=tuple(names[:n_c]),
                    name=name,
                    series=len(self._meta),
                    position=(rect.x * voxel[0], rect.y * voxel[1], 0.0) if known else None,
                    angle=angle,
                    illumination=dict(plane).get("I"),
                    scene=scene,
                    time_interval=interval,
                    extra=extra,
                )
            )

    @staticmethod
    def _tiles(czi: Any) -> dict[int | None, set[tuple[int, int, int, int]]]:
        """Distinct full-resolution subblock rectangles per scene."""
        tiles: dict[int | None, set[tuple[int, int, int, int]]] = {}

        def visit(_: int, info: Any) -> bool:
            rect = info.logicalRect
            if rect.w == info.physicalSize.w:  # pyramid subblocks are smaller than their rect
                scene = info.coordinate.to_dict().get("S")
                tiles.setdefault(scene, set()).add((rect.x, rect.y, rect.w, rect.h))
            return True

        czi.enumerate_subblocks(visit)
        return tiles

    @property
    def series_count(self) -> int:
        """Number of series (scenes, times views, illuminations … where present)."""
        return len(self._meta)

    def metadata(self, series: int = 0) -> ImageMetadata:
        """Metadata of ``series``."""
        self._check_series(series)
        return self._meta[series]

    def to_dask(self, series: int = 0) -> Any:
        """``series`` as a lazy dask array, one task per chunk (see the module docstring)."""
        self._check_series(series)
        meta, layout = self._meta[series], self._layouts[series]
        n_t, n_c, n_z, n_y, n_x = meta.shape[:5]
        row = n_x * meta.dtype.itemsize * (3 if layout.rgb else 1)
        plane = row * n_y
        z_step = max(1, min(n_z, _CHUNK_BYTES // max(plane, 1)))
        y_step = n_y if plane <= _CHUNK_BYTES else max(1, _CHUNK_BYTES // row)
        z_edges = [*range(0, n_z, z_step), n_z]
        y_edges = [*range(0, n_y, y_step), n_y]
        stat = self.path.stat()
        name = "czi-" + tokenize(layout, stat.st_mtime_ns, stat.st_size)
        tail = (0,) if layout.rgb else ()
        graph: dict[Any, Any] = {}
        for t, c, (iz, z0), (iy, y0) in itertools.product(
            range(n_t), range(n_c), enumerate(z_edges[:-1]), enumerate(y_edges[:-1])
        ):
            key = (name, t, c, iz, iy, 0, *tail)
            graph[key] = (_read_chunk, layout, (t, c, z0, z_edges[iz + 1], y0, y_edges[iy + 1]))
        chunks = (
            (1,) * n_t,
            (1,) * n_c,
            tuple(np.diff(z_edges).tolist()),
            tuple(np.diff(y_edges).tolist()),
            (n_x,),
        ) + (((3,),) if layout.rgb else ())
        hlg = HighLevelGraph.from_collections(name, graph, dependencies=())
        return da.Array(hlg, name, chunks, dtype=meta.dtype)
