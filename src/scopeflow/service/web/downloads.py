"""Download links that need no header: short-lived signed tokens in the URL.

A plain ``<a href>``, an ``<img src>``, napari or Fiji cannot send ``Authorization: Bearer``.
``POST /api/v1/web/jobs/{id}/download-token`` (bearer token, the job's owner only: 404
otherwise) answers a token for *that job's results only*, valid ``ttl_s`` seconds (default
600, at most one day); ``GET /dl/{token}/{path}`` and ``GET /dl/{token}/results.zip`` then
serve the job's result files exactly like ``GET /api/v1/jobs/{id}/results/{path}`` and
``…/results.zip`` (the same listing, path checks, HTTP Range and streaming; ``HEAD`` too),
without a header. Under a token a run's folder reads like a static site, so an OME-Zarr
result opens over HTTP: ``napari.open("http://HOST/dl/TOKEN/outputs/fused.ome.zarr")``; the
reader's requests for ``…/fused.ome.zarr/zarr.json``, ``.zattrs``, chunks … are result files,
and a key that is not one is a 404 as a Zarr store expects.

Token: ``JOB_ID.EXPIRES.SIGNATURE``, the signature an HMAC-SHA256 of the job id, its owner's
id and the expiry (Unix seconds) under a random secret made when the app starts
(:class:`DownloadSigner`, kept in ``app.state.download_signer``). Nothing is stored; a
restart of the service ends every link; a link cannot be revoked before it expires, and a
deleted job or one whose owner changed refuses it. A bad or forged token is a 404 (the same
answer as a missing file), an expired one a 401 with ``WWW-Authenticate: Bearer …
error="invalid_token"`` (:data:`EXPIRED_CHALLENGE`). The tokens appear in URLs, hence in access
logs and browser history: that is why they are short-lived and good for one job's results
only (never its inputs, never another job, never the API).

``GET /dl/{token}/results.zip?prefix=FOLDER`` zips only the result files under one folder (an
OME-Zarr, say), as ``GET /api/v1/jobs/{id}/results.zip?prefix=…`` does.

CORS: browser viewers on another origin (vizarr, Neuroglancer …) read the links with
``fetch``. The token in the URL is the only credential (no cookie, no header), so every answer
under ``/dl/`` (errors included: a Zarr reader must see the 404 of a missing chunk) carries
``Access-Control-Allow-Origin: *`` and exposes the headers a ranged reader needs
(:data:`CORS_HEADERS`); ``OPTIONS`` answers the preflight of a request with ``Range`` /
``If-Range`` / ``If-None-Match`` (:data:`PREFLIGHT_HEADERS`, 204, without looking at the
token). The bearer-token API under ``/api/v1`` gets no CORS header: a page on another origin
cannot call it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import joinedload
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scopeflow.service.db import Job
from scopeflow.service.deps import CurrentUser, DbSession, Svc, owned_job
from scopeflow.service.results import result_file_response, results_zip_response

__all__ = [
    "CORS_HEADERS",
    "DEFAULT_TTL_S",
    "EXPIRED_CHALLENGE",
    "MAX_TTL_S",
    "PREFLIGHT_HEADERS",
    "DownloadSigner",
    "LinkCORS",
    "install_links",
    "router",
    "signer_of",
]

router = APIRouter()
DEFAULT_TTL_S = 600
"""Default lifetime of a download token (10 minutes)."""
MAX_TTL_S = 24 * 3600
"""Longest lifetime a client may ask for (a day: a viewer reading an OME-Zarr lazily)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class DownloadSigner:
    """Makes and checks download tokens.

    Parameters
    ----------
    secret
        HMAC key; default 32 random bytes (tokens die with the process).
    clock
        Seconds since the epoch (injectable for tests).
    """

    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    clock: Callable[[], float] = time.time

    def _sign(self, job_id: str, owner_id: int, expires: int) -> str:
        msg = f"{job_id}.{owner_id}.{expires}".encode()
        return _b64(hmac.new(self.secret, msg, hashlib.sha256).digest())

    def issue(self, job_id: str, owner_id: int, ttl_s: int = DEFAULT_TTL_S) -> tuple[str, int]:
        """A token for the results of ``job_id`` and its expiry (Unix seconds)."""
        expires = int(self.clock()) + int(ttl_s)
        return f"{job_id}.{expires}.{self._sign(job_id, owner_id, expires)}", expires

    @staticmethod
    def job_of(token: str) -> str | None:
        """The job id a token names (not verified), or ``None`` when it is malformed."""
        parts = _parts(token)
        return None if parts is None else parts[0]

    def check(self, token: str, owner_id: int) -> bool | None:
        """``True`` valid, ``False`` expired (yet genuine), ``None`` forged or malformed."""
        parts = _parts(token)
        if parts is None:
            return None
        job_id, expires, sig = parts
        if not hmac.compare_digest(sig, self._sign(job_id, owner_id, expires)):
            return None
        return expires > self.clock()


_TOKEN = re.compile(r"([0-9a-f]{1,64})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})")
"""``JOB_ID.EXPIRES.SIGNATURE`` in ASCII only (``str.isdigit`` would pass '²' or '٣')."""


