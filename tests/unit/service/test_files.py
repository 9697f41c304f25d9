"""Job files: path rules, sandboxing, quota and resumable uploads."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from scopeflow.core.errors import BadPathError, InputNotFoundError
from scopeflow.service.files import (
    QUOTA_LOCK,
    DigestMismatchError,
    QuotaExceededError,
    SettledSizes,
    UploadError,
    UploadExistsError,
    UploadOffsetError,
    file_lock,
    quota_lock,
    regular_files,
    resolve_in,
    safe_relpath,
    used_bytes,
)
from scopeflow.service.uploads import UploadStore

BAD_NAMES = [
    "",
    "../x",
    "..",
    ".",
    "./a",
    "a/./b",
    "/etc/passwd",
    "a/../../b",
    "a/..",
    "C:\\x",
    "C:x",
    "c:/x",
    "a\\..\\b",
    "a\\b",
    "a\x00b",
    "a\nb",
    "a\tb",
    "a\x7fb",
    "a//b",
    "a/",
    "/",
    "x" * 256,
    "/".join(["d" * 200] * 21),
    "a\udcffb",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(BadPathError) as exc:
        safe_relpath(name)
    assert isinstance(exc.value, ValueError)
    assert exc.value.name == name


@pytest.mark.parametrize(
    "name",
    ["a", "a/b/c.tif", "tiff/t000_v00.tif", ".hidden", "a..b", "..a", "ä ö/ü.tif", "x" * 255],
)
def test_good_names(name: str) -> None:
    assert safe_relpath(name) == PurePosixPath(name)
    assert str(safe_relpath(name)) == name


def test_non_string_name() -> None:
    with pytest.raises(BadPathError, match="not a string"):
        safe_relpath(b"a")  # type: ignore[arg-type]


def test_resolve_in(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    assert resolve_in(tmp_path, "sub/new.tif") == tmp_path.resolve() / "sub" / "new.tif"
    for name in ("../x", "/etc/passwd", "a/../../b", "C:\\x", "a\\..\\b", "a\x00b"):
        with pytest.raises(BadPathError):
            resolve_in(tmp_path, name)


def test_symlinks_inside_the_job_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret", encoding="utf-8")
    job = tmp_path / "job"
    job.mkdir()
    (job / "link").symlink_to(outside)
    (job / "file_link").symlink_to(outside / "secret")
    (job / "inner").symlink_to(job)  # even one that stays inside
    for name in ("link/secret", "link/new", "file_link", "inner/x"):
        with pytest.raises(BadPathError, match="symbolic link"):
            resolve_in(job, name)


def test_root_may_itself_be_reached_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    alias = tmp_path / "alias"
    alias.symlink_to(real)
    assert resolve_in(alias, "a.txt") == real / "a.txt"


# -- uploads ------------------------------------------------------------------------------------


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> UploadStore:
    (tmp_path / "job" / "input").mkdir(parents=True)  # as a new job has it (JobFiles.create)
    return UploadStore(tmp_path / "job" / "input")


def interrupted(data: bytes, after: int) -> Iterator[bytes]:
    """The body of a request whose connection drops after ``after`` bytes."""
    yield data[:after]
    raise ConnectionResetError("client went away")


def test_upload_interrupted_and_resumed(store: UploadStore) -> None:
    data = os.urandom(300_000)
    assert store.begin("tiff/t000.tif", len(data), sha(data)) == 0
    assert store.append("tiff/t000.tif", 0, data[:100_000]) == 100_000
    with pytest.raises(ConnectionResetError):
        store.append("tiff/t000.tif", 100_000, interrupted(data[100_000:], 55_555))
    held = store.offset("tiff/t000.tif")
    assert held == 155_555
    # the client comes back (a new store object, as in a new request) and declares again
    again = UploadStore(store.input_dir)
    assert again.begin("tiff/t000.tif", len(data), sha(data)) == held
    assert [s["offset"] for s in again.status()] == [held]
    again.append("tiff/t000.tif", held, iter([data[held:200_000], data[200_000:]]))
    target = again.finish("tiff/t000.tif")
    assert target == store.input_dir.resolve() / "tiff" / "t000.tif"
    assert target.read_bytes() == data
    assert again.status() == []
    assert sorted(p.name for p in store.state_dir.iterdir()) == []
    assert [p.name for p in store.input_dir.rglob("*")] == ["tiff", "t000.tif"]


def test_digest_computed_again_after_a_restart(store: UploadStore) -> None:
    from scopeflow.service import uploads

    data = os.urandom(50_000)
    store.begin("a.bin", len(data), sha(data))
    store.append("a.bin", 0, data[:20_000])
    uploads._DIGESTS._items.clear()  # as after a restart of the service
    store.append("a.bin", 20_000, data[20_000:])
    uploads._DIGESTS._items.clear()
    assert store.finish("a.bin").read_bytes() == data


def test_wrong_digest_discards_everything(store: UploadStore) -> None:
    data = b"x" * 1000
    store.begin("a.bin", len(data), sha(b"y" * 1000))
    store.append("a.bin", 0, data)
    with pytest.raises(DigestMismatchError) as exc:
        store.finish("a.bin")
    assert exc.value.got == sha(data)
    assert not (store.input_dir / "a.bin").exists()
    assert list(store.state_dir.iterdir()) == []
    with pytest.raises(UploadError, match="no upload in progress"):
        store.offset("a.bin")


def test_wrong_offset_says_the_expected_one(store: UploadStore) -> None:
    store.begin("a.bin", 100, sha(b"z" * 100))
    store.append("a.bin", 0, b"z" * 40)
    with pytest.raises(UploadOffsetError) as exc:
        store.append("a.bin", 30, b"z" * 10)
    assert exc.value.expected == 40
    assert exc.value.got == 30
    assert store.offset("a.bin") == 40


def test_no_bytes_past_the_declared_size(store: UploadStore) -> None:
    store.begin("a.bin", 10, sha(b"0123456789"))
    with pytest.raises(UploadError, match="more bytes than the declared size 10"):
        store.append("a.bin", 0, b"0123456789A")
    assert store.offset("a.bin") == 0
    with pytest.raises(UploadError, match="5 of 10 bytes"):
        store.append("a.bin", 0, b"01234")
        store.finish("a.bin")
    store.append("a.bin", 5, b"56789")
    assert store.finish("a.bin").read_bytes() == b"0123456789"


def test_begin_checks(store: UploadStore) -> None:
    with pytest.raises(UploadError, match="64 hexadecimal"):
        store.begin("a.bin", 1, "abc")
    with pytest.raises(UploadError, match="whole number"):
        store.begin("a.bin", -1, sha(b""))
    with pytest.raises(BadPathError):
        store.begin("../a.bin", 1, sha(b"a"))
    with pytest.raises(UploadError, match="no upload in progress"):
        store.append("b.bin", 0, b"b")
    store.begin("a.bin", 1, sha(b"a"))
    store.append("a.bin", 0, b"a")
    store.finish("a.bin")
    with pytest.raises(UploadExistsError):
        store.begin("a.bin", 1, sha(b"b"))
    store.begin("a.bin", 1, sha(b"b"), overwrite=True)
    store.append("a.bin", 0, b"b")
    assert store.finish("a.bin").read_bytes() == b"b"
    store.begin("empty", 0, sha(b""))
    assert store.finish("empty").read_bytes() == b""


def test_a_new_declaration_restarts_the_upload(store: UploadStore) -> None:
    store.begin("a.bin", 10, sha(b"a" * 10))
    store.append("a.bin", 0, b"a" * 5)
    assert store.begin("a.bin", 4, sha(b"b" * 4)) == 0
    store.append("a.bin", 0, b"b" * 4)
    assert store.finish("a.bin").read_bytes() == b"bbbb"


def test_abort(store: UploadStore) -> None:
    store.begin("a.bin", 10, sha(b"a" * 10))
    store.append("a.bin", 0, b"a" * 5)
    store.abort("a.bin")
    store.abort("a.bin")  # nothing left: no error
    assert store.status() == []
    assert list(store.state_dir.iterdir()) == []


def test_upload_into_a_symlinked_folder_is_refused(store: UploadStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.input_dir / "link").symlink_to(outside)
    with pytest.raises(BadPathError, match="symbolic link"):
        store.begin("link/a.bin", 1, sha(b"a"))


def test_quota(tmp_path: Path) -> None:
    user = tmp_path / "user"
    one = UploadStore(user / "job1" / "input")
    two = UploadStore(user / "job2" / "input")
    data = b"q" * 600
    one.begin("a.bin", 600, sha(data), quota=1000, used=used_bytes(user))
    one.append("a.bin", 0, data[:100])
    # declared but not yet sent bytes count, as do the bytes held
    assert used_bytes(user) == 600 + _json_sizes(user)
    with pytest.raises(QuotaExceededError) as exc:
        two.begin("b.bin", 500, sha(b"b" * 500), quota=1000, used=used_bytes(user))
    assert exc.value.quota == 1000
    one.append("a.bin", 100, data[100:])
    one.finish("a.bin")
    assert used_bytes(user) == 600
    two.begin("b.bin", 400, sha(b"b" * 400), quota=1000, used=used_bytes(user))
    # by default the job's own folder is counted
    with pytest.raises(QuotaExceededError):
        one.begin("c.bin", 401, sha(b"c" * 401), quota=1000)
    assert used_bytes(tmp_path / "missing") == 0


def test_usage_is_counted_only_for_a_new_upload(tmp_path: Path) -> None:
    """A resumed declaration does not walk the user's files; a new one does (a function)."""
    store = UploadStore(tmp_path / "user" / "job" / "input")
    data = b"r" * 300
    calls: list[int] = []

    def used() -> int:
        calls.append(1)
        return used_bytes(tmp_path / "user")

    store.begin("a.bin", 300, sha(data), quota=1000, used=used)
    store.append("a.bin", 0, data[:100])
    assert store.begin("a.bin", 300, sha(data), quota=1000, used=used) == 100
    assert len(calls) == 1
    with pytest.raises(QuotaExceededError):
        store.begin("b.bin", 900, sha(b"b" * 900), quota=1000, used=used)
    assert len(calls) == 2


