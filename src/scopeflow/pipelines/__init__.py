"""Layer 3 pipelines: DAGs of steps and their configuration models, by name.

``scopeflow run NAME`` looks NAME up here; ``package.module:attribute`` names a pipeline of your
own (a :class:`scopeflow.engine.Pipeline` object importable on the workers too).
"""

from __future__ import annotations

import importlib

from scopeflow.core import PipelineError, UnknownNameError
from scopeflow.engine import Pipeline

_REGISTRY: dict[str, str] = {
    "cyto": "scopeflow.pipelines.cyto:PIPELINE",
    "spim": "scopeflow.pipelines.spim:PIPELINE",
    "example": "scopeflow.pipelines.example:PIPELINE",
    "toy": "scopeflow.pipelines.toy:PIPELINE",
}


def available() -> list[str]:
    """Names of the built-in pipelines."""
    return sorted(_REGISTRY)


def get_pipeline(name: str) -> Pipeline:
    """The pipeline called ``name`` (built-in) or referenced as ``module:attribute``.

    Raises
    ------
    UnknownNameError
        No such built-in pipeline.
    PipelineError
        ``module:attribute`` cannot be imported or is not a pipeline.
    """
    ref = _REGISTRY.get(name)
    if ref is None:
        if ":" not in name:
            raise UnknownNameError("pipeline", name, available())
        ref = name
    module_name, _, attr = ref.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise PipelineError(f"cannot load pipeline {name!r}: {exc}") from None
    if not isinstance(obj, Pipeline):
        raise PipelineError(f"{name!r} is a {type(obj).__name__}, not a scopeflow Pipeline")
    return obj


__all__ = ["available", "get_pipeline"]
