"""A job's files: client-supplied names, sandboxed paths, quota and locks.

Pure logic on the file system (no HTTP): the API routes and the worker call these. Resumable
uploads are in :mod:`scopeflow.service.uploads`.

Path rules (:func:`safe_relpath`): a name is a relative POSIX path of at most 4096 bytes (UTF-8)
whose components are at most 255 bytes; no absolute paths, no ``.`` or ``..`` components, no empty
components (``a//b``, trailing ``/``), no backslashes, no Windows drive letters, no NUL or other
control characters. :func:`resolve_in` then joins the name to a job directory, refuses any
existing component that is a symlink and checks with :meth:`pathlib.Path.resolve` that the result
stays inside the directory.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from scopeflow.core.errors import BadPathError, ScopeflowError

__all__ = [
    "MAX_COMPONENT_BYTES",
    "MAX_PATH_BYTES",
    "DigestMismatchError",
    "QuotaExceededError",
    "SettledSizes",
    "UploadError",
    "UploadExistsError",
    "UploadOffsetError",
    "file_lock",
    "path_problem",
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
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
"""A SHA-256 as the uploads declare it: 64 lower-case hexadecimal digits."""


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


def path_problem(name: str, *, fragment: bool = False) -> str | None:
    """The first path rule of this module that ``name`` breaks, or ``None``.

    Parameters
    ----------
    name
        A client-supplied relative file name.
    fragment
        ``name`` is part of a longer name (a parameter value that a template's pattern turns
        into a path): only the rules that matter inside a name apply — no control character,
        no backslash, no leading ``/``, no ``..`` component. Empty strings, ``.``, ``//``,
        drive letters and lengths are left to the whole name.
    """
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name):
        return "control character (NUL, newline …) or unpaired surrogate"
    if "\\" in name:
        return "backslash (use '/' between folders)"
    if name.startswith("/"):
        return "absolute path (a leading '/')"
    parts = name.split("/")
    if ".." in parts:
        return "'..' path component"
    if fragment:
        return None
    if not name:
        return "empty name"
    if _DRIVE.match(name):
        return "Windows drive letter"
    if len(name.encode("utf-8")) > MAX_PATH_BYTES:
        return f"longer than {MAX_PATH_BYTES} bytes"
    for part in parts:
        if part == "":
            return "empty path component ('//' or a trailing '/')"
        if part == ".":
            return "'.' path component"
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            return f"a component is longer than {MAX_COMPONENT_BYTES} bytes"
    return None


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
        The name breaks one of the path rules of this module (:func:`path_problem`).
    """
    if not isinstance(name, str):
        raise BadPathError(repr(name), "not a string")
    problem = path_problem(name)
    if problem is not None:
        raise BadPathError(name, problem)
    return PurePosixPath(*name.split("/"))


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


def used_bytes(
    user_root: Path,
    *,
    settled: Mapping[str, Hashable] | None = None,
    sizes: SettledSizes | None = None,
) -> int:
    """Bytes a user's directory holds, plus what declared uploads still have to send.

    Symbolic links are not followed (and count as nothing). A missing directory holds 0 bytes.

    Parameters
    ----------
    user_root
        The folder of all of one user's jobs (or of one job).
    settled
        Folders directly under ``user_root`` that no longer change (jobs that finished a while
        ago), by name, each with a version that changes whenever the folder may have (the
        job's last update): their sizes come from ``sizes`` instead of a walk.
    sizes
        The remembered sizes of settled folders (needed with ``settled``).
    """
    if not settled or sizes is None:
        return _tree_bytes(Path(user_root))
    total = 0
    try:
        entries = list(os.scandir(user_root))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                path = Path(entry.path)
                version = settled.get(entry.name)
                total += _tree_bytes(path) if version is None else sizes.size(path, version)
            elif entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
        except FileNotFoundError:  # removed since scandir saw it
            continue
    return total


def _tree_bytes(root: Path) -> int:
    """Every regular file under ``root`` plus the bytes its declared uploads still need."""
    total = 0
    for path, st in regular_files(root, skip_temp=False):
        total += st.st_size
        if path.parent.name == UPLOADS_DIR and path.name.endswith(".json"):
            total += _pending_bytes(path)
    return total


class SettledSizes:
    """Sizes of folders that no longer change, each walked once per version.

    Used by :func:`used_bytes` for a user's finished jobs, so that declaring an upload does not
    walk every result file the user keeps. Thread-safe; the oldest entries are forgotten
    beyond ``capacity``.
    """

    def __init__(self, capacity: int = 65536) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, Hashable], int] = OrderedDict()
        self._capacity = capacity

    def size(self, folder: Path, version: Hashable) -> int:
        """Bytes under ``folder`` as of ``version`` (walked when not known; 0 when gone)."""
        key = (str(folder), version)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                known = self._items[key]
                return known if folder.is_dir() else 0
        total = _tree_bytes(folder)
        with self._lock:
            self._items[key] = total
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
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
