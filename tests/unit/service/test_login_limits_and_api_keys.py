"""Failed-login limits (``service.throttle``) and API keys made, listed and revoked over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from scopeflow.service.app import API_PREFIX
from scopeflow.service.db import Token, User
from scopeflow.service.throttle import LoginThrottle
from tests.unit.service import conftest
from tests.unit.service.conftest import Clock, login, service_app

API = API_PREFIX


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, Clock]]:
    with service_app(db_url, tmp_path) as (client, _):
        clock = Clock(1000.0)
        client.app.state.service.login_throttle = LoginThrottle(clock=clock)  # type: ignore[attr-defined]
        yield client, clock


def _login(client: TestClient, name: str, password: str | None = None) -> int:
    """The status of a login of ``name`` (with its right password unless one is given)."""
    r = client.post(
        f"{API}/auth/login", json={"name": name, "password": password or conftest.password(name)}
    )
    return r.status_code


def _guess(t: LoginThrottle, name: str, addresses: list[str], tries: int) -> None:
    """``tries`` wrong passwords for ``name`` from each address, as many as each is allowed."""
    for _ in range(tries):
        for address in addresses:
            t.begin(name, address)  # counted as a failure, never taken back


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
    assert t.retry_after("zed", "3.3.3.3") == 60
    # one name from many addresses: past the name limit an address that failed for it waits
    # after one failure (not per_pair), but an address that has not failed may still try
    for i in range(7):
        t.begin("carol", f"10.0.0.{i}")
    assert t.retry_after("carol", "10.0.0.0") == 60
    assert t.retry_after("carol", "10.0.0.99") == 0


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


@pytest.mark.parametrize(
    ("attackers", "limits"),
    [(4, {"per_name": 20}), (25, {})],  # 4 addresses at their pair limit reach per_name=20
    ids=["4-addresses", "25-addresses-defaults"],
)
def test_many_addresses_cannot_lock_a_user_out(attackers: int, limits: dict[str, int]) -> None:
    clock = Clock()
    t = LoginThrottle(clock=clock, **limits)
    bad = [f"203.0.113.{i}" for i in range(attackers)]
    _guess(t, "alice", bad, tries=5)
    assert all(t.retry_after("alice", a) == 300 for a in bad)  # each at its pair limit
    # the user, from an address never seen: the first try is allowed, and a right password works
    wait, started = t.begin("alice", "198.51.100.7")
    assert wait == 0
    t.succeeded("alice", "198.51.100.7", started)
    # a mistyped password from a fresh address: one try per window while the name is attacked
    assert t.begin("alice", "198.51.100.8")[0] == 0
    assert t.retry_after("alice", "198.51.100.8") == 300
    # an address the user logged in from before keeps its full pair limit
    for _ in range(5):
        clock.now += 1
        assert t.begin("alice", "198.51.100.7")[0] == 0
    assert t.retry_after("alice", "198.51.100.7") == 296
    # and the attackers get no more tries from their addresses until the window moves on
    assert all(t.begin("alice", a)[0] == 295 for a in bad)


def test_the_slowdown_ends_with_the_attack() -> None:
    clock = Clock()
    t = LoginThrottle(window_s=60, per_pair=3, per_address=10, per_name=6, clock=clock)
    _guess(t, "dora", ["a", "b"], tries=3)  # 6 failures: the name is under attack
    t.begin("dora", "home")
    assert t.retry_after("dora", "home") == 60  # one failure is all a new address gets
    clock.now += 61  # the attack's failures (and home's) leave the window
    for _ in range(3):
        assert t.begin("dora", "home")[0] == 0  # per_pair again
    assert t.retry_after("dora", "home") == 60


def test_the_throttle_refuses_settings_that_lock_a_name_out() -> None:
    with pytest.raises(ValueError, match="per_pair_attacked"):
        LoginThrottle(per_pair_attacked=0)


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
    right = {"name": "alice", "password": conftest.password("alice")}
    r = client.post(f"{API}/auth/login", json=right)  # refused before the password is checked
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


def test_a_user_logs_in_from_a_new_address_while_many_addresses_guess(
    env: tuple[TestClient, Clock],
) -> None:
    client, _ = env
    throttle: LoginThrottle = client.app.state.service.login_throttle  # type: ignore[attr-defined]
    _guess(throttle, "alice", [f"203.0.113.{i}" for i in range(40)], tries=5)  # 200 failures
    assert _login(client, "alice") == 200  # "testclient": an address the attack did not use
    assert _login(client, "alice", "guess") == 401
    r = client.post(f"{API}/auth/login", json={"name": "alice", "password": "guess"})
    assert r.status_code == 401  # known now (it logged in): the full pair limit
    new = TestClient(client.app, client=("198.51.100.9", 40000))  # a fresh address
    assert _login(new, "alice") == 200
    assert _login(new, "bob", "guess") == 401  # other names are not slowed
    assert _login(new, "bob") == 200


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
    with client.app.state.service.sessions() as db:  # type: ignore[attr-defined]
        session_ids = db.scalars(
            select(Token.id).join(User).where(User.name == "alice", Token.kind == "session")
        ).all()
    assert session_ids
    for sid in session_ids:
        assert client.delete(f"{API}/auth/api-keys/{sid}", headers=alice).status_code == 404
    assert client.get(f"{API}/me", headers=alice).status_code == 200  # still logged in
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
