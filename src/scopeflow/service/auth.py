"""Users, passwords and bearer tokens.

Passwords are hashed with argon2id (argon2-cffi's defaults). A token is 32 random bytes
(URL-safe base64), shown to its owner once; the database keeps only its SHA-256, so a leaked
database does not leak usable tokens. Login sessions expire; API keys may not.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import Argon2Error, InvalidHashError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, joinedload

from scopeflow.core.errors import AlreadyExistsError
from scopeflow.service.db import Token, TokenKind, User, iso, utcnow

__all__ = [
    "MAX_TOKEN_LENGTH",
    "api_key_json",
    "api_keys",
    "authenticate",
    "create_user",
    "find_token",
    "find_user",
    "hash_password",
    "hash_token",
    "issue_token",
    "new_token",
    "purge_expired_tokens",
    "resolve_token",
    "revoke",
    "revoke_api_key",
    "verify_password",
]

MAX_TOKEN_LENGTH = 256
"""Longer strings are not tokens (ours are 43 characters); they are refused without hashing."""

_LAST_USED_RESOLUTION = timedelta(minutes=1)  # write last_used_at at most this often per token

_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""Acceptable login names (used as folder names: never ``.``, ``..``, ``/`` or hidden)."""

_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """A hash to verify against when a user does not exist (so the reply takes as long)."""
    return _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (salted; a string to store as it is)."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; False (never an error) for a bad hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (Argon2Error, InvalidHashError, UnicodeEncodeError):
        return False


