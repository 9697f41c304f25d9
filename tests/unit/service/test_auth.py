"""Passwords (argon2) and bearer tokens (stored as SHA-256 only)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from scopeflow.core import AlreadyExistsError
from scopeflow.service.auth import (
    authenticate,
    create_user,
    hash_password,
    hash_token,
    issue_token,
    purge_expired_tokens,
    resolve_token,
    revoke,
    verify_password,
)
from scopeflow.service.db import Token, TokenKind, User, utcnow


def test_hash_and_verify() -> None:
    h = hash_password("correct horse")
    assert h.startswith("$argon2id$")
    assert "correct horse" not in h
    assert hash_password("correct horse") != h  # salted
    assert verify_password(h, "correct horse")
    assert not verify_password(h, "Correct horse")
    assert not verify_password("not a hash", "correct horse")
    assert not verify_password(h, "\udcff")  # not encodable: False, not an error


def test_create_user_and_authenticate(session: Session) -> None:
    alice = create_user(session, "alice", "s3cret!", is_admin=True, group="imaging")
    session.commit()
    stored = session.scalar(select(User).where(User.name == "alice"))
    assert stored is alice
    assert stored.is_admin
    assert stored.group == "imaging"
    assert stored.password_hash != "s3cret!"
    assert authenticate(session, "alice", "s3cret!") is alice
    assert authenticate(session, "alice", "wrong") is None
    assert authenticate(session, "nobody", "s3cret!") is None
    assert authenticate(session, "", "") is None


def test_create_user_refuses(session: Session) -> None:
    create_user(session, "alice", "pw")
    with pytest.raises(AlreadyExistsError, match="alice"):
        create_user(session, "alice", "other")
    for bad in ("", " bob", "x" * 65):
        with pytest.raises(ValueError, match="user name"):
            create_user(session, bad, "pw")
    with pytest.raises(ValueError, match="user name"):
        create_user(session, None, "pw")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        ".",
        "..",
        "...",
        ".hidden",
        "-rf",
        "_x",
        "a/b",
        "../alice",
        "a\\b",
        "a b",
        "bob\n",
        "a\x00",
        "ä",
        "x" * 65,
        "alice/",
    ],
)
def test_user_names_are_safe_folder_names(session: Session, bad: str) -> None:
    with pytest.raises(ValueError, match="user name has 1 to 64 characters"):
        create_user(session, bad, "pw")


@pytest.mark.parametrize("good", ["a", "alice", "A.b-c_d", "0", "x" * 64, "j.doe-2"])
def test_good_user_names(session: Session, good: str) -> None:
    assert create_user(session, good, "pw").name == good
    with pytest.raises(ValueError, match="password"):
        create_user(session, "bob", "")


def test_outdated_hash_is_replaced_on_login(session: Session) -> None:
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("pw")
    user = create_user(session, "alice", "pw")
    user.password_hash = weak
    session.commit()
    assert authenticate(session, "alice", "pw") is user
    assert user.password_hash != weak
    assert authenticate(session, "alice", "pw") is user


def test_token_is_stored_hashed_and_resolves(session: Session) -> None:
    alice = create_user(session, "alice", "pw")
    token = issue_token(session, alice, TokenKind.SESSION, timedelta(hours=1), name="laptop")
    session.commit()
    assert len(token) >= 43
    record = session.scalars(select(Token)).one()
    assert record.token_hash == hashlib.sha256(token.encode()).hexdigest() == hash_token(token)
    assert token not in {record.token_hash, record.name}
    assert record.kind is TokenKind.SESSION
    assert record.expires_at is not None
    assert record.expires_at - record.created_at == timedelta(hours=1)
    assert record.last_used_at is None
    assert resolve_token(session, token) is alice
    assert record.last_used_at is not None
    assert issue_token(session, alice, "session", 60) != token  # random each time


def test_expired_token_resolves_to_none(session: Session) -> None:
    alice = create_user(session, "alice", "pw")
    t0 = utcnow()
    token = issue_token(session, alice, TokenKind.SESSION, 60, now=t0)
    session.commit()
    assert resolve_token(session, token, now=t0 + timedelta(seconds=59)) is alice
    assert resolve_token(session, token, now=t0 + timedelta(seconds=60)) is None
    assert resolve_token(session, token, now=t0 + timedelta(days=3)) is None
    assert purge_expired_tokens(session, now=t0 + timedelta(seconds=61)) == 1
    assert session.scalars(select(Token)).all() == []


@pytest.mark.parametrize(
    "garbage",
    ["", "x", "Bearer abc", "a" * 10_000, "\udcff\ud800", "é€🙂", "' OR 1=1 --", None, 42, b"x"],
)
def test_garbage_token_resolves_to_none(session: Session, garbage: object) -> None:
    alice = create_user(session, "alice", "pw")
    issue_token(session, alice, TokenKind.API_KEY, None)
    session.commit()
    assert resolve_token(session, garbage) is None


def test_api_key_without_expiry(session: Session) -> None:
    alice = create_user(session, "alice", "pw")
    key = issue_token(session, alice, TokenKind.API_KEY, None, name="script")
    session.commit()
    record = session.scalars(select(Token)).one()
    assert record.kind is TokenKind.API_KEY
    assert record.expires_at is None
    assert resolve_token(session, key, now=utcnow() + timedelta(days=3650)) is alice
    assert purge_expired_tokens(session, now=utcnow() + timedelta(days=3650)) == 0


def test_issue_token_refuses_bad_lifetimes(session: Session) -> None:
    alice = create_user(session, "alice", "pw")
    with pytest.raises(ValueError, match="lifetime"):
        issue_token(session, alice, TokenKind.SESSION, None)
    with pytest.raises(ValueError, match="positive"):
        issue_token(session, alice, TokenKind.API_KEY, timedelta(seconds=-1))
    with pytest.raises(ValueError, match="bogus"):
        issue_token(session, alice, "bogus", 60)


def test_revoked_token_resolves_to_none(session: Session) -> None:
    alice = create_user(session, "alice", "pw")
    keep = issue_token(session, alice, TokenKind.API_KEY, None)
    gone = issue_token(session, alice, TokenKind.SESSION, 3600)
    session.commit()
    assert revoke(session, gone)
    session.commit()
    assert resolve_token(session, gone) is None
    assert resolve_token(session, keep) is alice
    assert not revoke(session, gone)
    assert not revoke(session, "garbage")


def test_deleting_a_user_deletes_their_tokens(session: Session) -> None:
    alice = create_user(session, "alice", "pw")
    token = issue_token(session, alice, TokenKind.SESSION, 3600)
    session.commit()
    session.delete(alice)
    session.commit()
    assert resolve_token(session, token) is None
    assert session.scalars(select(Token)).all() == []


def test_last_used_is_written_at_most_once_a_minute(session: Session) -> None:
    alice = create_user(session, "alice", "pw")
    token = issue_token(session, alice, TokenKind.API_KEY, None)
    t0 = utcnow()
    resolve_token(session, token, now=t0)
    resolve_token(session, token, now=t0 + timedelta(seconds=30))
    record = session.scalars(select(Token)).one()
    assert record.last_used_at == t0
    resolve_token(session, token, now=t0 + timedelta(seconds=90))
    assert record.last_used_at == t0 + timedelta(seconds=90)
