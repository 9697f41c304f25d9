"""The request dependencies: who is asking, and what they leave held."""

from __future__ import annotations

import pytest
from fastapi import HTTPException
from sqlalchemy.orm import Session
from starlette.requests import Request

from scopeflow.service.auth import issue_token
from scopeflow.service.deps import bearer_token, current_user
from tests.conftest import add_user


def _request(authorization: str | None) -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


def test_the_user_is_found_and_no_connection_is_held_afterwards(session: Session) -> None:
    """The route then waits for a thread without holding a pooled connection.

    With 100 concurrent clients, connections held across that wait (50) and threads waiting
    for connections (40) deadlocked the API: every request timed out.
    """
    alice = add_user(session, "alice")
    token = issue_token(session, alice, ttl=3600)
    session.commit()
    session.get(type(alice), alice.id)  # a transaction open, as a request's would be
    user = current_user(_request(f"Bearer {token}"), session)
    assert user.name == "alice"
    assert not session.in_transaction()  # the connection went back to the pool
    assert user.name == "alice" and user.id == alice.id  # still readable


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer nonsense"])
def test_no_valid_bearer_token_is_a_401(session: Session, header: str | None) -> None:
    with pytest.raises(HTTPException) as info:
        current_user(_request(header), session)
    assert info.value.status_code == 401
    assert info.value.headers == {"WWW-Authenticate": "Bearer"}


def test_bearer_token_parsing() -> None:
    assert bearer_token(_request("Bearer  abc ")) == "abc"
    assert bearer_token(_request("bearer abc")) == "abc"
    assert bearer_token(_request("Basic abc")) is None
    assert bearer_token(_request(None)) is None