def _json_sizes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.json"))


def test_concurrent_appends_at_one_offset(store: UploadStore) -> None:
    """Two requests sending the same range: one writes, the other is told the new offset."""
    import threading

    data = os.urandom(4 * 1024 * 1024)
    store.begin("a.bin", len(data), sha(data))
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def send() -> None:
        barrier.wait()
        try:
            outcomes.append(
                store.append(
                    "a.bin", 0, iter([data[i : i + 65536] for i in range(0, len(data), 65536)])
                )
            )
        except UploadOffsetError as exc:
            outcomes.append(exc.expected)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == [len(data), len(data)]
    assert store.finish("a.bin").read_bytes() == data


# -- names that clash with the input tree -------------------------------------------------------


def _upload(store: UploadStore, name: str, data: bytes, *, finish: bool = True) -> None:
    store.begin(name, len(data), sha(data))
    store.append(name, 0, data)
    if finish:
        store.finish(name)


def test_a_file_where_a_folder_is_needed_is_a_clash(store: UploadStore) -> None:
    _upload(store, "a", b"x")
    with pytest.raises(UploadExistsError, match="'a' is a file") as exc:
        store.begin("a/b", 1, sha(b"y"))
    assert isinstance(exc.value, FileExistsError)
    with pytest.raises(UploadExistsError, match="'a' is a file"):
        store.begin("a/b/c", 1, sha(b"y"), overwrite=True)


