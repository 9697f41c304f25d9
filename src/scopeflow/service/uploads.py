"""Resumable uploads into a job's input tree (:class:`UploadStore`).

Pure logic on the file system (no HTTP), for one job::

    JOB/
      input/            the input tree the pipeline reads (finished files only)
      .uploads/         KEY.json (declared path, size, SHA-256) and KEY.part (bytes so far)

``begin`` declares a file, ``offset`` says how many bytes the server holds, ``append`` adds bytes
at exactly that offset, ``finish`` verifies size and SHA-256 and renames the part into
``input/`` atomically. The part lives under ``.uploads/`` rather than next to its target, so
that the input tree never holds half a file and a client file called ``x.part`` cannot collide
with an upload in progress. ``abort`` discards an unfinished upload; ``remove`` deletes a
finished input file (and the folders it leaves empty); ``has_files`` tells whether any is left.
Nothing is created until a file is declared: reading a job's uploads makes no folder.
Names follow the rules of :mod:`scopeflow.service.files`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from scopeflow.core.errors import BadPathError, InputNotFoundError
from scopeflow.core.fileio import atomic_write_json
from scopeflow.service.files import (
    SHA256_HEX,
    UPLOADS_DIR,
    DigestMismatchError,
    QuotaExceededError,
    UploadError,
    UploadExistsError,
    UploadOffsetError,
    regular_files,
    resolve_in,
    safe_relpath,
    used_bytes,
)
from scopeflow.service.states import JobState

__all__ = ["UploadStore"]


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
        The job's input tree; created by the first :meth:`begin`.
    state_dir
        Where upload records and parts are kept; default ``input_dir.parent / ".uploads"``.
        Must be on the same file system as ``input_dir`` (finished parts are renamed). Created
        by the first :meth:`begin` too: the other methods create nothing.
    """

    def __init__(self, input_dir: Path, *, state_dir: Path | None = None) -> None:
        self.input_dir = Path(input_dir)
        self.state_dir = Path(state_dir) if state_dir else self.input_dir.parent / UPLOADS_DIR

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
        self.input_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        target = resolve_in(self.input_dir, rel)
        digest = sha256.lower() if isinstance(sha256, str) else ""
        if not SHA256_HEX.match(digest):
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
            # a file this one replaces leaves with it: its bytes are not counted twice
            replaced = target.stat().st_size if overwrite and target.is_file() else 0
            if in_use - replaced + size > quota:
                raise QuotaExceededError(rel, size, in_use - replaced, quota)
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
        try:
            target = resolve_in(self.input_dir, rel)
        except FileNotFoundError:  # no input tree yet
            raise InputNotFoundError(str(rel), "input file") from None
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
        """Whether the input tree holds at least one finished file.

        Every regular file counts, also one named like an engine's temporary file: only
        uploads write into the input tree.
        """
        return next(regular_files(self.input_dir, skip_temp=False), None) is not None

    def input_state(self) -> JobState:
        """The state of a job that has not started, from its input (:meth:`JobState.for_input`)."""
        return JobState.for_input(uploads=self.has_uploads(), files=self.has_files())

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
