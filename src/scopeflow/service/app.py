"""The FastAPI application of the service: ``create_app(settings)``.

Routes live under ``/api/v1`` (see ARCHITECTURE.md, "Contracts"); OpenAPI docs at ``/docs``.
The API process runs no pipeline code: it records jobs, stores files and reads the runs'
events and logs; the worker (``scopeflow worker``, started by ``scopeflow server``) submits and
watches them.

scopeflow's errors map to HTTP statuses in one place (:data:`ERROR_STATUS`): a wrong parameter
is a 422 naming the field path, a bad file name a 400, a refused state change a 409, an upload
at the wrong offset a 409 with the expected offset, a wrong digest a 422, a full quota a 413,
an unsatisfiable range a 416.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from scopeflow import __version__
from scopeflow.core.errors import (
    BadPathError,
    ConfigError,
    InvalidTransitionError,
    ScopeflowError,
    UnknownNameError,
    problems_json,
)
from scopeflow.service import routes_admin, routes_auth, routes_demo, routes_files, routes_jobs
from scopeflow.service.db import make_engine, session_factory
from scopeflow.service.deps import Service
from scopeflow.service.files import (
    DigestMismatchError,
    QuotaExceededError,
    UploadError,
    UploadExistsError,
    UploadOffsetError,
)
from scopeflow.service.migrate import upgrade
from scopeflow.service.settings import ServiceSettings
from scopeflow.service.templates import TemplateCache
from scopeflow.service.transfers import RangeNotSatisfiableError
from scopeflow.service.web import router as web_router
from scopeflow.service.web.downloads import install_links

__all__ = ["API_PREFIX", "ERROR_STATUS", "create_app"]

API_PREFIX = "/api/v1"

#: scopeflow error → HTTP status (the first match in this order wins).
ERROR_STATUS: list[tuple[type[Exception], int]] = [
    (BadPathError, 400),
    (UploadOffsetError, 409),
    (UploadExistsError, 409),
    (DigestMismatchError, 422),
    (QuotaExceededError, 413),
    (UploadError, 422),
    (RangeNotSatisfiableError, 416),
    (InvalidTransitionError, 409),
    (ConfigError, 422),
    (UnknownNameError, 422),
]


def _error_body(exc: Exception) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": str(exc), "error": type(exc).__name__}
    if isinstance(exc, ConfigError):
        body["detail"] = problems_json(exc.problems)
    if isinstance(exc, UploadOffsetError):
        body["expected_offset"] = exc.expected
    return body


def create_app(settings: ServiceSettings, *, migrate: bool = True) -> FastAPI:
    """The service's ASGI application.

    Parameters
    ----------
    settings
        Data directory, database URL, templates file, quotas …
    migrate
        Bring the database schema up to date first.
    """
    if migrate:
        upgrade(settings.database_url)
    # more connections than the thread pool's 40 threads that run the sync routes
    engine = make_engine(settings.database_url, pool_size=20, max_overflow=30)
    templates = TemplateCache(settings.templates_path)  # reloaded when the file changes
    templates.get()  # loaded now, not by the first requests
    app = FastAPI(
        title="scopeflow",
        version=__version__,
        description="Run scopeflow's pipelines as jobs: upload, start, watch, download.",
    )
    app.state.service = Service(settings, engine, session_factory(engine), templates)

    async def scopeflow_error(request: Request, exc: Exception) -> JSONResponse:
        code = next((c for t, c in ERROR_STATUS if isinstance(exc, t)), 500)
        headers = {}
        if isinstance(exc, RangeNotSatisfiableError):
            headers["Content-Range"] = exc.content_range
        return JSONResponse(_error_body(exc), status_code=code, headers=headers)

    app.add_exception_handler(ScopeflowError, scopeflow_error)
    routers = (
        routes_auth.router,
        routes_jobs.router,
        routes_files.router,
        routes_demo.router,
        routes_admin.router,
    )
    for router in routers:
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(web_router)  # the web UI: /, /static/…, /api/v1/web/…
    install_links(app)
    return app
