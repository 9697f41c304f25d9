"""Loading YAML configuration files into pydantic models with readable errors.

Relative paths in a configuration file are resolved against the folder of that file: declare
such fields with :data:`InputPath` (must exist) or :data:`OutputPath` (may not exist yet).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo

from scopeflow.core.errors import ConfigError, InputNotFoundError

ModelT = TypeVar("ModelT", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every configuration model: unknown keys are errors, values are re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def _resolve(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    value = value.expanduser()
    if not value.is_absolute() and base is not None:
        value = Path(base) / value
    return value.absolute()


def _resolve_existing(value: Path, info: ValidationInfo) -> Path:
    value = _resolve(value, info)
    if not value.exists():
        raise ValueError(f"path does not exist: {value}")
    return value


InputPath = Annotated[Path, AfterValidator(_resolve_existing)]
"""A path that must exist; relative paths are taken from the configuration file's folder."""

OutputPath = Annotated[Path, AfterValidator(_resolve)]
"""A path that may not exist yet; relative paths are taken from the configuration file's folder."""


def format_validation_error(exc: ValidationError) -> list[tuple[str, str]]:
    """Turn a pydantic :class:`~pydantic.ValidationError` into ``(key path, message)`` pairs.

    Key paths are dotted (``fuse.sigma``) with list indices in brackets (``views[2].angle``).
    """
    problems: list[tuple[str, str]] = []
    for err in exc.errors():
        parts: list[str] = []
        for loc in err["loc"]:
            if isinstance(loc, int):
                parts.append(f"[{loc}]")
            else:
                parts.append(("." if parts else "") + str(loc))
        key = "".join(parts)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not part of this configuration)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and err["type"] != "value_error":
            shown = repr(err["input"])
            if len(shown) > 60:
                shown = shown[:57] + "..."
            msg = f"{msg} (got {shown})"
        problems.append((key, msg))
    return problems


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file whose top level must be a mapping.

    Raises
    ------
    InputNotFoundError
        The file does not exist.
    ConfigError
        The file is not valid YAML or its top level is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(path, "configuration file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(path, [(where, f"not valid YAML: {exc}")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, [("", f"expected a mapping of keys, got {type(data).__name__}")])
    return data


def validate_config(
    model: type[ModelT], data: dict[str, Any], *, source: str | Path, base_dir: Path | None
) -> ModelT:
    """Validate ``data`` against ``model``; errors become one :class:`ConfigError`.

    Parameters
    ----------
    model
        The pydantic model of the configuration.
    data
        The raw mapping (as read from YAML).
    source
        Named in error messages (usually the file path).
    base_dir
        Folder that relative :data:`InputPath` / :data:`OutputPath` values are resolved against.
    """
    try:
        return model.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc)) from None


def load_config(model: type[ModelT], path: str | Path) -> ModelT:
    """Read a YAML configuration file and validate it against ``model``."""
    path = Path(path)
    data = read_yaml_mapping(path)
    return validate_config(model, data, source=path, base_dir=path.parent.absolute())
