"""Routes of the web UI: the page, its static files and two web-only JSON helpers.

- ``GET /`` and ``GET /static/{path}``: the single-page app (plain HTML, ES modules, one CSS
  file), public and left out of the OpenAPI schema.
- ``POST /api/v1/web/config-preview`` ``{template, params}``: the configuration a job of that
  template would get (``fixed``, then the template's ``defaults``, then ``params``) as YAML,
  with the parameter problems (``[{"loc", "msg"}]``) the API would answer at job creation.
- ``POST /api/v1/web/config-parse`` ``{template, yaml}``: the user parameters found in an
  edited ``config.yaml`` text, and problems (a changed ``fixed`` value, bad YAML …). The text
  is the user's: YAML anchors and aliases are refused (:class:`NoAliasLoader`; an alias bomb of
  a few hundred bytes would expand to millions of keys), and both routes answer at most
  :data:`MAX_PROBLEMS` problems (then one saying how many more there were).
- ``POST /api/v1/web/jobs/{id}/download-token`` and the public ``GET /dl/{token}/…``: plain
  download links of a job's results (:mod:`scopeflow.service.web.downloads`).

The JSON routes need the bearer token (:data:`scopeflow.service.deps.CurrentUser`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import PurePosixPath
from typing import Any

import yaml
from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from scopeflow.core.errors import ConfigError, problems_json
from scopeflow.service.deps import CurrentUser, Svc
from scopeflow.service.templates import Template
from scopeflow.service.web import downloads

__all__ = [
    "MAX_PROBLEMS",
    "STATIC_DIR",
    "NoAliasLoader",
    "merge_config",
    "router",
    "user_params_from",
]

router = APIRouter()
STATIC_DIR = resources.files("scopeflow.service.web").joinpath("static")
_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
}
_MISSING = object()
router.include_router(downloads.router)
MAX_PROBLEMS = 100
"""The most problems ``config-preview`` and ``config-parse`` answer (then one more: how many
were left out)."""


class NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses anchors (``&a``) and aliases (``*a``, ``<<: *a``).

    An alias is a shared reference: a few hundred bytes of nested aliases make a tree of
    millions of nodes. A ``config.yaml`` needs neither, and the preview never writes them
    (:class:`_NoAliasDumper`).
    """

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """Refuse an alias or an anchor, else compose the node as ``SafeLoader`` does."""
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            what = f"*{event.anchor}" if isinstance(event, yaml.AliasEvent) else f"&{event.anchor}"
            raise yaml.composer.ComposerError(
                None,
                None,
                f"found {what}: YAML anchors and aliases are not accepted here",
                event.start_mark,
            )
        return super().compose_node(parent, index)


class _NoAliasDumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that writes a value seen twice twice (no ``&id001`` / ``*id001``)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _capped(problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first :data:`MAX_PROBLEMS` problems, and one saying how many more there were."""
    if len(problems) <= MAX_PROBLEMS:
        return problems
    more = len(problems) - MAX_PROBLEMS
    return [*problems[:MAX_PROBLEMS], {"loc": [], "msg": f"… and {more} more problems"}]


class PreviewBody(BaseModel):
    """Body of ``POST /api/v1/web/config-preview``."""

    template: str = Field(min_length=1, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)


class ParseBody(BaseModel):
    """Body of ``POST /api/v1/web/config-parse``."""

    template: str = Field(min_length=1, max_length=100)
    yaml: str = Field(max_length=1_000_000)


def merge_config(template: Template, params: dict[str, Any]) -> dict[str, Any]:
    """The configuration of a job before the service resolves its input paths.

    Parameters
    ----------
    template
        The job's template.
    params
        The user's parameters, nested or dotted.

    Returns
    -------
    dict
        ``fixed``, then ``defaults``, then ``params`` merged (later wins); ``root`` is shown as
        ``<job input folder>`` where the pipeline has one.
    """
    merged = template.merged_config(params)  # the same merge the job's config is built from
    if "root" in template.config_model.model_fields:
        merged = {"root": "<job input folder>", **merged}
    return merged


def _get_path(tree: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return _MISSING
        tree = tree[part]
    return tree


def user_params_from(
    template: Template, config: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The user parameters of an edited configuration, and what in it cannot be kept.

    Parameters
    ----------
    template
        The job's template.
    config
        The parsed ``config.yaml`` (nested).

    Returns
    -------
    params, problems
        ``params`` nested like the web form's values; ``problems`` as ``[{"loc", "msg"}]`` for
        ``fixed`` values that were changed and keys that are neither fixed nor user parameters.
    """
    params: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for path in template.user_parameters:
        value = _get_path(config, path)
        if value is not _MISSING:
            node = params
            parts = path.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
    fixed = template.fixed

    def walk(tree: dict[str, Any], prefix: str) -> None:
        for key, value in tree.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if path == "root" or path in template.user_parameters:
                continue
            if any(u.startswith(path + ".") for u in template.user_parameters) and isinstance(
                value, dict
            ):
                walk(value, path)
                continue
            if _get_path(fixed, path) is _MISSING and not isinstance(value, dict):
                problems.append((path, "not a parameter of this template (ignored)"))
            elif isinstance(value, dict):
                walk(value, path)
            elif value != _get_path(fixed, path):
                problems.append((path, "fixed by the template: the change is ignored"))

    walk(config, "")
    return params, problems_json(problems)


def _problems(template: Template, params: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        template.check_params(params)
    except ConfigError as exc:
        return problems_json(exc.problems)
    return []


@router.post("/api/v1/web/config-preview")
def config_preview(body: PreviewBody, user: CurrentUser, svc: Svc) -> dict[str, Any]:
    """The job's configuration as YAML, and the problems of ``params`` (never a 422)."""
    template = svc.templates.get(body.template)  # UnknownNameError -> 422
    config = merge_config(template, body.params)
    return {
        "yaml": yaml.dump(config, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True),
        "config": config,
        "detail": _capped(_problems(template, body.params)),
    }


@router.post("/api/v1/web/config-parse")
def config_parse(body: ParseBody, user: CurrentUser, svc: Svc) -> dict[str, Any]:
    """The user parameters of an edited ``config.yaml`` (422 when it is not a YAML mapping)."""
    template = svc.templates.get(body.template)
    try:
        config = yaml.load(body.yaml, Loader=NoAliasLoader) or {}  # a safe loader
    except yaml.YAMLError as exc:
        raise ConfigError("config.yaml", [("yaml", str(exc))]) from None  # 422
    except RecursionError:  # "[[[[…" nested deeper than the parser's recursion allows
        raise ConfigError("config.yaml", [("yaml", "nested too deeply")]) from None
    if not isinstance(config, dict):
        raise ConfigError("config.yaml", [("yaml", "expected a mapping of configuration keys")])
    params, problems = user_params_from(template, config)
    return {"params": params, "detail": _capped(problems + _problems(template, params))}


def _static(path: str) -> FileResponse:
    parts = PurePosixPath(path).parts
    if not parts or any(p in ("..", "") or p.startswith(".") or "\\" in p for p in parts):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
    target = STATIC_DIR.joinpath(*parts)
    if not target.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
    media = _TYPES.get(PurePosixPath(path).suffix, "application/octet-stream")
    return FileResponse(str(target), media_type=media, headers={"Cache-Control": "no-cache"})


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The single page of the web UI."""
    return _static("index.html")


@router.get("/static/{path:path}", include_in_schema=False)
def static_file(path: str) -> FileResponse:
    """A file of the web UI (HTML, ES modules, CSS)."""
    return _static(path)
