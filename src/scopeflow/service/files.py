"""A job's files: client-supplied names, sandboxed paths, quota and resumable uploads.

Pure logic on the file system (no HTTP): the API routes and the worker call these.

Path rules (:func:`safe_relpath`): a name is a relative POSIX path of at most 4096 bytes (UTF-8)
whose components are at most 255 bytes; no absolute paths, no ``.`` or ``..`` components, no empty
components (``a//b``, trailing ``/``), no backslashes, no Windows drive letters, no NUL or other
control characters. :func:`resolve_in` then joins the name to a job directory, refuses any
existing component that is a symlink and checks with :meth:`pathlib.Path.resolve` that the result
stays inside the directory.

Resumable uploads (:class:`UploadStore`), for one job::

    JOB/
      input/            the input tree the pipeline reads (finished files only)
      .uploads/         KEY.json (declared path, size, SHA-256) and KEY.part (bytes so far)

``begin`` declares a file, ``offset`` says how many bytes the server holds, ``append`` adds bytes
at exactly that offset, ``finish`` verifies size and SHA-256 and renames the part into
``input/`` atomically. The part lives under ``.uploads/`` rather than next to its target, so
that the input tree never holds half a file and a client file called ``x.part`` cannot collide
with an upload in progress. ``abort`` discards an unfinished upload; ``remove`` deletes a
finished input file (and the folders it leaves empty); ``has_files`` tells whether any is left.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import stat
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from scopeflow.core.errors import BadPathError, InputNotFoundError, ScopeflowError
from scopeflow.core.fileio import atomic_write_json

__all__ = [
    "MAX_COMPONENT_BYTES",
    "MAX_PATH_BYTES",
    "DigestMismatchError",
    "QuotaExceededError",
    "UploadError",
    "UploadExistsError",
    "UploadOffsetError",
    "UploadStore",
    "file_lock",
    "quota_lock",
    "regular_files",
    "resolve_in",
    "safe_relpath",
    "used_bytes",
]

MAX_COMPONENT_BYTES = 255
"""Longest file-name component, in UTF-8 bytes (the limit of common Linux file systems)."""
MAX_PATH_BYTES = 4096
"""Longest relative path, in UTF-8 bytes (``PATH_MAX`` on Linux)."""
UPLOADS_DIR = ".uploads"
"""Folder of a job (next to its input tree) holding upload records and parts."""

QUOTA_LOCK = ".quota.lock"
"""Lock file in a user's folder, held while checking and declaring against the quota."""

_DRIVE = re.compile(r"^[A-Za-z]:")
_ENGINE_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")
"""Names of the engine's half-written files (:func:`scopeflow.core.fileio.atomic_write_bytes`:
``tempfile.mkstemp(prefix=".NAME.", suffix=".tmp")``), renamed into place when complete."""
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# -- errors ------------------------------------------------------------------------------------


class UploadError(ScopeflowError, ValueError):
    """An upload request cannot be carried out.

    Parameters
    ----------
    path
        The file's relative path.
    problem
        What is wrong.
    """

    def __init__(self, path: str | PurePosixPath, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"upload of {self.path!r}: {problem}")


class UploadOffsetError(UploadError):
    """Bytes were sent for an offset other than the number of bytes the server holds."""

    def __init__(self, path: str | PurePosixPath, expected: int, got: int) -> None:
        self.expected = expected
        self.got = got
        super().__init__(path, f"offset {got} does not match the {expected} bytes held")


class DigestMismatchError(UploadError):
    """A finished file's SHA-256 differs from the declared one (the file was discarded)."""

    def __init__(self, path: str | PurePosixPath, expected: str, got: str) -> None:
        self.expected = expected
        self.got = got
        super().__init__(path, f"SHA-256 {got} does not match the declared {expected}")


class QuotaExceededError(UploadError):
    """Declaring this upload would take the user past their quota."""

    def __init__(self, path: str | PurePosixPath, size: int, used: int, quota: int) -> None:
        self.size = size
        self.used = used
        self.quota = quota
        super().__init__(path, f"{size} bytes would exceed the quota ({used} of {quota} used)")


