"""A job's input before it starts: discarding uploads, deleting finished files, the job's state.

``DELETE /jobs/{id}/files/{path}`` discards an unfinished upload, else deletes a finished input
file (owner only, before the start, path rules and symlinks checked, one regular file at a time,
empty folders pruned); afterwards the job is ``uploading`` while an upload is unfinished,
``ready`` with a finished input file and ``created`` with neither. In process (FastAPI's
TestClient) on SQLite and PostgreSQL; the web UI's "Remove" buttons in a headless Chromium.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from scopeflow.service.app import API_PREFIX
from scopeflow.service.db import Job, make_engine, session_factory, set_state, utcnow
from scopeflow.service.files import used_bytes
from scopeflow.service.jobfiles import JobFiles
from scopeflow.service.settings import ServiceSettings
from scopeflow.service.states import JobState
from tests.unit.service.conftest import login, service_app

QUOTA = 10_000


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, ServiceSettings]]:
    with service_app(db_url, tmp_path, quota_bytes=QUOTA) as app:
        yield app


@pytest.fixture
def client(api: tuple[TestClient, ServiceSettings]) -> TestClient:
    return api[0]


@pytest.fixture
def settings(api: tuple[TestClient, ServiceSettings]) -> ServiceSettings:
    return api[1]


@pytest.fixture
def alice(client: TestClient) -> dict[str, str]:
    return login(client, "alice")


@pytest.fixture
def job(client: TestClient, alice: dict[str, str]) -> str:
    r = client.post(
        f"{API_PREFIX}/jobs",
        json={"template": "toy", "name": "t", "params": {"units": 1}},
        headers=alice,
    )
    assert r.status_code == 201, r.text
    job_id: str = r.json()["id"]
    return job_id


def _declare(client: TestClient, auth: dict[str, str], job: str, path: str, data: bytes) -> None:
    decl = {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    r = client.post(f"{API_PREFIX}/jobs/{job}/files", json=decl, headers=auth)
    assert r.status_code == 200, r.text


def _upload(client: TestClient, auth: dict[str, str], job: str, path: str, data: bytes) -> None:
    _declare(client, auth, job, path, data)
    base = f"{API_PREFIX}/jobs/{job}/files/{path}"
    assert client.put(f"{base}?offset=0", content=data, headers=auth).status_code == 200
    r = client.post(f"{base}/finish", headers=auth)
    assert r.status_code == 200, r.text


def _state(client: TestClient, auth: dict[str, str], job: str) -> str:
    state: str = client.get(f"{API_PREFIX}/jobs/{job}", headers=auth).json()["state"]
    return state


def _delete(client: TestClient, auth: dict[str, str], job: str, path: str) -> Any:
    return client.delete(f"{API_PREFIX}/jobs/{job}/files/{path}", headers=auth)


def _input(settings: ServiceSettings, job: str) -> Path:
    return settings.jobs_dir / "alice" / job / "input"


# -- the state follows the input -----------------------------------------------------------------


def test_discarding_the_only_upload_goes_back_to_created(
    client: TestClient, alice: dict[str, str], job: str
) -> None:
    _declare(client, alice, job, "a.tif", b"12345")
    base = f"{API_PREFIX}/jobs/{job}/files"
    assert client.put(f"{base}/a.tif?offset=0", content=b"123", headers=alice).is_success
    assert _state(client, alice, job) == "uploading"
    r = _delete(client, alice, job, "a.tif")
    assert r.status_code == 200 and r.json() == {"path": "a.tif", "discarded": True}
    assert _state(client, alice, job) == "created"  # not ready: there is no input at all
    assert client.get(base, headers=alice).json() == {"files": [], "uploads": []}
    decl = {"path": "a.tif", "size": 5, "sha256": hashlib.sha256(b"12345").hexdigest()}
    assert client.post(base, json=decl, headers=alice).json()["offset"] == 0  # from zero
    assert _delete(client, alice, job, "a.tif").json()["discarded"]
    _upload(client, alice, job, "a.tif", b"12345")  # and the job takes uploads as before
    assert _state(client, alice, job) == "ready"


def test_discarding_the_last_upload_next_to_a_finished_file_is_ready(
    client: TestClient, alice: dict[str, str], job: str
) -> None:
    _upload(client, alice, job, "a.tif", b"a")
    _declare(client, alice, job, "b.tif", b"bb")
    assert _state(client, alice, job) == "uploading"
    assert _delete(client, alice, job, "b.tif").json() == {"path": "b.tif", "discarded": True}
    assert _state(client, alice, job) == "ready"


def test_a_finished_upload_is_ready_only_with_no_upload_left(
    client: TestClient, alice: dict[str, str], job: str
) -> None:
    _declare(client, alice, job, "a.tif", b"a")
    _declare(client, alice, job, "b.tif", b"b")
    base = f"{API_PREFIX}/jobs/{job}/files"
    client.put(f"{base}/a.tif?offset=0", content=b"a", headers=alice)
    assert client.post(f"{base}/a.tif/finish", headers=alice).status_code == 200
    assert _state(client, alice, job) == "uploading"  # b.tif is still unfinished
    _delete(client, alice, job, "b.tif")
    assert _state(client, alice, job) == "ready"


def test_deleting_finished_files_moves_ready_back_to_created(
    client: TestClient, settings: ServiceSettings, alice: dict[str, str], job: str
) -> None:
    _upload(client, alice, job, "images/t0/a.tif", b"12345")
    _upload(client, alice, job, "b.tif", b"xy")
    assert _state(client, alice, job) == "ready"
    r = _delete(client, alice, job, "images/t0/a.tif")
    assert r.status_code == 200
    assert r.json() == {"path": "images/t0/a.tif", "deleted": True, "size": 5}
    assert not (_input(settings, job) / "images").exists()  # emptied folders go too
    listing = client.get(f"{API_PREFIX}/jobs/{job}/files", headers=alice).json()
    assert listing == {"files": [{"path": "b.tif", "size": 2}], "uploads": []}
    assert _state(client, alice, job) == "ready"
    assert _delete(client, alice, job, "b.tif").json() == {
        "path": "b.tif",
        "deleted": True,
        "size": 2,
    }
    assert _state(client, alice, job) == "created"
    assert list(_input(settings, job).iterdir()) == []
    assert _delete(client, alice, job, "b.tif").status_code == 404


def test_deleting_a_file_while_another_uploads_stays_uploading(
    client: TestClient, alice: dict[str, str], job: str
) -> None:
    _upload(client, alice, job, "a.tif", b"a")
    _declare(client, alice, job, "b.tif", b"bb")
    assert _delete(client, alice, job, "a.tif").json()["deleted"] is True
    assert _state(client, alice, job) == "uploading"
    _delete(client, alice, job, "b.tif")
    assert _state(client, alice, job) == "created"


def test_an_upload_of_the_name_is_discarded_before_the_file_is_deleted(
    client: TestClient, settings: ServiceSettings, alice: dict[str, str], job: str
) -> None:
    _upload(client, alice, job, "a.tif", b"old")
    _declare(client, alice, job, "a.tif", b"new!")  # replacing it
    assert _delete(client, alice, job, "a.tif").json() == {"path": "a.tif", "discarded": True}
    assert (_input(settings, job) / "a.tif").read_bytes() == b"old"
    assert _state(client, alice, job) == "ready"
    assert _delete(client, alice, job, "a.tif").json()["deleted"] is True
    assert _state(client, alice, job) == "created"


# -- who, when and what --------------------------------------------------------------------------


def test_only_the_owner_deletes(
    client: TestClient, settings: ServiceSettings, alice: dict[str, str], job: str
) -> None:
    _upload(client, alice, job, "a.tif", b"a")
    bob = login(client, "bob")
    assert _delete(client, bob, job, "a.tif").status_code == 404  # as if there were no job
    assert client.delete(f"{API_PREFIX}/jobs/{job}/files/a.tif").status_code == 401
    assert (_input(settings, job) / "a.tif").exists()
    assert _state(client, alice, job) == "ready"


@pytest.mark.parametrize("state", [JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED])
def test_no_deletes_once_the_job_has_started(
    client: TestClient,
    settings: ServiceSettings,
    alice: dict[str, str],
    job: str,
    state: JobState,
) -> None:
    _upload(client, alice, job, "a.tif", b"a")
    path = [JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED]
    engine = make_engine(settings.database_url)
    with session_factory(engine)() as s:
        row = s.get(Job, job)
        assert row is not None
        for step in path[: path.index(state) + 1]:
            set_state(s, row, step)
        s.commit()
    engine.dispose()
    r = _delete(client, alice, job, "a.tif")
    assert r.status_code == 409 and state.value in r.json()["detail"]
    assert (_input(settings, job) / "a.tif").exists()
    assert _delete(client, alice, job, "missing.tif").status_code == 409


@pytest.mark.parametrize(
    "name",
    ["%2E%2E/outside/secret.txt", "/etc/passwd", "a/%2E%2E/%2E%2E/x", "a%5Cb", "a/%2E/b.tif"],
)
def test_names_against_the_path_rules_are_refused(
    client: TestClient, settings: ServiceSettings, alice: dict[str, str], job: str, name: str
) -> None:
    _upload(client, alice, job, "a/b.tif", b"b")
    r = _delete(client, alice, job, name)
    assert r.status_code == 400, (name, r.status_code, r.text)
    assert (_input(settings, job) / "a" / "b.tif").exists()


def test_symbolic_links_and_folders_are_refused(
    client: TestClient, settings: ServiceSettings, alice: dict[str, str], job: str
) -> None:
    _upload(client, alice, job, "a/b.tif", b"b")
    outside = settings.data_dir.parent / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_bytes(b"secret")
    (_input(settings, job) / "linked").symlink_to(outside)
    (_input(settings, job) / "file-link").symlink_to(secret)
    for name in ["linked/secret.txt", "file-link", "linked"]:
        r = _delete(client, alice, job, name)
        assert r.status_code == 400 and "symbolic link" in r.json()["detail"], name
    r = _delete(client, alice, job, "a")
    assert r.status_code == 400 and "folder" in r.json()["detail"]
    assert secret.read_bytes() == b"secret"
    assert (_input(settings, job) / "a" / "b.tif").exists()
    assert (_input(settings, job) / "file-link").is_symlink()


def test_the_quota_follows_the_files_on_disk(
    client: TestClient, settings: ServiceSettings, alice: dict[str, str], job: str
) -> None:
    user_root = settings.jobs_dir / "alice"
    big = b"x" * 6_000
    _upload(client, alice, job, "big.bin", big)
    assert used_bytes(user_root) >= len(big)
    decl = {"path": "more.bin", "size": 6_000, "sha256": hashlib.sha256(big).hexdigest()}
    files = f"{API_PREFIX}/jobs/{job}/files"
    assert client.post(files, json=decl, headers=alice).status_code == 413
    assert _delete(client, alice, job, "big.bin").json()["size"] == len(big)
    assert used_bytes(user_root) < len(big)
    assert client.post(files, json=decl, headers=alice).status_code == 200  # room again


# -- the input lock: a start and a change of the input never interleave -------------------------


InThread = Callable[[Callable[[], Any]], tuple[threading.Thread, list[Any]]]


@pytest.fixture
def in_thread(monkeypatch: pytest.MonkeyPatch) -> InThread:
    """Run a request in a thread; return once it waits for a job's input lock.

    The request's ``flock`` on a ``.input.lock`` (from a thread other than the test's) tells
    that it got there: the test then changes the job while the request waits.
    """
    real_flock = fcntl.flock
    arrived = threading.Event()

    def flock(fd: Any, operation: int) -> None:
        number = fd if isinstance(fd, int) else fd.fileno()
        waiting = threading.current_thread() is not threading.main_thread()
        if waiting and Path(f"/proc/self/fd/{number}").readlink().name == ".input.lock":
            arrived.set()
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)

    def run(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
        arrived.clear()
        answers: list[Any] = []
        thread = threading.Thread(target=lambda: answers.append(call()), daemon=True)
        thread.start()
        assert arrived.wait(30), "the request never reached the job's input lock"
        return thread, answers

    return run


def _set_state(settings: ServiceSettings, job: str, *states: JobState) -> None:
    engine = make_engine(settings.database_url)
    with session_factory(engine)() as s:
        row = s.get(Job, job)
        assert row is not None
        for state in states:
            set_state(s, row, state)
        s.commit()
    engine.dispose()


def test_a_start_sees_an_upload_declared_while_it_waited(
    client: TestClient,
    settings: ServiceSettings,
    alice: dict[str, str],
    job: str,
    in_thread: InThread,
) -> None:
    _upload(client, alice, job, "a.tif", b"a")
    files = JobFiles.of(settings.jobs_dir, "alice", job)
    with files.input_lock():
        thread, answers = in_thread(
            lambda: client.post(f"{API_PREFIX}/jobs/{job}/start", headers=alice)
        )
        # an upload that got the lock first (the start must not queue the job without it)
        files.upload_store().begin("b.tif", 1, hashlib.sha256(b"b").hexdigest())
    thread.join(30)
    assert answers[0].status_code == 409 and "b.tif" in answers[0].json()["detail"]
    assert _state(client, alice, job) == "ready"


def test_an_upload_declared_while_a_start_held_the_lock_is_refused(
    client: TestClient,
    settings: ServiceSettings,
    alice: dict[str, str],
    job: str,
    in_thread: InThread,
) -> None:
    _upload(client, alice, job, "a.tif", b"a")
    files = JobFiles.of(settings.jobs_dir, "alice", job)
    decl = {"path": "b.tif", "size": 1, "sha256": hashlib.sha256(b"b").hexdigest()}
    with files.input_lock():
        thread, answers = in_thread(
            lambda: client.post(f"{API_PREFIX}/jobs/{job}/files", json=decl, headers=alice)
        )
        _set_state(settings, job, JobState.QUEUED)  # the start that got the lock first
    thread.join(30)
    assert answers[0].status_code == 409 and "queued" in answers[0].json()["detail"]
    assert not files.upload_store().has_uploads()
    assert _state(client, alice, job) == "queued"


def test_a_delete_while_a_start_held_the_lock_is_refused(
    client: TestClient,
    settings: ServiceSettings,
    alice: dict[str, str],
    job: str,
    in_thread: InThread,
) -> None:
    _upload(client, alice, job, "a.tif", b"a")
    files = JobFiles.of(settings.jobs_dir, "alice", job)
    with files.input_lock():
        thread, answers = in_thread(lambda: _delete(client, alice, job, "a.tif"))
        _set_state(settings, job, JobState.QUEUED)
    thread.join(30)
    assert answers[0].status_code == 409
    assert (_input(settings, job) / "a.tif").read_bytes() == b"a"


def test_a_change_waiting_for_a_deleted_job_is_a_404(
    client: TestClient,
    settings: ServiceSettings,
    alice: dict[str, str],
    job: str,
    in_thread: InThread,
) -> None:
    _upload(client, alice, job, "a.tif", b"a")
    files = JobFiles.of(settings.jobs_dir, "alice", job)
    with files.input_lock():
        thread, answers = in_thread(lambda: _delete(client, alice, job, "a.tif"))
        engine = make_engine(settings.database_url)
        with session_factory(engine)() as s:  # the job deleted meanwhile (as DELETE /jobs does)
            s.delete(s.get(Job, job))
            s.commit()
        engine.dispose()
        shutil.rmtree(files.root)
    thread.join(30)
    assert answers[0].status_code == 404
    assert not files.root.exists()  # nothing made again
    r = client.post(f"{API_PREFIX}/jobs/{job}/start", headers=alice)
    assert r.status_code == 404


# -- reading creates nothing; every uploaded name is listed ----------------------------------


def test_reading_a_jobs_files_creates_no_folder(
    client: TestClient, settings: ServiceSettings, alice: dict[str, str], job: str
) -> None:
    root = settings.jobs_dir / "alice" / job
    shutil.rmtree(root / "input", ignore_errors=True)
    shutil.rmtree(root / ".uploads", ignore_errors=True)
    base = f"{API_PREFIX}/jobs/{job}/files"
    assert client.get(base, headers=alice).json() == {"files": [], "uploads": []}
    assert client.get(f"{base}/a.tif", headers=alice).status_code == 422  # no upload begun
    assert _delete(client, alice, job, "a.tif").status_code == 404
    assert not (root / "input").exists() and not (root / ".uploads").exists()
    _upload(client, alice, job, "a.tif", b"a")  # the first declaration makes them
    assert (_input(settings, job) / "a.tif").read_bytes() == b"a"


def test_a_file_named_like_an_engine_temporary_file_is_an_input(
    client: TestClient, alice: dict[str, str], job: str
) -> None:
    name = ".t0.abc123.tmp"  # the engine's pattern for half-written files; not in the input
    _upload(client, alice, job, name, b"abc")
    listed = client.get(f"{API_PREFIX}/jobs/{job}/files", headers=alice).json()["files"]
    assert listed == [{"path": name, "size": 3}]
    assert _state(client, alice, job) == "ready"


def test_a_finished_jobs_files_count_against_the_quota_until_it_is_deleted(
    client: TestClient, settings: ServiceSettings, alice: dict[str, str], job: str
) -> None:
    big = b"x" * 6_000
    _upload(client, alice, job, "big.bin", big)
    _set_state(settings, job, JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED)
    engine = make_engine(settings.database_url)
    with session_factory(engine)() as s:  # finished an hour ago: its folder is settled
        row = s.get(Job, job)
        assert row is not None
        row.finished_at = utcnow() - timedelta(hours=1)
        s.commit()
    engine.dispose()
    r = client.post(
        f"{API_PREFIX}/jobs", json={"template": "toy", "name": "u", "params": {}}, headers=alice
    )
    other = r.json()["id"]
    decl = {"path": "more.bin", "size": 6_000, "sha256": hashlib.sha256(big).hexdigest()}
    files = f"{API_PREFIX}/jobs/{other}/files"
    for _ in range(2):  # walked, then remembered: the same answer
        assert client.post(files, json=decl, headers=alice).status_code == 413
    assert client.delete(f"{API_PREFIX}/jobs/{job}", headers=alice).status_code == 204
    assert client.post(files, json=decl, headers=alice).status_code == 200  # room again


def test_replacing_a_file_counts_only_the_new_one_against_the_quota(
    client: TestClient, settings: ServiceSettings, alice: dict[str, str], job: str
) -> None:
    old, new = b"o" * 6_000, b"n" * 7_000  # each fits the 10,000-byte quota, not both
    _upload(client, alice, job, "big.bin", old)
    _upload(client, alice, job, "big.bin", new)  # was a 413: the old file was counted too
    assert (_input(settings, job) / "big.bin").read_bytes() == new
    other = {"path": "more.bin", "size": 3_001, "sha256": hashlib.sha256(b"m").hexdigest()}
    r = client.post(f"{API_PREFIX}/jobs/{job}/files", json=other, headers=alice)
    assert r.status_code == 413  # 7,000 held: the quota still counts what is there
