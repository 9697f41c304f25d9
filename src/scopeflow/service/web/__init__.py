"""The service's web UI: static pages and small ES modules served at ``/`` (no build step).

:data:`router` serves ``/`` (the single page), ``/static/…`` (its files, public) and the
web-only JSON routes under ``/api/v1/web/…`` (token required, like every API route).
"""

from __future__ import annotations

from scopeflow.service.web.router import router

__all__ = ["router"]
