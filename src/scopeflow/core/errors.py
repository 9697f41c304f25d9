"""The one exception tree of scopeflow.

Every error scopeflow raises on purpose derives from :class:`ScopeflowError`. Subclasses carry
context fields (the file, the config key, the step …) and also inherit the matching built-in
exception, so ``except FileNotFoundError`` keeps working for callers that do not know scopeflow.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def _rebuild(cls: type[ScopeflowError], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return cls(*args, **kwargs)


class ScopeflowError(Exception):
    """Base class of every error scopeflow raises deliberately.

    Errors pickle with the arguments they were made with, so an error raised on a Dask worker
    arrives whole (type, context fields, message) in the driver.
    """

    _init_args: tuple[tuple[Any, ...], dict[str, Any]]

    def __new__(cls, *args: Any, **kwargs: Any) -> ScopeflowError:
        """Remember the constructor arguments (for pickling)."""
        self = super().__new__(cls)
        self._init_args = (args, kwargs)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        args, kwargs = self._init_args
        return (_rebuild, (type(self), args, kwargs))


class ConfigError(ScopeflowError, ValueError):
    """A configuration value is missing or invalid.

    Parameters
    ----------
    source
        Where the configuration came from (a file path or a description).
    problems
        One ``(key path, message)`` pair per problem, e.g. ``("fuse.sigma", "expected a number")``.
    """

    def __init__(self, source: str | Path, problems: Sequence[tuple[str, str]]) -> None:
        self.source = str(source)
        self.problems = list(problems)
        lines = [f"  {key or '<root>'}: {msg}" for key, msg in self.problems]
        super().__init__(f"invalid configuration in {self.source}:\n" + "\n".join(lines))


class InputNotFoundError(ScopeflowError, FileNotFoundError):
    """An input file or directory that a configuration names does not exist."""

    def __init__(self, path: str | Path, what: str = "input") -> None:
        self.path = Path(path)
        self.what = what
        message = f"{what} not found: {self.path}"
        super().__init__(message)
        self.args = (message,)  # OSError keeps its own args; ours is the message
        self.filename = str(self.path)

    def __str__(self) -> str:
        return str(self.args[0])


class FormatError(ScopeflowError, ValueError):
    """A file exists but cannot be read as the format it claims to be."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class UnknownNameError(ScopeflowError, KeyError):
    """A name (pipeline, cluster kind, format …) is not one scopeflow knows."""

    def __init__(self, kind: str, name: str, known: Sequence[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        message = f"unknown {kind} {name!r}; known: {', '.join(self.known) or 'none'}"
        super().__init__(message)
        self.args = (message,)

    def __str__(self) -> str:
        return str(self.args[0])


class PipelineError(ScopeflowError, ValueError):
    """A pipeline definition is inconsistent (cycles, unknown steps, bad dependencies)."""


class RunDirError(ScopeflowError, RuntimeError):
    """A run directory cannot be used (e.g. it holds a run of a different configuration)."""

    def __init__(self, run_dir: str | Path, problem: str) -> None:
        self.run_dir = Path(run_dir)
        self.problem = problem
        super().__init__(f"run directory {self.run_dir}: {problem}")


class ClusterError(ScopeflowError, RuntimeError):
    """A Dask cluster could not be started or reached."""


class RunFailedError(ScopeflowError, RuntimeError):
    """A pipeline run finished with failed units.

    Parameters
    ----------
    failed
        ``(step, unit, error)`` for every unit that failed all of its attempts.
    """

    def __init__(self, failed: Sequence[tuple[str, str, str]]) -> None:
        self.failed = list(failed)
        head = "; ".join(
            f"{s}[{u}]: {e.splitlines()[0] if e else ''}" for s, u, e in self.failed[:5]
        )
        more = f" (+{len(self.failed) - 5} more)" if len(self.failed) > 5 else ""
        super().__init__(f"{len(self.failed)} unit(s) failed: {head}{more}")


class InvalidTransitionError(ScopeflowError, ValueError):
    """A job cannot move from its current state to the one asked for.

    Parameters
    ----------
    old
        The job's current state.
    new
        The state that was asked for.
    job_id
        The job, when known.
    reason
        Why, when it is not simply that the state table forbids it (e.g. the job's state was
        changed by another process in the meantime).
    """

    def __init__(
        self, old: str, new: str, *, job_id: str | None = None, reason: str | None = None
    ) -> None:
        self.old = str(old)
        self.new = str(new)
        self.job_id = job_id
        self.reason = reason
        what = f"job {job_id}" if job_id else "a job"
        why = f": {reason}" if reason else ""
        super().__init__(f"{what} cannot go from {self.old!r} to {self.new!r}{why}")


class AlreadyExistsError(ScopeflowError, ValueError):
    """Something with this name exists already (a user, a template …)."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"{kind} {name!r} exists already")


class BadPathError(ScopeflowError, ValueError):
    """A client-supplied file name is not acceptable (absolute, ``..``, symlink, too long …).

    Parameters
    ----------
    name
        The name as the client sent it.
    problem
        What is wrong with it.
    """

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"bad path {name!r}: {problem}")


def problems_json(problems: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Problems as the API answers them: ``[{"loc": [...], "msg": ...}]``.

    Parameters
    ----------
    problems
        ``(key path, message)`` pairs, as :attr:`ConfigError.problems` holds them; the dotted
        key path becomes the ``loc`` list (``"segment.sigma"`` → ``["segment", "sigma"]``).

    Returns
    -------
    list of dict
        The ``detail`` of the service's 422 answers (its API and its web routes).
    """
    return [{"loc": key.split("."), "msg": msg} for key, msg in problems]
