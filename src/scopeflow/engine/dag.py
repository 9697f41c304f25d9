"""Pipelines as DAGs of steps, and their expansion into a graph of units.

A :class:`Step` either fans out over the pipeline's units (time points, image batches …) or runs
once. Its dependencies are either *per unit* (``B[u]`` waits for ``A[u]``) or *all units*
(``merge`` waits for every unit of ``register_views``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from scopeflow.core import PipelineError

if TYPE_CHECKING:
    from scopeflow.engine.context import UnitContext

ONCE = "all"
"""Unit name of a step that runs once."""

_UNIT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

StepFunc = Callable[["UnitContext"], Mapping[str, Any] | None]
"""A step function: gets the unit's context, returns a JSON-serialisable mapping or None."""


@dataclass(frozen=True)
class Dependency:
    """An edge of the step graph.

    Parameters
    ----------
    step
        Name of the upstream step.
    mode
        ``"unit"``: unit *u* waits for unit *u* of the upstream step (both steps fan out);
        ``"all"``: waits for every unit of the upstream step.
    """

    step: str
    mode: Literal["unit", "all"] = "unit"


def per_unit(step: str) -> Dependency:
    """Depend on the same unit of ``step``."""
    return Dependency(step, "unit")


def all_units(step: str) -> Dependency:
    """Depend on every unit of ``step``."""
    return Dependency(step, "all")


@dataclass(frozen=True)
class Step:
    """One step of a pipeline.

    Parameters
    ----------
    name
        Unique name within the pipeline (used in paths, events and the UI).
    func
        ``func(ctx) -> mapping | None``, run on a Dask worker for each unit. Its result must be
        JSON-serialisable; a key ``"outputs"`` (name → path relative to the run directory) is
        collected into ``summary.json``.
    fan_out
        True: one unit of work per pipeline unit; False: runs once (unit name ``"all"``).
    after
        Upstream dependencies (see :func:`per_unit`, :func:`all_units`).
    retries
        How many times a failing unit is run again before the step fails (None: the run's default).
    description
        One line for humans.
    """

    name: str
    func: StepFunc
    fan_out: bool = True
    after: tuple[Dependency, ...] = ()
    retries: int | None = None
    description: str = ""


@dataclass(frozen=True)
class Node:
    """One unit of work: a step applied to one unit."""

    step: str
    unit: str

    def __str__(self) -> str:
        return f"{self.step}[{self.unit}]"


@dataclass(frozen=True)
class Pipeline:
    """A named DAG of steps with a configuration model and a way to list its units.

    Parameters
    ----------
    name
        The pipeline's name (``scopeflow run NAME``).
    steps
        Steps in any order; dependencies name other steps of this pipeline.
    config_model
        The pydantic model of ``config.yaml``.
    units
        ``units(config) -> list of unit names`` (safe as file names: letters, digits, ``_.-``).
    description
        One line for humans.
    """

    name: str
    steps: tuple[Step, ...]
    config_model: type[BaseModel]
    units: Callable[[Any], Sequence[str]]
    description: str = ""
    _by_name: dict[str, Step] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, Step] = {}
        for step in self.steps:
            if step.name in by_name:
                raise PipelineError(f"pipeline {self.name!r}: step {step.name!r} defined twice")
            if not _UNIT_RE.match(step.name):
                raise PipelineError(f"pipeline {self.name!r}: bad step name {step.name!r}")
            by_name[step.name] = step
        for step in self.steps:
            for dep in step.after:
                up = by_name.get(dep.step)
                if up is None:
                    raise PipelineError(
                        f"pipeline {self.name!r}: step {step.name!r} depends on unknown "
                        f"step {dep.step!r}"
                    )
                if dep.mode == "unit" and not (up.fan_out and step.fan_out):
                    raise PipelineError(
                        f"pipeline {self.name!r}: per-unit dependency {step.name!r} -> "
                        f"{dep.step!r} needs both steps to fan out; use all_units()"
                    )
        object.__setattr__(self, "_by_name", by_name)
        self.order()  # raises on cycles

    def step(self, name: str) -> Step:
        """The step called ``name``."""
        return self._by_name[name]

    def order(self) -> list[Step]:
        """Steps in a topological order (stable: definition order among independent steps)."""
        done: list[Step] = []
        seen: set[str] = set()
        visiting: set[str] = set()

        def visit(step: Step) -> None:
            if step.name in seen:
                return
            if step.name in visiting:
                raise PipelineError(f"pipeline {self.name!r}: dependency cycle at {step.name!r}")
            visiting.add(step.name)
            for dep in step.after:
                visit(self._by_name[dep.step])
            visiting.discard(step.name)
            seen.add(step.name)
            done.append(step)

        for step in self.steps:
            visit(step)
        return done

    def expand(self, units: Sequence[str]) -> UnitGraph:
        """Expand the step DAG over ``units`` into a graph of :class:`Node`."""
        units = list(units)
        if len(set(units)) != len(units):
            raise PipelineError(f"pipeline {self.name!r}: duplicate unit names")
        for unit in units:
            if not _UNIT_RE.match(unit) or unit == ONCE:
                raise PipelineError(
                    f"pipeline {self.name!r}: unit name {unit!r} is not allowed "
                    "(letters, digits, '_', '.', '-'; not 'all')"
                )
        nodes: list[Node] = []
        deps: dict[Node, tuple[Node, ...]] = {}
        for step in self.order():
            step_units = units if step.fan_out else [ONCE]
            for unit in step_units:
                node = Node(step.name, unit)
                up: list[Node] = []
                for dep in step.after:
                    upstream = self._by_name[dep.step]
                    if dep.mode == "unit":
                        up.append(Node(dep.step, unit))
                    else:
                        up.extend(
                            Node(dep.step, u) for u in (units if upstream.fan_out else [ONCE])
                        )
                nodes.append(node)
                deps[node] = tuple(up)
        return UnitGraph(nodes=nodes, deps=deps)


@dataclass
class UnitGraph:
    """The graph of units of one run: nodes in topological order and their upstream nodes."""

    nodes: list[Node]
    deps: dict[Node, tuple[Node, ...]]

    def dependents(self) -> dict[Node, list[Node]]:
        """Downstream nodes of each node."""
        down: dict[Node, list[Node]] = {n: [] for n in self.nodes}
        for node, ups in self.deps.items():
            for up in ups:
                down[up].append(node)
        return down

    def descendants(self, node: Node) -> Iterator[Node]:
        """Every node that (transitively) depends on ``node``."""
        down = self.dependents()
        stack = list(down[node])
        seen: set[Node] = set()
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            yield n
            stack.extend(down[n])
