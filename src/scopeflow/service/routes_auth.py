"""Routes without a job: health, login, logout, the caller."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field

from scopeflow import __version__
from scopeflow.service.auth import authenticate, issue_token, revoke
from scopeflow.service.db import utcnow
from scopeflow.service.deps import CurrentUser, DbSession, Svc

__all__ = ["router"]

router = APIRouter()


class Login(BaseModel):
    """Body of ``POST /auth/login``."""

    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


@router.get("/health")
def health() -> dict[str, str]:
    """Liveness (no authentication)."""
    return {"status": "ok", "version": __version__}


@router.post("/auth/login")
def login(body: Login, session: DbSession, svc: Svc) -> dict[str, Any]:
    """A session token for a user name and password (401 otherwise, the same for both)."""
    user = authenticate(session, body.name, body.password)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong user name or password")
    ttl = timedelta(seconds=svc.settings.token_ttl_s)
    token = issue_token(session, user, ttl=ttl)
    session.commit()
    return {"token": token, "expires_at": (utcnow() + ttl).isoformat(), "user": user.name}


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(request: Request, user: CurrentUser, session: DbSession) -> None:
    """Revoke the token of this request."""
    revoke(session, request.headers.get("authorization", "").partition(" ")[2].strip())
    session.commit()


@router.get("/me")
def me(user: CurrentUser) -> dict[str, Any]:
    """The caller."""
    return {"name": user.name, "is_admin": user.is_admin, "group": user.group}
