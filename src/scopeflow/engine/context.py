"""What a step function sees of its unit of work."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scopeflow.core import runlayout as layout


@dataclass
class UnitContext:
    """The context handed to a step function for one unit.

    Attributes
    ----------
    step, unit
        Which unit of work this is (``unit == "all"`` for a step that runs once).
    attempt
        1 for the first try, 2 for the first retry … (counted by the driver).
    run_dir
        The run directory (absolute).
    config
        The pipeline's validated configuration model.
    upstream
        Results of the upstream steps, by step name: the result of the same unit for a per-unit
        dependency, the result of a step that runs once, or ``{unit: result}`` for an all-units
        dependency on a fanned-out step.
    log
        Logger writing to ``logs/<step>/<unit>.log``.
    """

    step: str
    unit: str
    attempt: int
    run_dir: Path
    config: Any
    upstream: dict[str, Any] = field(default_factory=dict)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("scopeflow.unit"))

    @property
    def outputs(self) -> Path:
        """The run's ``outputs/`` folder."""
        return self.run_dir / layout.OUTPUTS

    def output_path(self, *parts: str) -> Path:
        """A path under ``outputs/`` whose parent folder exists."""
        path = self.outputs.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def relative(self, path: Path) -> str:
        """``path`` relative to the run directory (for ``summary.json`` outputs)."""
        return Path(path).absolute().relative_to(self.run_dir).as_posix()
