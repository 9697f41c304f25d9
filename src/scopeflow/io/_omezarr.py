"""OME-Zarr reader (OME-NGFF 0.1 to 0.5) that also reads plain Zarr arrays.

The writer lives in :mod:`._omezarr_write` and is re-exported here.

Series
    An NGFF image group is one series per ``multiscales`` entry; a ``bioformats2raw`` layout
    (``0/``, ``1/`` ... image groups) and an HCS plate (wells' fields) are one series per image.
    A plain Zarr array (no NGFF metadata) is one series whose axes come from the caller
    (``axes=``) or from the array's attributes: ``axes`` (as
    :func:`scopeflow.testing.make_cyto_dataset` writes), ``_ARRAY_DIMENSIONS`` (xarray) or
    Zarr 3 ``dimension_names``. An axis that counts images or objects (``image``, ``n``,
    ``cell`` ...) becomes ``T``, recorded as ``extra["stack_axis"]``. Optional attributes:
    ``pixel_size`` (one number) or ``voxel_size`` (``[x, y(, z)]``), ``unit`` (default
    micrometer when a size is given), ``channels`` or ``channel_names``.
Levels
    :meth:`OmeZarrReader.to_dask` reads level 0 by default, ``level=k`` for coarser ones;
    ``extra["levels"]`` lists their shapes.
Axes
    Mapped to scopeflow's letters and transposed to the canonical order ``TCZYX``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import dask.array as da
import numpy as np
import zarr
from dask.base import tokenize

from scopeflow.core import FormatError
from scopeflow.io import _omezarr_meta as meta
from scopeflow.io._base import AXES_ORDER, ImageMetadata, ImageReader, register_reader
from scopeflow.io._omezarr_pyramid import pyramid_steps
from scopeflow.io._omezarr_region import write_ome_zarr_region
from scopeflow.io._omezarr_write import create_ome_zarr, write_ome_zarr

_PLAIN_NAMES = {
    **{a.lower(): a for a in AXES_ORDER},
    "time": "T",
    "channel": "C",
    "channels": "C",
    "ch": "C",
    "sample": "S",
    "samples": "S",
    "rgb": "S",
    "rgba": "S",
}
_STACK_NAMES = frozenset(
    {"image", "images", "n", "i", "index", "cell", "cells", "object", "objects", "event"}
)


@dataclass(frozen=True)
class _Series:
    """One image in the store: where its levels are and how to present them."""

    levels: tuple[str, ...]  # array paths inside the store
    perm: tuple[int, ...]  # transpose from the file's axis order to the canonical one
    meta: ImageMetadata


class _ZarrChunks:
    """Array-like over one Zarr array for :func:`dask.array.from_array`.

    Opens the array lazily (also after unpickling, in another process) and turns any read or
    decode failure into a :class:`~scopeflow.core.FormatError` naming the store.
    """

    def __init__(self, root: Path, path: str, shape: tuple[int, ...], dtype: np.dtype[Any]):
        self.root, self.component = root, path
        self.shape, self.dtype, self.ndim = shape, dtype, len(shape)
        self._array: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}

    def __getitem__(self, key: Any) -> Any:
        try:
            if self._array is None:
                self._array = zarr.open_array(str(self.root / self.component), mode="r")
            return self._array[key]
        except Exception as exc:
            raise FormatError(
                self.root, f"cannot read array {self.component or '/'!r}: {exc}"
            ) from exc


@register_reader
class OmeZarrReader(ImageReader):
    """Reader of OME-Zarr images and plain Zarr arrays (``.ome.zarr`` / ``.zarr`` folders).

    Parameters
    ----------
    path
        The Zarr store (folder).
    axes
        Axis letters of a plain Zarr array (a subsequence of ``"TCZYXS"``, or ``"N"`` for a
        stack of images, read as ``T``); ignored for OME-NGFF images, whose metadata names them.
    """

    format = "ome-zarr"
    suffixes: ClassVar[tuple[str, ...]] = (".ome.zarr", ".zarr")

    def __init__(self, path: str | Path, *, axes: str | None = None) -> None:
        self._axes_hint = axes
        self._series: list[_Series] = []
        super().__init__(path)

    def _open(self) -> None:
        try:
            node = zarr.open(store=str(self.path), mode="r")
        except FileNotFoundError as exc:
            raise FormatError(
                self.path, "no Zarr metadata (.zgroup / .zarray / zarr.json) found"
            ) from exc
        except Exception as exc:
            raise FormatError(self.path, f"corrupt Zarr metadata: {exc}") from exc
        if isinstance(node, zarr.Array):
            self._series = [self._plain_series(node)]
            return
        attrs = self._attrs(node)
        content, version = meta.ngff_content(attrs)
        if version is not None and "multiscales" in content:
            for i in range(len(content["multiscales"])):
                self._series.append(self._image_series(node, "", attrs, i))
        elif "bioformats2raw.layout" in content:
            for key in sorted((k for k in node.group_keys() if k.isdigit()), key=int):
                self._series.append(self._image_series(node[key], key, self._attrs(node[key]), 0))
        elif isinstance(content.get("plate"), Mapping):
            for image in self._plate_images(node, content["plate"]):
                attrs = self._attrs(node[image])
                series = self._image_series(node[image], image, attrs, 0, name=image)
                self._series.append(series)
        else:
            arrays = sorted(node.array_keys())
            raise FormatError(
                self.path,
                "no OME-NGFF multiscales metadata"
                + (
                    f" (the group holds arrays {', '.join(arrays)}; open one of them)"
                    if arrays
                    else ""
                ),
            )
        if not self._series:
            raise FormatError(self.path, "the OME-Zarr store holds no image")

    def _attrs(self, node: Any) -> dict[str, Any]:
        try:
            return dict(node.attrs)
        except Exception as exc:
            raise FormatError(self.path, f"corrupt attributes: {exc}") from exc

    def _plate_images(self, root: Any, plate: Mapping[str, Any]) -> list[str]:
        images: list[str] = []
        for well in plate.get("wells", []):
            well_path = str(well["path"])
            content, _ = meta.ngff_content(self._attrs(root[well_path]))
            images += [f"{well_path}/{im['path']}" for im in content["well"]["images"]]
        return images

    def _image_series(
        self, group: Any, prefix: str, attrs: dict[str, Any], index: int, name: str | None = None
    ) -> _Series:
        content, version = meta.ngff_content(attrs)
        where = f"image {prefix or '/'!r}"
        try:
            ms = content["multiscales"][index]
            paths = [str(d["path"]) for d in ms["datasets"]]
        except (KeyError, IndexError, TypeError) as exc:
            raise FormatError(self.path, f"{where}: malformed multiscales ({exc!r})") from exc
        if not paths:
            raise FormatError(self.path, f"{where}: multiscales lists no datasets")
        arrays = [self._level(group, p, where) for p in paths]
        ndim = arrays[0].ndim
        if any(a.ndim != ndim for a in arrays):
            raise FormatError(self.path, f"{where}: levels have different numbers of dimensions")
        try:
            letters, units = meta.axis_letters(ms.get("axes", []), ndim)
            transforms = [meta.combined_transform(d, ms, ndim) for d in ms["datasets"]]
        except ValueError as exc:
            raise FormatError(self.path, f"{where}: {exc}") from exc
        unit, voxels, position = meta.calibration(letters, units, transforms)
        time_interval = None
        if "T" in letters and units[letters.index("T")] in meta.TIME_UNITS:
            t = letters.index("T")
            time_interval = transforms[0][0][t] * meta.TIME_UNITS[str(units[t])]
        perm = _canonical_order(letters)
        n_c = arrays[0].shape[letters.index("C")] if "C" in letters else 1
        md = ImageMetadata(
            axes="".join(letters[i] for i in perm),
            shape=tuple(int(arrays[0].shape[i]) for i in perm),
            dtype=np.dtype(arrays[0].dtype),
            voxel_size=voxels[0],
            unit=unit,
            channel_names=meta.channel_labels(content.get("omero"), n_c),
            name=name or str(ms.get("name") or prefix or self.path.name.split(".")[0]),
            series=len(self._series),
            position=position,
            time_interval=time_interval,
            extra={
                "ngff_version": version,
                "zarr_format": int(arrays[0].metadata.zarr_format),
                "group": prefix,
                "levels": [[int(a.shape[i]) for i in perm] for a in arrays],
                "level_voxel_sizes": [list(v) for v in voxels],
                "axis_names": [
                    str(a.get("name")) if isinstance(a, Mapping) else str(a)
                    for a in ms.get("axes", [])
                ],
            },
        )
        return _Series(tuple(f"{prefix}/{p}" if prefix else p for p in paths), perm, md)

    def _level(self, group: Any, path: str, where: str) -> Any:
        try:
            node = group[path]
        except Exception as exc:
            raise FormatError(
                self.path, f"{where}: level array {path!r} is missing or unreadable ({exc})"
            ) from exc
        if not isinstance(node, zarr.Array):
            raise FormatError(self.path, f"{where}: level {path!r} is not an array")
        return node

    def _plain_series(self, array: Any) -> _Series:
        attrs = self._attrs(array)
        names = self._axes_hint or attrs.get("axes") or attrs.get("_ARRAY_DIMENSIONS")
        if names is None and array.metadata.zarr_format == 3:
            names = array.metadata.dimension_names
        if not names or any(n is None for n in names):
            raise FormatError(
                self.path,
                "a plain Zarr array without OME-NGFF metadata and without axis names "
                "(give axes=..., or an 'axes' / '_ARRAY_DIMENSIONS' attribute)",
            )
        raw = list(names)
        letters: list[str] = []
        stack = None
        for n in raw:
            key = str(n).lower()
            if key in _STACK_NAMES and stack is None and "T" not in letters:
                letters.append("T")
                stack = str(n)
            elif key in _PLAIN_NAMES:
                letters.append(_PLAIN_NAMES[key])
            else:
                raise FormatError(
                    self.path, f"axis {n!r} has no scopeflow axis (T C Z Y X S, or a stack axis)"
                )
        if len(letters) != array.ndim or len(set(letters)) != len(letters):
            raise FormatError(
                self.path, f"axes {raw} do not fit an array of {array.ndim} dimensions"
            )
        perm = _canonical_order(letters)
        voxel = attrs.get("voxel_size") or attrs.get("pixel_size")
        if isinstance(voxel, int | float):
            voxel = [voxel, voxel]
        size = [float(v) for v in (voxel or [])] + [1.0] * 3
        n_c = array.shape[letters.index("C")] if "C" in letters else 1
        labels = attrs.get("channel_names") or attrs.get("channels") or []
        names_c = (
            tuple(str(c) for c in labels)
            if len(labels) == n_c
            else tuple(f"C{i}" for i in range(n_c))
        )
        md = ImageMetadata(
            axes="".join(letters[i] for i in perm),
            shape=tuple(int(array.shape[i]) for i in perm),
            dtype=np.dtype(array.dtype),
            voxel_size=(size[0], size[1], size[2]),
            unit=str(attrs.get("unit", "micrometer" if voxel else "pixel")),
            channel_names=names_c,
            name=self.path.name.split(".")[0],
            extra={
                "zarr_format": int(array.metadata.zarr_format),
                "axis_names": [str(n) for n in raw],
                "stack_axis": stack,
                "levels": [[int(array.shape[i]) for i in perm]],
            },
        )
        return _Series(("",), perm, md)

    @property
    def series_count(self) -> int:
        """Number of images in the store."""
        return len(self._series)

    def metadata(self, series: int = 0) -> ImageMetadata:
        """Metadata of ``series`` (level 0)."""
        self._check_series(series)
        return self._series[series].meta

    def to_dask(self, series: int = 0, level: int = 0) -> Any:
        """``series`` at pyramid ``level`` as a lazy array with axes ``metadata(series).axes``."""
        self._check_series(series)
        s = self._series[series]
        if not 0 <= level < len(s.levels):
            raise IndexError(
                f"{self.path}: level {level} out of range (the image has {len(s.levels)})"
            )
        component = s.levels[level]
        try:
            node = zarr.open_array(str(self.path / component), mode="r")
        except Exception as exc:
            raise FormatError(self.path, f"cannot open array {component or '/'!r}: {exc}") from exc
        chunks = _ZarrChunks(self.path, component, tuple(node.shape), np.dtype(node.dtype))
        name = "ome-zarr-" + tokenize(
            str(self.path), component, node.shape, str(node.dtype), node.chunks
        )
        arr = da.from_array(
            chunks,
            chunks=node.chunks,
            name=name,
            asarray=True,
            inline_array=True,
            meta=np.empty((0,) * node.ndim, dtype=node.dtype),
        )
        if s.perm != tuple(range(len(s.perm))):
            arr = arr.transpose(s.perm)
        return arr


@register_reader
class ZarrReader(OmeZarrReader):
    """The same reader under the format name ``"zarr"`` (chosen by name, never by suffix)."""

    format = "zarr"
    suffixes = ()


def _canonical_order(letters: list[str]) -> tuple[int, ...]:
    """Permutation that puts axis letters in scopeflow's order ``TCZYXS``."""
    return tuple(sorted(range(len(letters)), key=lambda i: AXES_ORDER.index(letters[i])))


__all__ = [
    "OmeZarrReader",
    "ZarrReader",
    "create_ome_zarr",
    "pyramid_steps",
    "write_ome_zarr",
    "write_ome_zarr_region",
]
