"""Downloads of a run's results: listing, HTTP byte ranges, and a streamed zip.

The results of a run are the files under its ``outputs/`` folder plus ``summary.json`` (see
:mod:`scopeflow.engine.rundir`); paths are relative to the run directory. Symbolic links are
never listed nor followed.

Memory stays bounded whatever the file sizes: :func:`iter_file` reads one chunk at a time and
:func:`zip_listed` writes the archive into a small buffer that it empties after every chunk.
"""

from __future__ import annotations

import os
import re
import stat
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from scopeflow.core import runlayout as layout
from scopeflow.core.errors import BadPathError, ScopeflowError
from scopeflow.service.files import is_engine_temp, regular_files, resolve_in, safe_relpath

__all__ = [
    "CHUNK",
    "ByteRange",
    "RangeNotSatisfiableError",
    "iter_file",
    "list_results",
    "parse_range",
    "zip_listed",
]

CHUNK = 1 << 20
"""Default bytes per chunk of a download (1 MiB)."""

_RANGE = re.compile(r"^bytes\s*=\s*(\d*)\s*-\s*(\d*)$", re.IGNORECASE)
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class RangeNotSatisfiableError(ScopeflowError, ValueError):
    """An HTTP ``Range`` header that cannot be served (answer 416 with ``bytes */size``).

    Parameters
    ----------
    header
        The header's value.
    size
        The file's size in bytes.
    """

    def __init__(self, header: str, size: int) -> None:
        self.header = header
        self.size = size
        super().__init__(f"range {header!r} cannot be served from a file of {size} bytes")

    @property
    def content_range(self) -> str:
        """The ``Content-Range`` header of the 416 answer."""
        return f"bytes */{self.size}"


class ByteRange(NamedTuple):
    """A byte range of a file: ``start`` and ``end`` both included, as in HTTP."""

    start: int
    end: int

    @property
    def length(self) -> int:
        """Number of bytes (``Content-Length``)."""
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        """The ``Content-Range`` header of a 206 answer, e.g. ``bytes 0-99/1000``."""
        return f"bytes {self.start}-{self.end}/{size}"


def result_path(run_dir: Path, rel: str) -> Path | None:
    """The file of result ``rel`` (a :func:`list_results` path), or None if it is not one.

    The same rule as :func:`list_results` for one name, without walking the run: ``summary.json``
    or a regular file (not a symbolic link, not an engine's half-written file) under
    ``outputs/``, inside the run directory.
    """
    parts = PurePosixPath(rel).parts
    if rel != layout.SUMMARY and (len(parts) < 2 or parts[0] != layout.OUTPUTS):
        return None
    if is_engine_temp(parts[-1]):
        return None
    try:
        target = resolve_in(Path(run_dir), rel)
        st = target.lstat()
    except (BadPathError, OSError):
        return None
    return target if stat.S_ISREG(st.st_mode) else None


def list_results(run_dir: Path, *, prefix: str | None = None) -> list[dict[str, Any]]:
    """The result files of a run: ``outputs/**`` and ``summary.json``, or those of one folder.

    Parameters
    ----------
    run_dir
        The run directory.
    prefix
        A folder of the results, relative to the run directory (e.g.
        ``"outputs/fused.ome.zarr"``): only the result files under it (at any depth). The name
        is checked with :func:`~scopeflow.service.files.safe_relpath`; a folder that is missing,
        is not under ``outputs/``, or goes through a symbolic link holds no results (an empty
        list). A file's own path is not a folder: it lists nothing.

    Returns
    -------
    list of dict
        ``{"path": relative POSIX path, "size": bytes, "mtime": seconds since the epoch}``,
        sorted by path. Regular files only; symbolic links are left out.

    Raises
    ------
    BadPathError
        ``prefix`` is not an acceptable relative name (absolute, ``..``, empty …).
    """
    run_dir = Path(run_dir)
    found: list[dict[str, Any]] = []

    def add(path: Path, st: os.stat_result) -> None:
        rel = path.relative_to(run_dir).as_posix()
        found.append({"path": rel, "size": st.st_size, "mtime": st.st_mtime})

    if prefix is not None:
        folder = _results_folder(run_dir, safe_relpath(prefix))
        for path, st in regular_files(folder) if folder is not None else ():
            add(path, st)
        return sorted(found, key=lambda r: str(r["path"]))
    summary = run_dir / layout.SUMMARY
    try:
        st = summary.lstat()
    except FileNotFoundError:
        pass
    else:
        if stat.S_ISREG(st.st_mode):
            add(summary, st)
    outputs = run_dir / layout.OUTPUTS
    if not outputs.is_symlink():  # as result_path: nothing is served through a link
        for path, st in regular_files(outputs):
            add(path, st)
    return sorted(found, key=lambda r: str(r["path"]))