class UploadExistsError(ScopeflowError, FileExistsError):
    """The target exists already, or the name clashes with the input tree.

    A file of that name (and ``overwrite`` was not asked for), a folder of that name, or one of
    the name's folders existing as a file.

    Parameters
    ----------
    path
        The file's relative path.
    problem
        What clashes; default "file exists already".
    """

    def __init__(self, path: str | PurePosixPath, problem: str | None = None) -> None:
        self.path = str(path)
        self.problem = problem or "file exists already"
        message = f"{self.problem}: {self.path}"
        super().__init__(message)
        self.args = (message,)

    def __str__(self) -> str:
        return str(self.args[0])


# -- names and paths ---------------------------------------------------------------------------


def safe_relpath(name: str) -> PurePosixPath:
    """Check a client-supplied relative file name and return it as a path.

    Parameters
    ----------
    name
        E.g. ``"tiff/t000_v00.tif"``.

    Returns
    -------
    PurePosixPath
        The same name, as a path (never normalised: a name that would need normalising is refused).

    Raises
    ------
    BadPathError
        The name breaks one of the path rules of this module.
    """
    if not isinstance(name, str):
        raise BadPathError(repr(name), "not a string")
    if not name:
        raise BadPathError(name, "empty name")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name):
        raise BadPathError(name, "control character (NUL, newline …) or unpaired surrogate")
    if "\\" in name:
        raise BadPathError(name, "backslash (use '/' between folders)")
    if name.startswith("/"):
        raise BadPathError(name, "absolute path")
    if _DRIVE.match(name):
        raise BadPathError(name, "Windows drive letter")
    if len(name.encode("utf-8")) > MAX_PATH_BYTES:
        raise BadPathError(name, f"longer than {MAX_PATH_BYTES} bytes")
    parts = name.split("/")
    for part in parts:
        if part == "":
            raise BadPathError(name, "empty path component ('//' or a trailing '/')")
        if part in (".", ".."):
            raise BadPathError(name, f"{part!r} path component")
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise BadPathError(name, f"a component is longer than {MAX_COMPONENT_BYTES} bytes")
    return PurePosixPath(*parts)


def resolve_in(root: Path, rel: str | PurePosixPath) -> Path:
    """Join a relative name to ``root`` and prove the result stays inside it.

    Parameters
    ----------
    root
        An existing directory (a job's input tree, a run directory).
    rel
        A client-supplied name (checked with :func:`safe_relpath`) or a path from it.

    Returns
    -------
    Path
        ``root.resolve() / rel``; it need not exist.

    Raises
    ------
    BadPathError
        The name is not acceptable, a component that exists is a symlink, or the result
        resolves to somewhere outside ``root``.
    """
    rel = safe_relpath(str(rel))
    base = Path(root).resolve(strict=True)
    current = base
    for part in rel.parts:
        current = current / part
        if current.is_symlink():
            raise BadPathError(str(rel), f"{current.relative_to(base)} is a symbolic link")
    if not current.resolve().is_relative_to(base):
        raise BadPathError(str(rel), "resolves to a location outside its folder")
    return current


def is_engine_temp(name: str) -> bool:
    """Whether ``name`` is one of the engine's half-written files (renamed when complete)."""
    return _ENGINE_TEMP.match(name) is not None


