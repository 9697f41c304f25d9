"""The REST API in process (FastAPI's TestClient) on a real database: SQLite and PostgreSQL.

Authentication on every route, ownership (another user's job is a 404), path rules, parameter
validation with field paths, the resumable upload protocol and the state rules of start /
cancel / restart / delete. Running jobs end to end is tested with the worker
(tests/integration/test_service_e2e.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from scopeflow.service.app import API_PREFIX
from scopeflow.service.auth import issue_token
from scopeflow.service.db import make_engine, session_factory, utcnow
from scopeflow.service.jobfiles import JobFiles
from scopeflow.service.settings import ServiceSettings
from tests.unit.service.conftest import EXAMPLE, create_job, login, service_app


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, ServiceSettings]]:
    with service_app(db_url, tmp_path, quota_bytes=10_000) as (client, settings):
        client.fastapi_app = client.app  # type: ignore[attr-defined]
        yield client, settings


def test_every_route_but_health_and_login_needs_a_token(
    api: tuple[TestClient, ServiceSettings],
) -> None:
    client, _ = api
    open_routes = {("GET", "/health"), ("POST", "/auth/login")}
    checked = 0
    paths = client.fastapi_app.openapi()["paths"]  # type: ignore[attr-defined]
    for path, methods in paths.items():
        url = path.replace("{job_id}", "0" * 32).replace("{path}", "x.tif")
        for method in methods:
            if (method.upper(), path.removeprefix(API_PREFIX)) in open_routes:
                continue
            for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "x"}):
                r = client.request(method.upper(), url, headers=headers)
                assert r.status_code == 401, (method, url, headers, r.status_code)
            checked += 1
    assert checked >= 15
    assert client.get(f"{API_PREFIX}/health").json()["status"] == "ok"


def test_login_and_expired_tokens(api: tuple[TestClient, ServiceSettings]) -> None:
    client, settings = api
    bad = client.post(f"{API_PREFIX}/auth/login", json={"name": "alice", "password": "nope"})
    nobody = client.post(f"{API_PREFIX}/auth/login", json={"name": "carol", "password": "x"})
    assert bad.status_code == nobody.status_code == 401
    assert bad.json()["detail"] == nobody.json()["detail"]
    auth = login(client, "alice")
    assert client.get(f"{API_PREFIX}/me", headers=auth).json()["name"] == "alice"
    with session_factory(make_engine(settings.database_url))() as s:
        from sqlalchemy import select

        from scopeflow.service.db import User

        alice = s.scalars(select(User).where(User.name == "alice")).one()
        old = issue_token(s, alice, ttl=timedelta(hours=1), now=utcnow() - timedelta(hours=2))
        s.commit()
    r = client.get(f"{API_PREFIX}/jobs", headers={"Authorization": f"Bearer {old}"})
    assert r.status_code == 401
    assert client.post(f"{API_PREFIX}/auth/logout", headers=auth).status_code == 204
    assert client.get(f"{API_PREFIX}/me", headers=auth).status_code == 401


def test_another_users_job_is_not_found(api: tuple[TestClient, ServiceSettings]) -> None:
    client, _ = api
    alice, bob = login(client, "alice"), login(client, "bob")
    job = create_job(client, alice)
    base = f"{API_PREFIX}/jobs/{job['id']}"
    for method, url in [
        ("GET", base),
        ("DELETE", base),
        ("POST", f"{base}/start"),
        ("POST", f"{base}/cancel"),
        ("POST", f"{base}/restart"),
        ("GET", f"{base}/progress"),
        ("GET", f"{base}/logs"),
        ("GET", f"{base}/summary"),
        ("GET", f"{base}/files"),
        ("GET", f"{base}/files/a.tif"),
        ("PUT", f"{base}/files/a.tif?offset=0"),
        ("POST", f"{base}/files/a.tif/finish"),
        ("GET", f"{base}/results"),
        ("GET", f"{base}/results.zip"),
        ("GET", f"{base}/results/summary.json"),
    ]:
        assert client.request(method, url, headers=bob).status_code == 404, (method, url)
    r = client.post(f"{base}/files", json={"path": "a", "size": 1, "sha256": "0" * 64}, headers=bob)
    assert r.status_code == 404
    assert [j["id"] for j in client.get(f"{API_PREFIX}/jobs", headers=bob).json()] == []
    assert [j["id"] for j in client.get(f"{API_PREFIX}/jobs", headers=alice).json()] == [job["id"]]


@pytest.mark.parametrize(
    ("name", "code"),
    [
        *(
            (n, 400)
            for n in ["../x", "/etc/passwd", "a/../../b", "C:\\x", "a\\..\\b", "a\x00b", "."]
        ),
        ("", 422),  # empty: refused by the request's schema
    ],
)
def test_traversal_names_are_refused(
    api: tuple[TestClient, ServiceSettings], name: str, code: int
) -> None:
    client, settings = api
    auth = login(client, "alice")
    job = create_job(client, auth)
    files = f"{API_PREFIX}/jobs/{job['id']}/files"
    with JobFiles(settings.jobs_dir / "alice" / job["id"]).input_lock():
        pass  # made as by any declaration: the snapshots differ only by what the name made
    before = set(settings.data_dir.parent.rglob("*"))
    r = client.post(files, json={"path": name, "size": 1, "sha256": "0" * 64}, headers=auth)
    assert r.status_code == code, (name, r.status_code, r.text)
    assert set(settings.data_dir.parent.rglob("*")) == before  # nothing made, anywhere
    assert client.get(files, headers=auth).json() == {"files": [], "uploads": []}


def test_a_symlink_out_of_the_job_is_refused(api: tuple[TestClient, ServiceSettings]) -> None:
    client, settings = api
    auth = login(client, "alice")
    job = create_job(client, auth)
    outside = settings.data_dir.parent / "outside"
    outside.mkdir()
    link = settings.jobs_dir / "alice" / job["id"] / "input" / "link"
    link.symlink_to(outside)
    r = client.post(
        f"{API_PREFIX}/jobs/{job['id']}/files",
        json={"path": "link/evil.txt", "size": 1, "sha256": "0" * 64},
        headers=auth,
    )
    assert r.status_code == 400 and not list(outside.iterdir())


def test_parameters_are_checked_with_their_field_path(
    api: tuple[TestClient, ServiceSettings],
) -> None:
    client, _ = api
    auth = login(client, "alice")
    for params, loc in [
        ({"units": 0}, ["units"]),
        ({"units": "; rm -rf /"}, ["units"]),
        ({"write_files": False}, ["write_files"]),  # fixed by the template
        ({"nonsense": 1}, ["nonsense"]),
    ]:
        r = client.post(
            f"{API_PREFIX}/jobs",
            json={"template": "toy", "name": "x", "params": params},
            headers=auth,
        )
        assert r.status_code == 422, (params, r.text)
        assert [d["loc"] for d in r.json()["detail"]] == [loc], r.json()
    r = client.post(f"{API_PREFIX}/jobs", json={"template": "no-such", "name": "x"}, headers=auth)
    assert r.status_code == 422 and "no-such" in r.text
    templates = client.get(f"{API_PREFIX}/templates", headers=auth).json()
    toy = next(t for t in templates if t["name"] == "toy")
    assert set(toy["schema"]["properties"]) == {"units", "sleep", "fail_units"}


def test_resumable_upload_with_an_interruption(api: tuple[TestClient, ServiceSettings]) -> None:
    client, settings = api
    auth = login(client, "alice")
    job = create_job(client, auth)
    base = f"{API_PREFIX}/jobs/{job['id']}/files"
    data = bytes(range(256)) * 20  # 5,120 bytes
    digest = hashlib.sha256(data).hexdigest()
    r = client.post(
        base, json={"path": "in/a.bin", "size": len(data), "sha256": digest}, headers=auth
    )
    assert r.json()["offset"] == 0
    assert client.get(f"{API_PREFIX}/jobs/{job['id']}", headers=auth).json()["state"] == "uploading"
    assert (
        client.put(f"{base}/in/a.bin?offset=0", content=data[:2000], headers=auth).json()["offset"]
        == 2000
    )
    # "the connection drops": the client asks where to resume
    assert client.get(f"{base}/in/a.bin", headers=auth).json()["offset"] == 2000
    wrong = client.put(f"{base}/in/a.bin?offset=1000", content=data[1000:3000], headers=auth)
    assert wrong.status_code == 409 and wrong.json()["expected_offset"] == 2000
    # declaring again resumes rather than restarting
    again = client.post(
        base, json={"path": "in/a.bin", "size": len(data), "sha256": digest}, headers=auth
    )
    assert again.json()["offset"] == 2000
    r = client.put(f"{base}/in/a.bin?offset=2000", content=data[2000:], headers=auth)
    assert r.json()["offset"] == len(data)
    done = client.post(f"{base}/in/a.bin/finish", headers=auth)
    assert done.status_code == 200, done.text
    target = settings.jobs_dir / "alice" / job["id"] / "input" / "in" / "a.bin"
    assert target.read_bytes() == data
    listing = client.get(base, headers=auth).json()
    assert listing == {"files": [{"path": "in/a.bin", "size": len(data)}], "uploads": []}
    assert client.get(f"{API_PREFIX}/jobs/{job['id']}", headers=auth).json()["state"] == "ready"


def test_a_wrong_digest_is_refused_and_nothing_kept(
    api: tuple[TestClient, ServiceSettings],
) -> None:
    client, settings = api
    auth = login(client, "alice")
    job = create_job(client, auth)
    base = f"{API_PREFIX}/jobs/{job['id']}/files"
    client.post(base, json={"path": "a.bin", "size": 3, "sha256": "1" * 64}, headers=auth)
    client.put(f"{base}/a.bin?offset=0", content=b"abc", headers=auth)
    r = client.post(f"{base}/a.bin/finish", headers=auth)
    assert r.status_code == 422 and "sha" in r.text.lower()
    assert not (settings.jobs_dir / "alice" / job["id"] / "input" / "a.bin").exists()
    too_big = client.post(
        base, json={"path": "big.bin", "size": 20_000, "sha256": "1" * 64}, headers=auth
    )
    assert too_big.status_code == 413  # the quota is 10,000 bytes here


def test_start_cancel_restart_delete_follow_the_state_rules(
    api: tuple[TestClient, ServiceSettings],
) -> None:
    client, settings = api
    auth = login(client, "alice")
    job = create_job(client, auth)
    url = f"{API_PREFIX}/jobs/{job['id']}"
    assert client.post(f"{url}/restart", headers=auth).status_code == 409  # never ran
    started = client.post(f"{url}/start", headers=auth)
    assert started.status_code == 200 and started.json()["state"] == "queued"
    assert client.post(f"{url}/start", headers=auth).status_code == 409
    assert client.delete(url, headers=auth).status_code == 409  # queued
    cancelled = client.post(f"{url}/cancel", headers=auth)  # not submitted: at once
    assert cancelled.json()["state"] == "cancelled"
    assert client.post(f"{url}/cancel", headers=auth).status_code == 409
    again = client.post(f"{url}/restart", headers=auth)
    assert again.json()["state"] == "queued" and again.json()["attempts"] == 2
    client.post(f"{url}/cancel", headers=auth)
    assert client.get(f"{url}/progress", headers=auth).json()["steps"] == []
    assert client.get(f"{url}/logs", headers=auth).json() == {"text": "", "offset": 0, "size": 0}
    assert client.get(f"{url}/summary", headers=auth).status_code == 404
    assert client.delete(url, headers=auth).status_code == 204
    assert client.get(url, headers=auth).status_code == 404
    assert not (settings.jobs_dir / "alice" / job["id"]).exists()
    listed = client.get(f"{API_PREFIX}/jobs?state=queued", headers=auth).json()
    assert listed == []


def test_admin_routes_are_for_admins_only(api: tuple[TestClient, ServiceSettings]) -> None:
    client, _ = api
    alice, root = login(client, "alice"), login(client, "root")
    job = create_job(client, alice)
    for url in ("/admin/users", "/admin/jobs"):
        assert client.get(f"{API_PREFIX}{url}", headers=alice).status_code == 403
    users = client.get(f"{API_PREFIX}/admin/users", headers=root).json()
    assert [(u["name"], u["is_admin"], u["jobs"]) for u in users] == [
        ("alice", False, 1),
        ("bob", False, 0),
        ("root", True, 0),
    ]
    jobs = client.get(f"{API_PREFIX}/admin/jobs", headers=root).json()
    assert [(j["id"], j["owner"]) for j in jobs] == [(job["id"], "alice")]
    # an admin does not reach another user's job through the user routes
    assert client.get(f"{API_PREFIX}/jobs/{job['id']}", headers=root).status_code == 404


@contextmanager
def _local_time(tz: str) -> Iterator[None]:
    """This process's local time zone set to ``tz`` (``TZ`` and :func:`time.tzset`)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = tz
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_review_fixes_dates_logs_summary_restart_delete(
    api: tuple[TestClient, ServiceSettings],
) -> None:
    """Naive dates are UTC; odd log/summary requests are 4xx; restart keeps start's checks."""
    client, settings = api
    auth = login(client, "alice")
    job = create_job(client, auth)
    url = f"{API_PREFIX}/jobs/{job['id']}"
    created = datetime.fromisoformat(job["created_at"]).astimezone(UTC).replace(tzinfo=None)
    second = timedelta(seconds=1)

    def listed(query: str, at: datetime) -> list[str]:
        """The ids listed with ``?query=at`` (a naive date: no offset, no Z)."""
        r = client.get(
            f"{API_PREFIX}/jobs?{query}={at.isoformat(timespec='seconds')}", headers=auth
        )
        assert r.status_code == 200, r.text
        return [j["id"] for j in r.json()]

    with _local_time("Etc/GMT-9"):  # the process's local time 9 h ahead: naive is still UTC
        assert listed("since", created - second) == [job["id"]]
        assert listed("since", created + second) == []
        assert listed("until", created - second) == []
        assert listed("until", created + second) == [job["id"]]
    assert client.get(f"{url}/logs?step=..&unit=x", headers=auth).status_code == 422
    run = settings.jobs_dir / "alice" / job["id"] / "run"
    (run / "logs" / "s" / "u.log").mkdir(parents=True)  # a folder where a log is expected
    assert client.get(f"{url}/logs?step=s&unit=u", headers=auth).status_code == 404
    (run / "summary.json").write_text("{torn")
    assert client.get(f"{url}/summary", headers=auth).status_code == 404
    # cancelled before it ever ran, with an upload still open: restart refuses like start
    files = f"{url}/files"
    client.post(files, json={"path": "a.bin", "size": 3, "sha256": "1" * 64}, headers=auth)
    assert client.post(f"{url}/cancel", headers=auth).json()["state"] == "cancelled"
    r = client.post(f"{url}/restart", headers=auth)
    assert r.status_code == 409 and "unfinished uploads" in r.text
    # a job the worker still holds is not deleted under it
    with session_factory(make_engine(settings.database_url))() as s:
        from scopeflow.service.db import Job

        row = s.get(Job, job["id"])
        assert row is not None
        row.claimed_by = "worker-1"
        s.commit()
    assert client.delete(url, headers=auth).status_code == 409


