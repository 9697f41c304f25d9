"""Routes for administrators only (403 for everyone else): users, every user's jobs and API keys."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from scopeflow.service.auth import api_key_json, api_keys, find_user, revoke_api_key
from scopeflow.service.db import Job, User, iso
from scopeflow.service.deps import CurrentUser, DbSession
from scopeflow.service.routes_jobs import job_json
from scopeflow.service.states import JobState

__all__ = ["router"]


def admin_user(user: CurrentUser) -> User:
    """The caller, if an administrator.

    Raises
    ------
    HTTPException
        403 for a user without the admin role.
    """
    if not user.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "administrators only")
    return user


Admin = Annotated[User, Depends(admin_user)]
router = APIRouter(prefix="/admin")


@router.get("/users")
def list_users(admin: Admin, session: DbSession) -> list[dict[str, Any]]:
    """Every user with role, group and number of jobs."""
    rows = session.execute(  # one query, not one per user loading all their jobs
        select(User, func.count(Job.id))
        .outerjoin(Job, Job.owner_id == User.id)
        .group_by(User.id)
        .order_by(User.name)
    )
    return [
        {
            "name": u.name,
            "is_admin": u.is_admin,
            "group": u.group,
            "created_at": iso(u.created_at),
            "jobs": int(n),
        }
        for u, n in rows
    ]


@router.get("/jobs")
def list_all_jobs(
    admin: Admin,
    session: DbSession,
    state: JobState | None = None,
    limit: int = Query(500, ge=1, le=5000),
) -> list[dict[str, Any]]:
    """Every user's jobs (newest first), each with its owner."""
    q = select(Job).options(joinedload(Job.owner))  # the owners in the same query
    if state is not None:
        q = q.where(Job.state == state)
    jobs = session.scalars(q.order_by(Job.created_at.desc(), Job.id).limit(limit))
    return [{**job_json(j), "owner": j.owner.name} for j in jobs]


@router.get("/api-keys")
def list_all_api_keys(
    admin: Admin, session: DbSession, user: str | None = None
) -> list[dict[str, Any]]:
    """Every user's API keys (or one user's: ``?user=NAME``), never the keys themselves."""
    owner = None
    if user is not None:
        owner = find_user(session, user)
        if owner is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {user!r}")
    return [api_key_json(k) for k in api_keys(session, owner)]


@router.delete("/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_any_api_key(key_id: int, admin: Admin, session: DbSession) -> None:
    """Revoke any user's API key (404 when there is none with this id)."""
    if not revoke_api_key(session, key_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no API key {key_id}")
    session.commit()