def hash_token(token: str) -> str:
    """The SHA-256 (hexadecimal) of a token: what the database stores and looks up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_user(
    session: Session,
    name: str,
    password: str,
    *,
    is_admin: bool = False,
    group: str | None = None,
) -> User:
    """Add a user (flushed, not committed).

    Parameters
    ----------
    session
        Database session.
    name
        Login name: 1 to 64 ASCII letters, digits, ``_``, ``.`` or ``-``, starting with a
        letter or digit (it becomes the name of the user's folder).
    password
        The password (not empty); only its hash is stored.
    is_admin
        Give the admin role.
    group
        Group or project, used e.g. to choose the user's cluster account.

    Raises
    ------
    AlreadyExistsError
        A user of this name exists.
    ValueError
        The name or the password is not acceptable.
    """
    if not isinstance(name, str) or not _USER_NAME.fullmatch(name):
        raise ValueError(
            "a user name has 1 to 64 characters: ASCII letters, digits, '_', '.' and '-', "
            f"starting with a letter or digit (it names the user's folder): {name!r}"
        )
    if not password:
        raise ValueError("the password must not be empty")
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise AlreadyExistsError("user", name)
    user = User(name=name, password_hash=hash_password(password), is_admin=is_admin, group=group)
    session.add(user)
    session.flush()
    return user


def find_user(session: Session, name: str) -> User | None:
    """The user called ``name``, or None."""
    return session.scalar(select(User).where(User.name == name))


def authenticate(session: Session, name: str, password: str) -> User | None:
    """The user with this name and password, or None.

    Takes about as long for an unknown name as for a wrong password (a dummy hash is verified),
    so that replies do not tell which names exist. An outdated hash (weaker parameters than the
    current defaults) is replaced on success (flushed, not committed).
    """
    user = find_user(session, name)
    if user is None:
        verify_password(_dummy_hash(), password)
        return None
    if not verify_password(user.password_hash, password):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        session.flush()
    return user


def issue_token(
    session: Session,
    user: User,
    kind: TokenKind | str = TokenKind.SESSION,
    ttl: timedelta | float | None = None,
    *,
    name: str | None = None,
    now: datetime | None = None,
) -> str:
    """Make a new token for ``user`` and return it (:func:`new_token` without the record)."""
    return new_token(session, user, kind, ttl, name=name, now=now)[0]


def new_token(
    session: Session,
    user: User,
    kind: TokenKind | str = TokenKind.SESSION,
    ttl: timedelta | float | None = None,
    *,
    name: str | None = None,
    now: datetime | None = None,
) -> tuple[str, Token]:
    """Make a new token for ``user``; return it and its record (the token cannot be read back).

    Parameters
    ----------
    session
        Database session (the token is flushed, not committed).
    user
        Owner of the token.
    kind
        ``session`` (a login) or ``api_key`` (for scripts).
    ttl
        Lifetime, as a timedelta or in seconds; None for a token that does not expire (allowed
        for API keys only).
    name
        A label (e.g. which script uses an API key).
    now
        Creation time (default: now).

    Raises
    ------
    ValueError
        A session token without a lifetime, or a lifetime that is not positive.
    """
    kind = TokenKind(kind)
    if ttl is None and kind is TokenKind.SESSION:
        raise ValueError("a session token needs a lifetime (ttl)")
    if ttl is not None and not isinstance(ttl, timedelta):
        ttl = timedelta(seconds=ttl)
    if ttl is not None and ttl <= timedelta(0):
        raise ValueError(f"a token's lifetime must be positive, got {ttl}")
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    record = Token(
        user_id=user.id,
        token_hash=hash_token(token),
        kind=kind,
        name=name,
        created_at=now,
        expires_at=None if ttl is None else now + ttl,
    )
    session.add(record)
    session.flush()
    return token, record


def find_token(session: Session, token: object) -> Token | None:
    """The record of a token as its owner sent it, or None (never raises on bad input)."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        digest = hash_token(token)
    except UnicodeEncodeError:  # lone surrogates
        return None
    # the owner in the same query: resolve_token (every request) returns it
    return session.scalar(
        select(Token).options(joinedload(Token.user)).where(Token.token_hash == digest)
    )


def resolve_token(session: Session, token: object, now: datetime | None = None) -> User | None:
    """The user a token belongs to, or None if it is unknown, expired or not a token at all.

    Never raises on bad input. Records when the token was last used (at most once a minute per
    token; flushed, not committed).

    Parameters
    ----------
    session
        Database session.
    token
        The token as the client sent it.
    now
        Time of use (default: now).
    """
    record = find_token(session, token)
    if record is None:
        return None
    now = now or utcnow()
    if record.expires_at is not None and record.expires_at <= now:
        return None
    if record.last_used_at is None or now - record.last_used_at >= _LAST_USED_RESOLUTION:
        record.last_used_at = now
        session.flush()
    return record.user


def revoke(session: Session, token: str) -> bool:
    """Delete a token (flushed, not committed); returns whether it existed."""
    record = find_token(session, token)
    if record is None:
        return False
    session.delete(record)
    session.flush()
    return True


def purge_expired_tokens(session: Session, now: datetime | None = None) -> int:
    """Delete every expired token (flushed, not committed); returns how many."""
    now = now or utcnow()
    result = session.execute(
        delete(Token)
        .where(Token.expires_at.is_not(None), Token.expires_at <= now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0))


def api_keys(session: Session, user: User | None = None) -> list[Token]:
    """The API keys of ``user`` (of every user when None), oldest first."""
    q = select(Token).options(joinedload(Token.user)).where(Token.kind == TokenKind.API_KEY)
    if user is not None:
        q = q.where(Token.user_id == user.id)
    return list(session.scalars(q.order_by(Token.created_at, Token.id)))


def revoke_api_key(session: Session, key_id: int, user: User | None = None) -> bool:
    """Delete the API key ``key_id`` (of ``user`` only, unless None); whether it existed.

    Flushed, not committed. Login sessions are not API keys: their ids are not found here.
    """
    q = select(Token).where(Token.id == key_id, Token.kind == TokenKind.API_KEY)
    if user is not None:
        q = q.where(Token.user_id == user.id)
    record = session.scalar(q)
    if record is None:
        return False
    session.delete(record)
    session.flush()
    return True


def api_key_json(key: Token) -> dict[str, object]:
    """What is shown of an API key: never the key itself (only its hash is kept)."""
    return {
        "id": key.id,
        "user": key.user.name,
        "name": key.name,
        "created_at": iso(key.created_at),
        "expires_at": iso(key.expires_at),
        "last_used_at": iso(key.last_used_at),
    }
