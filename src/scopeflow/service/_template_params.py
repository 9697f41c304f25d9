"""Dotted paths into a pipeline's pydantic configuration model (private to templates.py).

Walks model fields and the model's JSON Schema by dotted path (``detection.sigma``), validates one
field's value on its own, and turns pydantic errors into ``(dotted path, message)`` pairs.
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
import types
import typing
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from scopeflow.core.config import format_validation_error
from scopeflow.core.errors import BadPathError, ConfigError
from scopeflow.service.files import path_problem, safe_relpath

ROOT_FIELD = "root"
"""Configuration field the service sets to the job's input folder (never fixed or user-set)."""

_PATH_NAME = re.compile(r"(?:^|_)(?:path|pattern|file|dir|folder)$")
"""Field names whose string values are treated as paths even without ``format: path``."""


def join(a: str, b: str) -> str:
    """Join two dotted key paths (``b`` may start with an index such as ``[2]``)."""
    if not a or not b:
        return a or b
    return f"{a}{b}" if b.startswith("[") else f"{a}.{b}"


def nest(mapping: dict[Any, Any]) -> dict[Any, Any]:
    """Expand dotted keys into nested dicts: ``{"a.b": 1, "a": {"c": 2}}`` → ``{"a": {…}}``.

    Raises
    ------
    ValueError
        A key is empty or a value is given twice.
    """
    out: dict[Any, Any] = {}
    for key, value in mapping.items():
        parts = key.split(".") if isinstance(key, str) else [key]
        if "" in parts:
            raise ValueError(f"bad key {key!r}")
        leaf = nest(value) if isinstance(value, dict) else value
        for part in reversed(parts[1:]):
            leaf = {part: leaf}
        _merge_into(out, parts[0], leaf, str(key))
    return out


def _merge_into(tree: dict[Any, Any], key: Any, value: Any, shown: str) -> None:
    if key not in tree:
        tree[key] = value
    elif isinstance(tree[key], dict) and isinstance(value, dict):
        for k, v in value.items():
            _merge_into(tree[key], k, v, shown)
    else:
        raise ValueError(f"{shown!r} is given twice")


def submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (``Model`` or ``Model | None``), else ``None``."""
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if submodel(a) is not None]
        if len(models) == 1:
            return submodel(models[0])
    return None


def field_at(model: type[BaseModel], path: str) -> FieldInfo | None:
    """The field at a dotted path of ``model``, or ``None`` when there is none."""
    current: type[BaseModel] | None = model
    field: FieldInfo | None = None
    for part in path.split("."):
        if current is None:
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = submodel(field.annotation)
    return field


def flatten_against_model(
    model: type[BaseModel], nested: dict[Any, Any], prefix: str
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Split nested values into ``{dotted path of a field: value}`` (sections are descended).

    Returns the leaves and one problem per key that is not a field (keys start with ``prefix``).
    """
    leaves: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []

    def walk(current: type[BaseModel], obj: dict[Any, Any], path: str) -> None:
        for key, value in obj.items():
            here = join(path, str(key))
            field = current.model_fields.get(key) if isinstance(key, str) else None
            if field is None:
                problems.append((join(prefix, here), "not a field of the pipeline configuration"))
                continue
            sub = submodel(field.annotation)
            if sub is not None and isinstance(value, dict) and value:
                walk(sub, value, here)
            else:
                leaves[here] = value

    walk(model, nested, "")
    return leaves, problems


def uncovered_required(model: type[BaseModel], covered: set[str], prefix: str = "") -> list[str]:
    """Required fields (without default) that no path of ``covered`` sets or lies inside."""
    missing: list[str] = []
    for name, field in model.model_fields.items():
        path = join(prefix, name)
        if path in covered or (name == ROOT_FIELD and not prefix):
            continue
        below = any(c.startswith(path + ".") for c in covered)
        sub = submodel(field.annotation)
        if below and sub is not None:
            missing += uncovered_required(sub, covered, path)
        elif field.is_required():
            missing.append(path)
    return missing


def config_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """``(dotted path, message)`` pairs of a validation error.

    A :class:`ConfigError` raised inside a model validator (several problems with their own
    keys) is expanded into its problems, their keys joined to where the validator ran.
    """
    out: list[tuple[str, str]] = []
    for (key, msg), err in zip(format_validation_error(exc), exc.errors(), strict=True):
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, ConfigError):
            out += [(join(key, k), m) for k, m in inner.problems]
        else:
            out.append((key, msg))
    return out


# -- JSON Schema --------------------------------------------------------------------------------


