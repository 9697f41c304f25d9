"""The reader interface every image format implements, and the registry of readers.

A file may hold several *series* (CZI scenes, tiles or views; OME-TIFF images; BDV view setups and
time points). Each series is one lazy :class:`dask.array.Array` whose axes are named by
:attr:`ImageMetadata.axes` (letters from ``T C Z Y X S``; ``S`` = samples of an RGB pixel) plus its
:class:`ImageMetadata`. Readers never load pixel data when opened: only metadata, and only the
chunks a computation asks for.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import numpy as np

from scopeflow.core import FormatError, InputNotFoundError, UnknownNameError

AXES_ORDER = "TCZYXS"
"""Canonical order of axis letters; a series' axes are a subsequence of it."""


@dataclass(frozen=True)
class ImageMetadata:
    """What scopeflow knows about one series of an image file.

    Attributes
    ----------
    axes
        Axis letters of the array, a subsequence of ``"TCZYXS"`` (e.g. ``"TCZYX"``, ``"YXS"``).
    shape
        Array shape, one entry per axis.
    dtype
        Pixel type.
    voxel_size
        Physical size of a voxel as ``(x, y, z)`` in ``unit``; 1.0 where the file says nothing.
    unit
        Unit of ``voxel_size`` and ``position`` (``"micrometer"`` when known; ``"pixel"`` if not).
    channel_names
        One name per channel (``C`` axis, or one name when there is no ``C`` axis).
    name
        Name of the series (scene / tile / view / file stem).
    series
        Index of this series in the file.
    position
        Stage position of the series origin ``(x, y, z)`` in ``unit`` (tiles, scenes), if known.
    angle
        Rotation angle of the view in degrees (multiview light-sheet), if known.
    illumination
        Illumination side / index, if known.
    tile
        Tile index, if known.
    scene
        Scene index, if known.
    time_interval
        Seconds between time points, if known.
    extra
        Format-specific metadata that has no field here (JSON-serialisable).
    """

    axes: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    unit: str = "pixel"
    channel_names: tuple[str, ...] = ()
    name: str = ""
    series: int = 0
    position: tuple[float, float, float] | None = None
    angle: float | None = None
    illumination: int | None = None
    tile: int | None = None
    scene: int | None = None
    time_interval: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.axes) != len(self.shape):
            raise ValueError(f"axes {self.axes!r} do not match shape {self.shape}")
        it = iter(AXES_ORDER)
        if not all(ax in it for ax in self.axes) or len(set(self.axes)) != len(self.axes):
            raise ValueError(f"axes {self.axes!r} must be a subsequence of {AXES_ORDER!r}")

    def size(self, axis: str) -> int:
        """Length of ``axis`` (1 if the series has no such axis)."""
        return self.shape[self.axes.index(axis)] if axis in self.axes else 1

    @property
    def nbytes(self) -> int:
        """Size of the whole series in memory."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


class ImageReader(abc.ABC):
    """Lazy reader of one image file (or folder, for Zarr / BDV).

    Subclasses declare ``format`` (registry name) and ``suffixes`` and implement
    :meth:`_open`, :meth:`metadata` and :meth:`to_dask`. Opening a file that is missing raises
    :class:`~scopeflow.core.InputNotFoundError`; one that is corrupt or not of this format raises
    :class:`~scopeflow.core.FormatError` naming the file and the problem — never a partial read.
    """

    format: ClassVar[str] = ""
    suffixes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputNotFoundError(self.path, f"{self.format} image")
        try:
            self._open()
        except (FormatError, InputNotFoundError):
            raise
        except Exception as exc:
            raise FormatError(self.path, f"cannot read as {self.format}: {exc}") from exc

    @classmethod
    def claims(cls, path: Path) -> bool:
        """Whether this reader is meant for ``path`` (by its name; content is checked on open)."""
        name = path.name.lower().rstrip("/")
        return any(name.endswith(s) for s in cls.suffixes)

    @abc.abstractmethod
    def _open(self) -> None:
        """Open the file and read its metadata (called by ``__init__``)."""

    @property
    @abc.abstractmethod
    def series_count(self) -> int:
        """Number of series in the file."""

    @abc.abstractmethod
    def metadata(self, series: int = 0) -> ImageMetadata:
        """Metadata of ``series``."""

    @abc.abstractmethod
    def to_dask(self, series: int = 0) -> Any:
        """``series`` as a lazy :class:`dask.array.Array` with axes ``metadata(series).axes``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release open file handles (lazy arrays may reopen the file when computed)."""

    def __enter__(self) -> ImageReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[ImageMetadata]:
        return (self.metadata(i) for i in range(self.series_count))

    def _check_series(self, series: int) -> None:
        if not 0 <= series < self.series_count:
            raise IndexError(
                f"{self.path}: series {series} out of range (the file has {self.series_count})"
            )


_READERS: dict[str, type[ImageReader]] = {}
# modules whose import registers the built-in readers; imported when the registry is first asked
_READER_MODULES = (
    "scopeflow.io._tiff",
    "scopeflow.io._czi",
    "scopeflow.io._omezarr",
    "scopeflow.io._bdv_reader",
)


def _load_readers() -> None:
    for module in _READER_MODULES:  # cheap once imported: a dict lookup in sys.modules
        importlib.import_module(module)


def register_reader(cls: type[ImageReader]) -> type[ImageReader]:
    """Class decorator: make ``cls`` available under ``cls.format``."""
    if not cls.format:
        raise ValueError(f"{cls.__name__} declares no format name")
    _READERS[cls.format] = cls
    return cls


def reader_formats() -> list[str]:
    """Names of the registered formats."""
    _load_readers()
    return sorted(_READERS)


def reader_class(path: str | Path, format: str | None = None) -> type[ImageReader]:
    """The reader class for ``path``: by ``format`` name, or by the file name's suffix.

    Raises
    ------
    UnknownNameError
        ``format`` is not a registered format.
    FormatError
        No reader claims the file name (unknown extension).
    """
    _load_readers()
    if format is not None:
        try:
            return _READERS[format]
        except KeyError:
            raise UnknownNameError("image format", format, reader_formats()) from None
    path = Path(path)
    # longest suffix wins: ".ome.tif" before ".tif", ".ome.zarr" before ".zarr"
    matches = [
        (max(len(s) for s in cls.suffixes if path.name.lower().endswith(s)), cls)
        for cls in _READERS.values()
        if cls.claims(path)
    ]
    if not matches:
        known = sorted({s for cls in _READERS.values() for s in cls.suffixes})
        raise FormatError(path, f"unknown image file type; scopeflow reads {', '.join(known)}")
    return max(matches, key=lambda m: m[0])[1]


def open_image(path: str | Path, format: str | None = None) -> ImageReader:
    """Open ``path`` with the reader for its format (see :func:`reader_class`)."""
    return reader_class(path, format)(path)
