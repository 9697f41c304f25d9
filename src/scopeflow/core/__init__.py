"""Layer 1: errors, enums, settings and small shared helpers. Imports nothing else of scopeflow."""

from scopeflow.core.enums import ClusterKind, RunStatus, UnitState
from scopeflow.core.errors import (
    AlreadyExistsError,
    BadPathError,
    ClusterError,
    ConfigError,
    FormatError,
    InputNotFoundError,
    InvalidTransitionError,
    PipelineError,
    RunDirError,
    RunFailedError,
    ScopeflowError,
    UnknownNameError,
)
from scopeflow.core.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = [
    "AlreadyExistsError",
    "BadPathError",
    "ClusterError",
    "ClusterKind",
    "ConfigError",
    "FormatError",
    "InputNotFoundError",
    "InvalidTransitionError",
    "PipelineError",
    "RunDirError",
    "RunFailedError",
    "RunStatus",
    "ScopeflowError",
    "UnitState",
    "UnknownNameError",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
]