def test_a_folder_where_a_file_is_needed_is_a_clash(store: UploadStore) -> None:
    _upload(store, "d/b", b"y")
    for overwrite in (False, True):
        with pytest.raises(UploadExistsError, match="a folder of that name exists"):
            store.begin("d", 1, sha(b"x"), overwrite=overwrite)


def test_finish_refuses_a_clash_that_arose_after_begin(store: UploadStore) -> None:
    # both declared first; whichever finishes second clashes with the first
    _upload(store, "d/b", b"y", finish=False)
    _upload(store, "d", b"x", finish=False)
    store.finish("d/b")
    with pytest.raises(UploadExistsError, match="a folder of that name exists"):
        store.finish("d")
    assert store.offset("d") == 1  # the upload stays, to be discarded
    store.abort("d")
    # the other way round: a file where a folder is needed
    _upload(store, "e/f", b"y", finish=False)
    _upload(store, "e", b"x", finish=False)
    store.finish("e")
    with pytest.raises(UploadExistsError, match="'e' is a file"):
        store.finish("e/f")
    assert (store.input_dir / "e").read_bytes() == b"x"


def test_finish_turns_a_racing_tree_change_into_a_clash(
    store: UploadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _upload(store, "g/h", b"y", finish=False)
    monkeypatch.setattr(UploadStore, "_check_clash", lambda self, rel, target: None)
    (store.input_dir / "g").write_bytes(b"file")
    with pytest.raises(UploadExistsError, match="clashes with the input tree"):
        store.finish("g/h")


# -- deleting finished input files -------------------------------------------------------------


def test_remove_deletes_one_file_and_the_folders_it_leaves_empty(store: UploadStore) -> None:
    _upload(store, "a/b/c/x.tif", b"12345")
    _upload(store, "a/y.tif", b"yy")
    assert store.has_files()
    assert store.remove("a/b/c/x.tif") == 5
    assert not (store.input_dir / "a" / "b").exists()  # b/c and b held nothing else
    assert (store.input_dir / "a" / "y.tif").read_bytes() == b"yy"
    assert store.remove("a/y.tif") == 2
    assert store.input_dir.is_dir() and list(store.input_dir.iterdir()) == []
    assert not store.has_files()
    with pytest.raises(InputNotFoundError, match=r"a/y\.tif"):
        store.remove("a/y.tif")
    with pytest.raises(FileNotFoundError):  # also a built-in FileNotFoundError
        store.remove("never/there.tif")


def test_remove_keeps_a_folder_that_holds_something_else(store: UploadStore) -> None:
    _upload(store, "d/x.tif", b"x")
    (store.input_dir / "d" / "empty").mkdir()
    store.remove("d/x.tif")
    assert (store.input_dir / "d" / "empty").is_dir()


def test_remove_refuses_folders_and_names_that_leave_the_input(
    store: UploadStore, tmp_path: Path
) -> None:
    _upload(store, "d/x.tif", b"x")
    with pytest.raises(BadPathError, match="is a folder"):
        store.remove("d")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    (store.input_dir / "linked").symlink_to(outside)
    (store.input_dir / "file-link").symlink_to(outside / "secret.txt")
    for name in ["linked/secret.txt", "file-link", "linked"]:
        with pytest.raises(BadPathError, match="symbolic link"):
            store.remove(name)
    for name in ["../outside/secret.txt", "/etc/passwd", "d/../../outside/secret.txt", "d/"]:
        with pytest.raises(BadPathError):
            store.remove(name)
    assert (outside / "secret.txt").read_bytes() == b"secret"
    assert (store.input_dir / "d" / "x.tif").exists()


def test_remove_leaves_an_unfinished_upload_of_the_name_alone(store: UploadStore) -> None:
    _upload(store, "a.bin", b"old")
    store.begin("a.bin", 3, sha(b"new"), overwrite=True)
    store.append("a.bin", 0, b"ne")
    assert store.remove("a.bin") == 3
    assert store.offset("a.bin") == 2
    store.append("a.bin", 2, b"w")
    assert store.finish("a.bin").read_bytes() == b"new"


def test_the_quota_usage_follows_deleted_files(tmp_path: Path) -> None:
    user = tmp_path / "user"
    store = UploadStore(user / "job" / "input")
    _upload(store, "a.bin", b"a" * 600)
    with pytest.raises(QuotaExceededError):
        store.begin("b.bin", 500, sha(b"b" * 500), quota=1000, used=used_bytes(user))
    store.remove("a.bin")
    assert used_bytes(user) == 0
    assert store.begin("b.bin", 500, sha(b"b" * 500), quota=1000, used=used_bytes(user)) == 0


def test_finish_makes_a_folder_again_that_a_delete_removed_meanwhile(
    store: UploadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _upload(store, "d/a.tif", b"a")
    _upload(store, "d/b.tif", b"b", finish=False)
    replace = Path.replace
    calls = 0

    def racing(self: Path, target: Any) -> Path:
        nonlocal calls
        calls += 1
        if calls == 1:  # a delete of the folder's last file prunes it before the rename
            store.remove("d/a.tif")
        return replace(self, target)

    monkeypatch.setattr(Path, "replace", racing)
    assert store.finish("d/b.tif").read_bytes() == b"b"
    assert calls == 2 and [p.name for p in (store.input_dir / "d").iterdir()] == ["b.tif"]


# -- walking a tree that changes ---------------------------------------------------------------


def test_regular_files_skips_files_that_vanish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine renames its temporary files: one seen by scandir may be gone at stat."""
    (tmp_path / "gone").write_bytes(b"x")
    (tmp_path / "kept").write_bytes(b"yy")
    real_scandir = os.scandir

    def scandir(folder: object) -> object:
        entries = list(real_scandir(folder))  # type: ignore[call-overload]
        (tmp_path / "gone").unlink(missing_ok=True)
        return iter(entries)

    monkeypatch.setattr(os, "scandir", scandir)
    assert [p.name for p, _ in regular_files(tmp_path)] == ["kept"]
    assert used_bytes(tmp_path) == 2


def test_regular_files_leaves_out_the_engines_temporary_files(tmp_path: Path) -> None:
    from scopeflow.core.fileio import atomic_write_bytes

    atomic_write_bytes(tmp_path / "done.json", b"{}")
    (tmp_path / ".done.json.k2j3_x9q.tmp").write_bytes(b"half")  # as mkstemp names them
    (tmp_path / ".hidden").write_bytes(b"h")
    (tmp_path / "x.tmp").write_bytes(b"t")
    names = sorted(p.name for p, _ in regular_files(tmp_path))
    assert names == [".hidden", "done.json", "x.tmp"]
    # they still use disk space
    assert used_bytes(tmp_path) == 2 + 4 + 1 + 1


# -- the quota lock ----------------------------------------------------------------------------


def test_quota_lock_makes_check_and_declaration_one_step(tmp_path: Path) -> None:
    """Many declarations at once: with the lock, their total never passes the quota."""
    import threading

    user = tmp_path / "user"
    stores = [UploadStore(user / f"job{i}" / "input") for i in range(8)]
    barrier = threading.Barrier(len(stores))
    accepted: list[int] = []

    def declare(i: int) -> None:
        barrier.wait()
        try:
            with quota_lock(user):
                used = used_bytes(user)
                time_to_race = 0.02  # a gap between check and write, as on a busy server
                import time

                time.sleep(time_to_race)
                stores[i].begin("a.bin", 400, sha(b"a" * 400), quota=1000, used=used)
        except QuotaExceededError:
            return
        accepted.append(i)

    threads = [threading.Thread(target=declare, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(accepted) == 2
    assert used_bytes(user) - _json_sizes(user) == 800
    assert (user / ".quota.lock").exists()


def test_quota_lock_excludes_other_processes(tmp_path: Path) -> None:
    """While the parent holds the lock another process cannot take it; its blocking
    acquire returns only after the parent has released it."""
    import multiprocessing

    user = tmp_path / "new" / "user"  # created when missing
    ctx = multiprocessing.get_context("spawn")
    said: Any = ctx.Queue()
    released = ctx.Event()
    with quota_lock(user):
        child = ctx.Process(target=_take_lock, args=(str(user), said, released))
        child.start()
        try:
            assert said.get(timeout=30) == ("try", False)  # wait=False: someone holds it
            assert said.get(timeout=30) == ("waiting", None)
            if Path("/proc/locks").exists():  # Linux: see the child blocked in flock()
                _wait_blocked_on(user / QUOTA_LOCK, child.pid)
            released.set()  # set before the release: the child must see it set
        except BaseException:
            child.kill()
            raise
    child.join(30)
    assert child.exitcode == 0
    assert said.get(timeout=30) == ("acquired", True)  # only after the release


def _take_lock(user: str, said: Any, released: Any) -> None:
    """In a child process: try the lock without waiting, then wait for it."""
    with file_lock(Path(user) / QUOTA_LOCK, wait=False) as got:
        said.put(("try", got))
    said.put(("waiting", None))
    with quota_lock(Path(user)):
        said.put(("acquired", released.is_set()))


def _wait_blocked_on(path: Path, pid: int | None) -> None:
    """Wait until ``/proc/locks`` shows process ``pid`` blocked on a lock of ``path``."""
    import time

    inode = f":{path.stat().st_ino} "
    deadline = time.monotonic() + 30
    while not any(
        "->" in line and f" {pid} " in line and inode in line
        for line in Path("/proc/locks").read_text().splitlines()
    ):
        assert time.monotonic() < deadline, f"process {pid} never waited for the lock"
        time.sleep(0.02)


def test_settled_folders_are_walked_once_per_version(tmp_path: Path) -> None:
    user = tmp_path / "user"
    for job, n in (("job1", 300), ("job2", 50)):
        (user / job / "run" / "outputs").mkdir(parents=True)
        (user / job / "run" / "outputs" / "r.bin").write_bytes(b"r" * n)
    (user / "job2" / "input").mkdir()
    (user / "job2" / "input" / "a.bin").write_bytes(b"a" * 7)
    sizes = SettledSizes()
    plain = used_bytes(user)
    assert plain == 357
    assert used_bytes(user, settled={"job1": "v1"}, sizes=sizes) == plain
    (user / "job1" / "late.bin").write_bytes(b"y" * 100)  # job1 is remembered as of v1
    assert used_bytes(user, settled={"job1": "v1"}, sizes=sizes) == plain
    assert used_bytes(user, settled={"job1": "v2"}, sizes=sizes) == plain + 100  # walked again
    (user / "job2" / "input" / "b.bin").write_bytes(b"b" * 10)  # not settled: always walked
    assert used_bytes(user, settled={"job1": "v2"}, sizes=sizes) == plain + 110
    shutil.rmtree(user / "job1")  # a deleted job counts nothing, remembered or not
    assert used_bytes(user, settled={"job1": "v2"}, sizes=sizes) == used_bytes(user) == 67
    assert used_bytes(tmp_path / "nobody", settled={"x": 1}, sizes=sizes) == 0
