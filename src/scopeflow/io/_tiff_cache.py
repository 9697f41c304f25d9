"""Per-process cache of open TIFF files, shared by every lazy TIFF array of the process.

Lazy arrays carry only a path; each worker process opens a file once and keeps it (keyed by path,
modification time and size), closing evicted files when their last read ends.
"""

from __future__ import annotations

import atexit
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tifffile


@dataclass
class _Cached:
    tif: tifffile.TiffFile
    arrays: dict[int, Any] = field(default_factory=dict)
    checked: set[int] = field(default_factory=set)  # series whose damage checks passed
    users: int = 0
    evicted: bool = False


class _OpenFiles:
    """Per-process cache of open TIFF files, shared by every lazy array of the process.

    A file evicted (or released) while a read is using it is closed when that read ends.
    """

    def __init__(self, size: int = 8) -> None:
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._size = size
        self._files: OrderedDict[tuple[str, int, int], _Cached] = OrderedDict()

    @contextmanager
    def array(self, path: Path, series: int) -> Iterator[Any]:
        """The Zarr array of ``series`` of ``path``, opened once per process."""
        with self.file(path) as entry:
            with self._lock:
                if series not in entry.arrays:
                    import zarr  # only the chunked path needs it (≈ 0.2 s to import)

                    store = entry.tif.series[series].aszarr(level=0)
                    entry.arrays[series] = zarr.open(store, mode="r")
                arr = entry.arrays[series]
            yield arr

    @contextmanager
    def tiff(self, path: Path) -> Iterator[tifffile.TiffFile]:
        """The open :class:`tifffile.TiffFile` of ``path`` (reads must hold the lock)."""
        with self.file(path) as entry:
            yield entry.tif

    @property
    def lock(self) -> threading.Lock:
        """Serialises reads through one file handle (tifffile handles are not thread-safe)."""
        return self._read_lock

    @contextmanager
    def file(self, path: Path) -> Iterator[_Cached]:
        """The cache entry of ``path``, opened once per process, kept open while in use."""
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            entry = self._files.get(key)
            if entry is not None:
                self._files.move_to_end(key)
                entry.users += 1
        if entry is None:
            opened = _Cached(tifffile.TiffFile(path))
            with self._lock:
                entry = self._files.setdefault(key, opened)
                entry.users += 1
                while len(self._files) > self._size:
                    self._evict(next(iter(self._files)))
            if entry is not opened:
                opened.tif.close()
        try:
            yield entry
        finally:
            with self._lock:
                entry.users -= 1
                if entry.evicted and entry.users == 0:
                    entry.tif.close()

    def _evict(self, key: tuple[str, int, int]) -> None:
        entry = self._files.pop(key)
        entry.evicted = True
        if entry.users == 0:
            entry.tif.close()

    def release(self, path: Path | None = None) -> None:
        """Close the cached files of ``path`` (of every path if None)."""
        with self._lock:
            for key in [k for k in self._files if path is None or k[0] == str(path)]:
                self._evict(key)


OPEN_FILES = _OpenFiles()
atexit.register(OPEN_FILES.release)