def _inline(node: Any, defs: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """Replace every ``$ref`` by the definition it names (recursive models end in ``{}``)."""
    if isinstance(node, list):
        return [_inline(v, defs, seen) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _inline(v, defs, seen) for k, v in node.items() if k not in ("$ref", "$defs")}
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name in seen or name not in defs:
            return out
        return {**_inline(defs[name], defs, (*seen, name)), **out}
    return out


@functools.lru_cache(maxsize=64)
def _model_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    inlined: dict[str, Any] = _inline(schema, schema.get("$defs", {}))
    return inlined


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]


def _properties(schema: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for branch in _branches(schema):
        props.update(branch.get("properties", {}))
    return props


def leaf_schema(model: type[BaseModel], path: str) -> dict[str, Any]:
    """The ``$ref``-free JSON Schema of the field at a dotted path (a fresh copy)."""
    node = _model_schema(model)
    for part in path.split("."):
        node = _properties(node).get(part, {})
    return copy.deepcopy(node)


def _is_pathlike(schema: dict[str, Any], name: str) -> bool:
    if any(b.get("format") == "path" for b in _branches(schema)):
        return True
    return bool(_PATH_NAME.search(name))


def _path_strings(schema: dict[str, Any], value: Any, key: str, name: str) -> Iterator[str]:
    """Keys of the string values inside ``value`` that name files."""
    if isinstance(value, str):
        if _is_pathlike(schema, name):
            yield key
    elif isinstance(value, dict):
        props = _properties(schema)
        for k, v in value.items():
            yield from _path_strings(props.get(k, {}), v, join(key, str(k)), str(k))
    elif isinstance(value, list | tuple):
        items: dict[str, Any] = next((b["items"] for b in _branches(schema) if "items" in b), {})
        for i, v in enumerate(value):
            yield from _path_strings(items, v, f"{key}[{i}]", name)


def _all_strings(value: Any, key: str) -> Iterator[tuple[str, str]]:
    """``(key, text)`` of every string inside ``value``."""
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _all_strings(v, join(key, str(k)))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _all_strings(v, f"{key}[{i}]")


@functools.lru_cache(maxsize=1024)
def _adapter(model: type[BaseModel], path: str) -> TypeAdapter[Any]:
    field = field_at(model, path)
    assert field is not None
    annotation: Any = field.annotation
    if field.metadata:  # constraints such as Field(gt=0) live here, not in the annotation
        annotation = Annotated[(annotation, *field.metadata)]
    return TypeAdapter(annotation)


def unsafe_value(text: str) -> str | None:
    """Why a user's string could lead outside the input when a pattern makes it a path, or ``None``.

    The rules of :func:`~scopeflow.service.files.safe_relpath` that matter inside a longer name
    (:func:`~scopeflow.service.files.path_problem` with ``fragment=True``).
    """
    return path_problem(text, fragment=True)


def check_leaf(
    model: type[BaseModel], path: str, value: Any, *, key: str, confine: bool
) -> list[tuple[str, str]]:
    """Problems of one field's value, checked on its own (no other field, no file access).

    Parameters
    ----------
    model
        The configuration model.
    path
        Dotted path of the field.
    value
        Its value (a whole section for a section's path).
    key
        Shown in the problems instead of ``path``.
    confine
        Require path-like strings (``format: path`` fields, names ending in ``path``,
        ``pattern``, ``file``, ``dir``, ``folder``) to be relative paths without ``..``, and
        every other string to pass :func:`unsafe_value` (a fixed pattern may make it a path).
    """
    if field_at(model, path) is None:
        return [(key, "not a field of the pipeline configuration")]
    schema = leaf_schema(model, path)
    name = path.rsplit(".", 1)[-1]
    problems: list[tuple[str, str]] = []
    if confine:
        paths = set(_path_strings(schema, value, key, name))
        for where, text in _all_strings(value, key):
            if where in paths:
                try:
                    safe_relpath(text)
                except BadPathError as exc:
                    problems.append(
                        (where, f"must be a relative path inside the input: {exc.problem}")
                    )
            elif (problem := unsafe_value(text)) is not None:
                # e.g. a channel name that a fixed pattern ("{channel}.tif") turns into a path
                problems.append((where, f"not allowed in parameter values: {problem}"))
    if any(b.get("format") == "path" for b in _branches(schema)):
        # path fields may have to exist: that is checked with the files, in build_config
        allows_null = any(b.get("type") == "null" for b in _branches(schema))
        if not (isinstance(value, str) or (value is None and allows_null)):
            problems.append((key, f"expected a path (a string), got {type(value).__name__}"))
        return problems
    try:
        _adapter(model, path).validate_python(value)
    except ValidationError as exc:
        problems += [(join(key, k), m) for k, m in config_problems(exc)]
    return problems