def test_result_downloads_resume_only_the_same_file(
    api: tuple[TestClient, ServiceSettings],
) -> None:
    """ETag + If-Range: a range of a file that changed comes back whole (200)."""
    client, settings = api
    auth = login(client, "alice")
    job = create_job(client, auth)
    out = settings.jobs_dir / "alice" / job["id"] / "run" / "outputs"
    out.mkdir(parents=True)
    (out / "t.csv").write_text("0123456789")
    url = f"{API_PREFIX}/jobs/{job['id']}/results/outputs/t.csv"
    full = client.get(url, headers=auth)
    etag = full.headers["etag"]
    part = client.get(url, headers={**auth, "Range": "bytes=4-", "If-Range": etag})
    assert part.status_code == 206 and part.content == b"456789"
    stale = client.get(url, headers={**auth, "Range": "bytes=4-", "If-Range": '"0-0"'})
    assert stale.status_code == 200 and stale.content == b"0123456789"
    # while a body streams, the request holds no database connection
    pool = client.fastapi_app.state.service.engine.pool  # type: ignore[attr-defined]
    for u in (url, f"{API_PREFIX}/jobs/{job['id']}/results.zip"):
        with client.stream("GET", u, headers=auth) as r:
            assert r.status_code == 200 and pool.checkedout() == 0
            r.read()


def test_templates_installed_later_are_used_without_a_restart(
    api: tuple[TestClient, ServiceSettings],
) -> None:
    """The API reads the registry as the file is now, as the worker does."""
    client, settings = api
    auth = login(client, "alice")
    registry = settings.data_dir / "templates.yaml"
    registry.unlink()
    assert client.get(f"{API_PREFIX}/templates", headers=auth).json() == []
    assert (
        client.post(
            f"{API_PREFIX}/jobs", json={"template": "toy", "name": "x"}, headers=auth
        ).status_code
        == 422
    )
    shutil.copy(EXAMPLE, registry)
    names = {t["name"] for t in client.get(f"{API_PREFIX}/templates", headers=auth).json()}
    assert "toy" in names
    assert (
        client.post(
            f"{API_PREFIX}/jobs", json={"template": "toy", "name": "x"}, headers=auth
        ).status_code
        == 201
    )