def regular_files(root: Path, *, skip_temp: bool = True) -> Iterator[tuple[Path, os.stat_result]]:
    """Every regular file under ``root`` with its ``lstat``, symbolic links not followed.

    A missing ``root`` (or a folder or file that vanishes while walking, such as an engine's
    temporary file renamed into place) yields nothing for it.

    Parameters
    ----------
    root
        The folder to walk.
    skip_temp
        Leave out the engine's half-written temporary files (``.NAME.XXXXXXXX.tmp``, see
        :func:`scopeflow.core.fileio.atomic_write_bytes`). Pass ``False`` to count them
        (they use disk space).
    """
    stack = [Path(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                if skip_temp and is_engine_temp(entry.name):
                    continue
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # renamed or deleted since scandir saw it
                continue
            yield Path(entry.path), st


def used_bytes(user_root: Path) -> int:
    """Bytes a user's directory holds, plus what declared uploads still have to send.

    Symbolic links are not followed (and count as nothing). A missing directory holds 0 bytes.

    Parameters
    ----------
    user_root
        The folder of all of one user's jobs (or of one job).
    """
    total = 0
    for path, st in regular_files(user_root, skip_temp=False):
        total += st.st_size
        if path.parent.name == UPLOADS_DIR and path.name.endswith(".json"):
            total += _pending_bytes(path)
    return total


def _pending_bytes(record: Path) -> int:
    """Declared size minus the bytes received so far, for one upload record."""
    try:
        size = int(json.loads(record.read_text(encoding="utf-8"))["size"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    try:
        held = record.with_suffix(".part").stat().st_size
    except FileNotFoundError:
        held = 0
    return max(0, size - held)


@contextmanager
def quota_lock(user_root: Path) -> Iterator[None]:
    """Hold a user's quota lock: wrap :func:`used_bytes` and :meth:`UploadStore.begin` in it.

    Two declarations that check the quota at the same time could otherwise both see room for
    their file and together go past it. The lock is an exclusive :func:`fcntl.flock` on
    ``user_root/.quota.lock`` (the folder is created when missing), so it holds across threads
    and processes; it is released when the block ends.

    Parameters
    ----------
    user_root
        The folder of all of one user's jobs.
    """
    Path(user_root).mkdir(parents=True, exist_ok=True)
    with file_lock(Path(user_root) / QUOTA_LOCK):
        yield


@contextmanager
def file_lock(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive :func:`fcntl.flock` on ``path`` (created when missing).

    It holds across threads and processes and ends with the block, or when the process dies
    (nothing stale is left behind). With ``wait=False`` the block runs at once and gets
    ``False`` when someone else holds the lock (it then holds nothing).
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


# -- incremental digests -----------------------------------------------------------------------


class _DigestCache:
    """SHA-256 state of parts being written, valid while the part is exactly as we left it.

    A part whose size, inode or mtime differ from what the cache saw (written by another process,
    or the service restarted) is hashed again from its first byte.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[Any, tuple[int, int, int]]] = OrderedDict()
        self._capacity = capacity

    @staticmethod
    def _stamp(st: os.stat_result) -> tuple[int, int, int]:
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def get(self, part: Path, st: os.stat_result) -> Any:
        """A hash object holding the part's bytes (fresh from the file if not cached)."""
        with self._lock:
            item = self._items.pop(str(part), None)
        if item is not None and item[1] == self._stamp(st):
            return item[0]
        digest = hashlib.sha256()
        with part.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        return digest

    def put(self, part: Path, digest: Any) -> None:
        """Remember ``digest`` as the state of ``part`` as it is now."""
        stamp = self._stamp(part.stat())
        with self._lock:
            self._items[str(part)] = (digest, stamp)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def drop(self, part: Path) -> None:
        """Forget ``part``."""
        with self._lock:
            self._items.pop(str(part), None)


_DIGESTS = _DigestCache()


# -- uploads -----------------------------------------------------------------------------------


class UploadStore:
    """Resumable uploads into one job's input tree.

    Parameters
    ----------
    input_dir
        The job's input tree; created when missing.
    state_dir
        Where upload records and parts are kept; default ``input_dir.parent / ".uploads"``.
        Must be on the same file system as ``input_dir`` (finished parts are renamed).
    """

    def __init__(self, input_dir: Path, *, state_dir: Path | None = None) -> None:
        self.input_dir = Path(input_dir)
        self.state_dir = Path(state_dir) if state_dir else self.input_dir.parent / UPLOADS_DIR
        self.input_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)

    # paths and records

    def _key(self, rel: PurePosixPath) -> str:
        return hashlib.sha256(str(rel).encode("utf-8")).hexdigest()[:32]

    def _record_path(self, rel: PurePosixPath) -> Path:
        return self.state_dir / f"{self._key(rel)}.json"

    def _part_path(self, rel: PurePosixPath) -> Path:
        return self.state_dir / f"{self._key(rel)}.part"

    def _check_clash(self, rel: PurePosixPath, target: Path) -> None:
        """Refuse a name whose target is a folder, or one of whose folders is not a folder.

        Raises
        ------
        UploadExistsError
            E.g. ``a/b`` when ``a`` is a file, or ``d`` when ``d/x`` was uploaded before.
        """
        base = self.input_dir.resolve()
        folder = base
        for part in rel.parts[:-1]:
            folder = folder / part
            if folder.exists() and not folder.is_dir():
                where = folder.relative_to(base).as_posix()
                raise UploadExistsError(rel, f"{where!r} is a file, not a folder")
        if target.is_dir():
            raise UploadExistsError(rel, "a folder of that name exists")

    def _record(self, rel: PurePosixPath) -> dict[str, Any]:
        try:
            record: dict[str, Any] = json.loads(self._record_path(rel).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UploadError(rel, "no upload in progress (call begin first)") from None
        return record

    # protocol

    def begin(
        self,
        path: str,
        size: int,
        sha256: str,
        *,
        quota: int | None = None,
        used: int | Callable[[], int] | None = None,
        overwrite: bool = False,
    ) -> int:
        """Declare a file; return the bytes already held (0, or more when resuming).

        Declaring the same path with the same size and digest again resumes the upload;
        a different declaration discards the bytes held so far.

        Parameters
        ----------
        path
            Relative name inside the input tree (see :func:`safe_relpath`).
        size
            The file's size in bytes.
        sha256
            The file's SHA-256, 64 hexadecimal digits.
        quota
            The user's quota in bytes; ``None`` for no limit.
        used
            Bytes the user uses now, or a function that counts them (called only when a new
            upload has to be checked against ``quota``, not when one resumes); default
            :func:`used_bytes` of this job's folder. Pass ``lambda: used_bytes(user_root)``
            to count all of the user's jobs.
        overwrite
            Replace an existing file of that name when the upload finishes.

        Raises
        ------
        BadPathError, UploadError, UploadExistsError, QuotaExceededError
        """
        rel = safe_relpath(path)
        target = resolve_in(self.input_dir, rel)
        digest = sha256.lower() if isinstance(sha256, str) else ""
        if not _SHA256.match(digest):
            raise UploadError(rel, "sha256 must be 64 hexadecimal digits")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise UploadError(rel, f"size must be a whole number >= 0, got {size!r}")
        self._check_clash(rel, target)
        if target.exists() and not overwrite:
            raise UploadExistsError(rel)
        record_path, part = self._record_path(rel), self._part_path(rel)
        if record_path.exists():
            old = self._record(rel)
            if old["size"] == size and old["sha256"] == digest:
                return self.offset(path)
            self.abort(path)
        if quota is not None:
            if used is None:
                in_use = used_bytes(self.input_dir.parent)
            else:
                in_use = used() if callable(used) else used
            if in_use + size > quota:
                raise QuotaExceededError(rel, size, in_use, quota)
        part.write_bytes(b"")
        atomic_write_json(
            record_path,
            {"path": str(rel), "size": size, "sha256": digest, "started": time.time()},
        )
        return 0

    def offset(self, path: str) -> int:
        """Bytes of ``path`` the server holds (the offset the next :meth:`append` must use)."""
        rel = safe_relpath(path)
        self._record(rel)
        part = self._part_path(rel)
        return part.stat().st_size if part.exists() else 0

    def append(self, path: str, offset: int, chunk: bytes | Iterable[bytes]) -> int:
        """Write bytes at ``offset``; return the new number of bytes held.

        An iterable is written piece by piece: when it breaks off (the client disconnected),
        the pieces written so far stay and :meth:`offset` tells where to continue.

        Raises
        ------
        UploadOffsetError
            ``offset`` is not the number of bytes held.
        UploadError
            The bytes would go past the declared size, or no upload was begun.
        """
        rel = safe_relpath(path)
        record = self._record(rel)
        part = self._part_path(rel)
        pieces: Iterable[bytes] = [chunk] if isinstance(chunk, bytes | bytearray) else chunk
        with part.open("r+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # one writer per part; the offset check is inside
            st = os.fstat(f.fileno())
            held = st.st_size
            if offset != held:
                raise UploadOffsetError(rel, held, offset)
            digest = _DIGESTS.get(part, st)
            f.seek(held)
            try:
                for piece in pieces:
                    if held + len(piece) > record["size"]:
                        raise UploadError(
                            rel, f"more bytes than the declared size {record['size']}"
                        )
                    f.write(piece)
                    digest.update(piece)
                    held += len(piece)
            finally:
                f.flush()
                if os.fstat(f.fileno()).st_size == held:
                    _DIGESTS.put(part, digest)
                else:  # a failed write left bytes we did not hash
                    _DIGESTS.drop(part)
        return held

    def finish(self, path: str) -> Path:
        """Verify size and SHA-256, and move the file into the input tree.

        Returns
        -------
        Path
            The finished file.

        Raises
        ------
        UploadError
            Not all declared bytes have arrived (the upload stays resumable).
        DigestMismatchError
            The bytes are not the declared file: the part and its record are deleted.
        """
        rel = safe_relpath(path)
        record = self._record(rel)
        part = self._part_path(rel)
        with part.open("rb") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            st = os.fstat(f.fileno())
            if st.st_size != record["size"]:
                raise UploadError(rel, f"{st.st_size} of {record['size']} bytes received")
            got = _DIGESTS.get(part, st).hexdigest()
            if got != record["sha256"]:
                self._discard(rel)
                raise DigestMismatchError(rel, record["sha256"], got)
            os.fsync(f.fileno())
            target = resolve_in(self.input_dir, rel)  # again: the tree may have changed
            self._check_clash(rel, target)
            try:
                self._place(part, target)
            except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
                # the tree changed between the check and the rename; the upload stays
                raise UploadExistsError(
                    rel, f"the name clashes with the input tree ({exc.strerror})"
                ) from None
        _DIGESTS.drop(part)
        self._record_path(rel).unlink(missing_ok=True)
        return target

    @staticmethod
    def _place(part: Path, target: Path) -> None:
        """Rename ``part`` to ``target``, making its folders (twice if a delete pruned one)."""
        for attempt in (1, 2):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                part.replace(target)
                return
            except FileNotFoundError:  # a folder removed by :meth:`remove` in between
                if attempt == 2 or not part.exists():
                    raise

    def abort(self, path: str) -> None:
        """Forget an upload and delete the bytes held (nothing happens if there is none)."""
        self._discard(safe_relpath(path))

    def _discard(self, rel: PurePosixPath) -> None:
        part = self._part_path(rel)
        _DIGESTS.drop(part)
        part.unlink(missing_ok=True)
        self._record_path(rel).unlink(missing_ok=True)

    def remove(self, path: str) -> int:
        """Delete one finished input file; return its size in bytes.

        The folders it leaves empty are removed too, up to (not including) the input tree. An
        unfinished upload of the same name is left alone (:meth:`abort` discards that).

        Parameters
        ----------
        path
            Relative name inside the input tree (see :func:`safe_relpath`).

        Raises
        ------
        BadPathError
            The name breaks the path rules, goes through or names a symbolic link, leads out
            of the input tree, or names a folder or anything but a regular file.
        InputNotFoundError
            There is no file of that name.
        """
        rel = safe_relpath(path)
        target = resolve_in(self.input_dir, rel)
        try:
            st = target.lstat()
            if stat.S_ISDIR(st.st_mode):
                raise BadPathError(str(rel), "is a folder (input files are deleted one by one)")
            if not stat.S_ISREG(st.st_mode):
                raise BadPathError(str(rel), "is not a regular file")
            target.unlink()
        except (FileNotFoundError, NotADirectoryError):
            raise InputNotFoundError(str(rel), "input file") from None
        base, folder = self.input_dir.resolve(), target.parent
        while folder != base and folder.is_relative_to(base):
            try:
                folder.rmdir()
            except FileNotFoundError:  # removed meanwhile: go on with its parent
                pass
            except OSError:  # not empty: the folders above are not either
                break
            folder = folder.parent
        return st.st_size

    def has_files(self) -> bool:
        """Whether the input tree holds at least one finished file."""
        return next(regular_files(self.input_dir), None) is not None

    def pending(self, path: str) -> bool:
        """Whether an upload of ``path`` is unfinished."""
        return self._record_path(safe_relpath(path)).exists()

    def has_uploads(self) -> bool:
        """Whether any upload is unfinished."""
        return next(self.state_dir.glob("*.json"), None) is not None

    def status(self) -> list[dict[str, Any]]:
        """Uploads in progress: ``path``, ``size``, ``sha256``, ``offset``, ``started``."""
        out = []
        for record_path in sorted(self.state_dir.glob("*.json")):
            try:
                record = json.loads(record_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            part = record_path.with_suffix(".part")
            held = part.stat().st_size if part.exists() else 0
            out.append({**record, "offset": held})
        return sorted(out, key=lambda r: str(r["path"]))