def _parts(token: str) -> tuple[str, int, str] | None:
    """``(job id, expiry, signature)`` of a well-formed token, else ``None``."""
    m = _TOKEN.fullmatch(token)
    return None if m is None else (m[1], int(m[2]), m[3])


def signer_of(request: Request) -> DownloadSigner:
    """The app's signer (made with the app by :func:`install_links`; a test may swap it)."""
    signer: DownloadSigner = request.app.state.download_signer
    return signer


def install_links(app: Any) -> None:
    """Give the app its one signer and the links' CORS middleware when it is created.

    Made lazily, two first requests at once could each make a signer, and the loser's links
    would not verify.
    """
    app.state.download_signer = DownloadSigner()
    app.add_middleware(LinkCORS)


class TokenBody(BaseModel):
    """Body of ``POST /api/v1/web/jobs/{id}/download-token`` (optional)."""

    ttl_s: int = Field(DEFAULT_TTL_S, ge=1, le=MAX_TTL_S)


@router.post("/api/v1/web/jobs/{job_id}/download-token")
def download_token(
    job_id: str,
    request: Request,
    user: CurrentUser,
    session: DbSession,
    *,
    body: TokenBody | None = None,
) -> dict[str, Any]:
    """A token for plain download links of this job's results: ``/dl/{token}/{path}``."""
    job = owned_job(session, user, job_id)
    ttl = (body or TokenBody()).ttl_s
    token, expires = signer_of(request).issue(job.id, job.owner_id, ttl)
    return {"token": token, "expires": expires, "ttl_s": ttl, "base": f"/dl/{token}"}


def _job_of_token(request: Request, session: DbSession, token: str) -> Job:
    signer = signer_of(request)
    job_id = signer.job_of(token)
    query = select(Job).options(joinedload(Job.owner)).where(Job.id == job_id)  # one query
    job = session.scalar(query) if job_id else None
    verdict = signer.check(token, job.owner_id) if job is not None else None
    if job is None or verdict is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such download")
    if not verdict:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "this download link has expired",
            headers={"WWW-Authenticate": EXPIRED_CHALLENGE},
        )
    return job


_HEADERS = {"Cache-Control": "private, max-age=60", "Referrer-Policy": "no-referrer"}

EXPIRED_CHALLENGE = (
    'Bearer realm="scopeflow", error="invalid_token", '
    'error_description="this download link has expired"'
)
"""``WWW-Authenticate`` of the 401 for an expired link (RFC 9110 15.5.2 requires one).

The token in the URL is a bearer token (RFC 6750): an expired one is ``invalid_token``, and the
way on is a new token (a new link), not a password, so no browser login dialog opens (that
happens only for ``Basic`` and the like).
"""

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Range, Content-Length, Accept-Ranges, ETag, "
    "Content-Type, WWW-Authenticate",
}
"""CORS headers of every ``/dl/`` answer (any origin: the token in the URL is the credential)."""
PREFLIGHT_HEADERS = CORS_HEADERS | {
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "Range, If-Range, If-None-Match",
    "Access-Control-Max-Age": "7200",
    "Allow": "GET, HEAD, OPTIONS",
}
"""Headers of the 204 answer to a CORS preflight (``OPTIONS``) under ``/dl/``.

A browser keeps the preflight at most ``Access-Control-Max-Age`` seconds (Chromium caps it at
two hours).
"""


class LinkCORS:
    """ASGI middleware: every answer under ``/dl/`` carries :data:`CORS_HEADERS`.

    It wraps the app's exception handlers, so error answers (404, 401, 416, a 405 for a wrong
    method) get the headers too; nothing outside ``/dl/`` is touched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers to the start of a ``/dl/`` answer."""
        if scope["type"] != "http" or not scope["path"].startswith("/dl/"):
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(CORS_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_cors)


@router.api_route("/dl/{token}/results.zip", methods=["GET", "HEAD"], include_in_schema=False)
def dl_zip(
    token: str,
    request: Request,
    session: DbSession,
    svc: Svc,
    prefix: str | None = Query(None, max_length=4096),
) -> Response:
    """The token's job's result files as one streamed zip: all, or those under ``prefix``."""
    job = _job_of_token(request, session, token)
    run_dir, name = svc.files(job).run_dir, job.id
    return results_zip_response(run_dir, name, request, _HEADERS, prefix=prefix)


@router.api_route("/dl/{token}/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
def dl_file(token: str, path: str, request: Request, session: DbSession, svc: Svc) -> Response:
    """One result file of the token's job, with HTTP Range (206) and If-Range support."""
    job = _job_of_token(request, session, token)
    run_dir = svc.files(job).run_dir
    return result_file_response(run_dir, path, request, _HEADERS)


@router.options("/dl/{token}/{path:path}", include_in_schema=False)
def dl_preflight(token: str, path: str) -> Response:
    """A CORS preflight: 204 with :data:`PREFLIGHT_HEADERS` (the token is checked on the GET)."""
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=PREFLIGHT_HEADERS)
