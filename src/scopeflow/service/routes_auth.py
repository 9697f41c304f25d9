"""Routes without a job: health, login, logout, the caller, the caller's API keys.

Logins are limited on failures (:mod:`scopeflow.service.throttle`); a user makes, lists and
revokes their own API keys (at most :data:`MAX_API_KEY_DAYS` days each).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field

from scopeflow import __version__
from scopeflow.service.auth import (
    api_key_json,
    api_keys,
    authenticate,
    new_token,
    revoke,
    revoke_api_key,
)
from scopeflow.service.db import TokenKind, iso
from scopeflow.service.deps import CurrentUser, DbSession, Svc, bearer_token

__all__ = ["router"]

router = APIRouter()
#: The longest lifetime of an API key a user makes for themselves (administrators may make
#: keys that do not expire: ``scopeflow admin create-api-key``).
MAX_API_KEY_DAYS = 365


class Login(BaseModel):
    """Body of ``POST /auth/login``."""

    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


@router.get("/health")
def health() -> dict[str, str]:
    """Liveness (no authentication)."""
    return {"status": "ok", "version": __version__}


class ApiKeyCreate(BaseModel):
    """Body of ``POST /auth/api-keys``."""

    name: str = Field(min_length=1, max_length=128, description="what the key is for")
    days: int = Field(90, ge=1, le=MAX_API_KEY_DAYS, description="days until the key expires")


@router.post("/auth/login")
def login(body: Login, request: Request, session: DbSession, svc: Svc) -> dict[str, Any]:
    """A session token for a user name and password (401 otherwise, the same for both).

    After too many failures (see :mod:`scopeflow.service.throttle`) a 429 with
    ``Retry-After``, before the password is checked.
    """
    throttle = svc.login_throttle
    address = request.client.host if request.client else ""
    wait, started = throttle.begin(body.name, address)  # counted as a failure until right
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many failed logins; try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    user = authenticate(session, body.name, body.password)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong user name or password")
    throttle.succeeded(body.name, address, started)
    token, record = new_token(session, user, ttl=svc.settings.token_ttl_s)
    session.commit()
    return {"token": token, "expires_at": iso(record.expires_at), "user": user.name}


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(request: Request, user: CurrentUser, session: DbSession) -> None:
    """Revoke the token of this request."""
    revoke(session, bearer_token(request) or "")
    session.commit()


@router.get("/me")
def me(user: CurrentUser) -> dict[str, Any]:
    """The caller."""
    return {"name": user.name, "is_admin": user.is_admin, "group": user.group}


@router.post("/auth/api-keys", status_code=status.HTTP_201_CREATED)
def create_api_key(body: ApiKeyCreate, user: CurrentUser, session: DbSession) -> dict[str, Any]:
    """A new API key of the caller (for scripts); the key is in this answer only."""
    key, record = new_token(
        session, user, TokenKind.API_KEY, timedelta(days=body.days), name=body.name
    )
    answer = {**api_key_json(record), "key": key}
    session.commit()
    return answer


@router.get("/auth/api-keys")
def list_api_keys(user: CurrentUser, session: DbSession) -> list[dict[str, Any]]:
    """The caller's API keys (never the keys themselves)."""
    return [api_key_json(k) for k in api_keys(session, user)]


@router.delete("/auth/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_api_key(key_id: int, user: CurrentUser, session: DbSession) -> None:
    """Revoke one of the caller's API keys (404 for another user's key or a login)."""
    if not revoke_api_key(session, key_id, user):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no API key {key_id}")
    session.commit()