def _results_folder(run_dir: Path, rel: PurePosixPath) -> Path | None:
    """``run_dir / rel`` when it is a folder of results, else ``None``.

    A folder of results lies under ``outputs/`` and none of its components is a symbolic
    link (:func:`~scopeflow.service.files.regular_files` would follow one at its root).
    """
    if rel.parts[0] != layout.OUTPUTS:
        return None
    try:
        folder = resolve_in(run_dir, rel)  # a symlinked component, or a path leaving the run
    except (BadPathError, OSError):  # OSError: no run directory yet
        return None
    return run_dir / rel if folder.is_dir() else None


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """Parse an HTTP ``Range`` header for one file.

    Accepted: one range in bytes, ``bytes=a-b``, ``bytes=a-`` (from ``a`` to the end) and
    ``bytes=-n`` (the last ``n`` bytes). An end past the file is cut to the file's last byte
    (RFC 9110, 14.1.2).

    Parameters
    ----------
    header
        The header's value; ``None`` or empty for the whole file.
    size
        The file's size in bytes.

    Returns
    -------
    ByteRange or None
        The range (both ends included), or ``None`` when there is no header.

    Raises
    ------
    RangeNotSatisfiableError
        Malformed, several ranges, another unit than bytes, ``a > b``, a start at or past the
        end of the file, or ``bytes=-0``.
    """
    if header is None or not header.strip():
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        raise RangeNotSatisfiableError(header, size)
    first, last = match.group(1), match.group(2)
    if first:
        start = int(first)
        end = int(last) if last else size - 1
        if (last and end < start) or start >= size:
            raise RangeNotSatisfiableError(header, size)
        return ByteRange(start, min(end, size - 1))
    if not last or int(last) == 0 or size == 0:
        raise RangeNotSatisfiableError(header, size)
    return ByteRange(max(0, size - int(last)), size - 1)


def iter_file(
    path: Path, start: int = 0, end: int | None = None, *, chunk: int = CHUNK
) -> Iterator[bytes]:
    """Yield the bytes ``start`` … ``end`` of a file (both included), ``chunk`` bytes at a time.

    Parameters
    ----------
    path
        The file.
    start
        First byte.
    end
        Last byte (included, as in :class:`ByteRange`); default the file's last byte.
    chunk
        Most bytes per piece.
    """
    with Path(path).open("rb") as f:
        if end is None:
            end = os.fstat(f.fileno()).st_size - 1
        f.seek(start)
        left = end - start + 1
        while left > 0:
            data = f.read(min(chunk, left))
            if not data:
                break
            left -= len(data)
            yield data


class _Sink:
    """A write-only, unseekable stream that collects bytes until they are drained."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing to flush (the bytes wait for :meth:`drain`)."""

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def zip_listed(
    run_dir: Path, listed: list[dict[str, Any]], *, compress: bool = False, chunk: int = CHUNK
) -> Iterator[bytes]:
    """Stream a zip archive of result files as :func:`list_results` returned them.

    No file is held in memory: the archive is written into a small buffer emptied after every
    chunk. ZIP64 entries are used for files that need them (over 2 GiB); sizes go into data
    descriptors (a streamed archive), which every common unzip tool reads.

    Parameters
    ----------
    run_dir
        The run directory; archive names are relative to it.
    listed
        The files, as :func:`list_results` lists them. Their names were found by walking the
        run (regular files, no symbolic link), so they are not checked again one by one: on a
        run of 100,000 Zarr chunks that check took longer than the listing itself.
    compress
        Deflate the entries (default: store them; microscopy images rarely compress well and
        storing is much faster).
    chunk
        Bytes read from a file at a time.

    Yields
    ------
    bytes
        Consecutive pieces of the archive (at most about ``chunk`` bytes each).
    """
    paths = [(str(r["path"]), Path(run_dir) / str(r["path"])) for r in listed]
    return _zip_stream(paths, compress=compress, chunk=chunk)


def _zip_stream(paths: list[tuple[str, Path]], *, compress: bool, chunk: int) -> Iterator[bytes]:
    """The archive of ``(name, file)`` pairs, piece by piece."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=method, allowZip64=True) as zf:  # type: ignore[call-overload]
        for name, path in paths:
            st = path.stat()
            info = zipfile.ZipInfo(name, date_time=_zip_time(st.st_mtime))
            info.compress_type = method
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            # deflate can grow incompressible data a little: decide on ZIP64 with a margin
            large = st.st_size + st.st_size // 100 + (1 << 20) >= zipfile.ZIP64_LIMIT
            with zf.open(info, "w", force_zip64=large) as entry, path.open("rb") as src:
                while data := src.read(chunk):
                    entry.write(data)
                    if out := sink.drain():
                        yield out
            if out := sink.drain():
                yield out
    if out := sink.drain():
        yield out


def _zip_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    """A zip entry's date and time (local time, not before 1980)."""
    t = time.localtime(mtime)
    stamp = (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
    return max(stamp, _ZIP_EPOCH)
