"""Failed-login limits (``service.throttle``) and API keys made, listed and revoked over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from scopeflow.service.app import API_PREFIX
from scopeflow.service.throttle import LoginThrottle
from tests.unit.service import conftest
from tests.unit.service.conftest import Clock, login, service_app

API = API_PREFIX


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, Clock]]:
    with service_app(db_url, tmp_path) as (client, _):
        clock = Clock(1000.0)
        client.app.state.login_throttle = LoginThrottle(clock=clock)  # type: ignore[attr-defined]
        yield client, clock


def _login(client: TestClient, name: str, password: str | None = None) -> int:
    """The status of a login of ``name`` (with its right password unless one is given)."""
    r = client.post(
        f"{API}/auth/login", json={"name": name, "password": password or conftest.password(name)}
    )
    return r.status_code


def test_throttle_windows_and_limits() -> None:
    clock = Clock()
    t = LoginThrottle(window_s=60, per_pair=3, per_address=5, per_name=7, clock=clock)
    for _ in range(3):
        assert t.retry_after("alice", "1.1.1.1") == 0
        assert t.begin("alice", "1.1.1.1")[0] == 0  # a failure (never succeeded)
        clock.now += 1
    assert t.retry_after("alice", "1.1.1.1") == 57  # until the first failure leaves the window
    assert t.begin("alice", "1.1.1.1")[0] == 57  # refused, and not counted
    assert t.retry_after("alice", "2.2.2.2") == 0  # another address may still try
    assert t.retry_after("bob", "1.1.1.1") == 0  # and the address other names
    clock.now += 57
    assert t.retry_after("alice", "1.1.1.1") == 0
    # spraying names from one address: the address limit
    for name in ("b", "c", "d", "e", "f"):
        t.begin(name, "3.3.3.3")
    assert t.retry_after("zed", "3.3.3.3") > 0
    # one name from many addresses: the name limit
    for i in range(7):
        t.begin("carol", f"10.0.0.{i}")
    assert t.retry_after("carol", "10.0.0.99") > 0


def test_throttle_counts_attempts_in_flight_and_takes_successes_back() -> None:
    clock = Clock()
    t = LoginThrottle(per_pair=2, per_address=3, clock=clock)
    # logins checked in parallel: each is a failure from its start, so the third is refused
    # before either of the first two has an answer
    assert [t.begin("dan", "a")[0] for _ in range(3)] == [0, 0, 300]
    # a success clears the pair's failures
    t.succeeded("dan", "a", clock.now)
    assert t.retry_after("dan", "a") == 0
    # successes do not count against the address (many users behind one address)
    for i in range(10):
        clock.now += 1
        wait, started = t.begin(f"user{i}", "lab")
        assert wait == 0
        t.succeeded(f"user{i}", "lab", started)
    assert t.retry_after("someone", "lab") == 0


def test_throttle_memory_is_bounded() -> None:
    t = LoginThrottle(max_keys=30, clock=Clock())
    for i in range(1000):
        t.begin(f"user{i}", f"addr{i}")
    assert len(t._fails) <= 30


def test_login_after_too_many_failures_is_429_even_with_the_password(
    env: tuple[TestClient, Clock],
) -> None:
    client, clock = env
    for _ in range(5):
        assert _login(client, "alice", "guess") == 401
    r = client.post(f"{API}/auth/login", json={"name": "alice", "password": "alice-pw"})
    assert r.status_code == 429
    assert 0 < int(r.headers["retry-after"]) <= 300
    assert "too many failed logins" in r.json()["detail"]
    assert _login(client, "bob") == 200  # other users are not affected
    clock.now += 301
    assert _login(client, "alice") == 200
    # a success clears the count
    for _ in range(4):
        assert _login(client, "alice", "guess") == 401
    assert _login(client, "alice") == 200
    assert _login(client, "alice", "guess") == 401
    assert _login(client, "alice") == 200


def test_users_make_list_and_revoke_their_own_api_keys(env: tuple[TestClient, Clock]) -> None:
    client, _ = env
    alice, bob = login(client, "alice"), login(client, "bob")
    r = client.post(f"{API}/auth/api-keys", headers=alice, json={"name": "nightly", "days": 30})
    assert r.status_code == 201, r.text
    made = r.json()
    key = made.pop("key")
    assert made["name"] == "nightly" and made["user"] == "alice" and made["expires_at"]
    with_key = {"Authorization": f"Bearer {key}"}
    assert client.get(f"{API}/me", headers=with_key).json()["name"] == "alice"
    listed = client.get(f"{API}/auth/api-keys", headers=alice).json()
    assert [k["id"] for k in listed] == [made["id"]]
    assert "key" not in listed[0]
    assert client.get(f"{API}/auth/api-keys", headers=bob).json() == []
    # bob cannot revoke alice's key; nobody can revoke a login session by this route
    assert client.delete(f"{API}/auth/api-keys/{made['id']}", headers=bob).status_code == 404
    for bad in ({"name": "x", "days": 366}, {"name": "", "days": 1}, {"days": 1}):
        assert client.post(f"{API}/auth/api-keys", headers=alice, json=bad).status_code == 422
    assert client.delete(f"{API}/auth/api-keys/{made['id']}", headers=alice).status_code == 204
    assert client.get(f"{API}/me", headers=with_key).status_code == 401
    assert client.get(f"{API}/auth/api-keys", headers=alice).json() == []
    assert client.get(f"{API}/auth/api-keys").status_code == 401


def test_admins_list_and_revoke_any_api_key(env: tuple[TestClient, Clock]) -> None:
    client, _ = env
    alice, root = login(client, "alice"), login(client, "root")
    made = client.post(f"{API}/auth/api-keys", headers=alice, json={"name": "ci"}).json()
    assert client.get(f"{API}/admin/api-keys", headers=alice).status_code == 403
    assert client.delete(f"{API}/admin/api-keys/{made['id']}", headers=alice).status_code == 403
    everyone = client.get(f"{API}/admin/api-keys", headers=root).json()
    assert [(k["id"], k["user"]) for k in everyone] == [(made["id"], "alice")]
    assert client.get(f"{API}/admin/api-keys?user=bob", headers=root).json() == []
    assert client.get(f"{API}/admin/api-keys?user=nobody", headers=root).status_code == 404
    assert client.delete(f"{API}/admin/api-keys/{made['id']}", headers=root).status_code == 204
    assert client.delete(f"{API}/admin/api-keys/{made['id']}", headers=root).status_code == 404
    assert (
        client.get(f"{API}/me", headers={"Authorization": f"Bearer {made['key']}"}).status_code
        == 401
    )
