"""``toy``: a diagnostic pipeline that needs no data.

Checks that a cluster set-up works (``scopeflow run toy -c toy.yaml --cluster slurm``), measures
the engine's overhead per unit, and lets tests inject faults: units that always fail and units
whose worker process dies on the first attempt.

Steps: ``prepare`` (per unit) → ``work`` (per unit) → ``collect`` (once, all units).
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from pydantic import Field

from scopeflow.core.config import StrictModel
from scopeflow.engine import Pipeline, Step, UnitContext, all_units, per_unit


class ToyConfig(StrictModel):
    """Configuration of the ``toy`` pipeline."""

    units: int = Field(8, ge=1, le=1_000_000, description="number of units")
    sleep: float = Field(0.0, ge=0, description="seconds each 'work' unit sleeps")
    write_files: bool = Field(True, description="write one small output file per unit and step")
    fail_units: list[str] = Field(
        default_factory=list, description="units whose 'work' step always raises"
    )
    die_once_units: list[str] = Field(
        default_factory=list,
        description="units whose worker process is killed (SIGKILL) on their first 'work' attempt",
    )


def _units(config: ToyConfig) -> list[str]:
    width = max(4, len(str(config.units - 1)))
    return [f"u{i:0{width}d}" for i in range(config.units)]


def prepare(ctx: UnitContext) -> dict[str, Any]:
    """Give unit ``uN`` the value N (written to ``outputs/prepare/<unit>.txt``)."""
    value = int(ctx.unit[1:])
    if ctx.config.write_files:
        ctx.output_path("prepare", f"{ctx.unit}.txt").write_text(f"{value}\n")
    return {"value": value}


def work(ctx: UnitContext) -> dict[str, Any]:
    """Square the value; sleeps, fails or dies as configured."""
    cfg: ToyConfig = ctx.config
    if ctx.unit in cfg.die_once_units:
        marker = ctx.output_path("work", f"{ctx.unit}.died")
        if not marker.exists():
            marker.write_text(f"{os.getpid()}\n")
            time.sleep(0.5)  # die mid-unit, not before the unit has been seen running
            ctx.log.warning("killing my own worker process %d (fault injection)", os.getpid())
            os.kill(os.getpid(), signal.SIGKILL)
    if cfg.sleep:
        time.sleep(cfg.sleep)
    if ctx.unit in cfg.fail_units:
        raise RuntimeError(f"injected failure in unit {ctx.unit}")
    value = int(ctx.upstream["prepare"]["value"]) ** 2
    if cfg.write_files:
        ctx.output_path("work", f"{ctx.unit}.txt").write_text(f"{value}\n")
    ctx.log.info("value %d on %s", value, _where())
    return {"value": value}


def _where() -> str:
    """Which kind of worker this is: a Slurm job, an MPI rank, or a local process."""
    if "SLURM_JOB_ID" in os.environ:
        return f"slurm job {os.environ['SLURM_JOB_ID']}"
    for var in ("OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        if var in os.environ:
            return f"mpi rank {os.environ[var]}"
    return f"local process {os.getpid()}"


def collect(ctx: UnitContext) -> dict[str, Any]:
    """Sum every unit's value into ``outputs/total.json``."""
    values = {u: int(r["value"]) for u, r in ctx.upstream["work"].items()}
    path = ctx.output_path("total.json")
    path.write_text(json.dumps({"units": len(values), "total": sum(values.values())}) + "\n")
    return {"total": sum(values.values()), "outputs": {"total": ctx.relative(path)}}


PIPELINE = Pipeline(
    name="toy",
    description="diagnostic pipeline without data: cluster check, engine overhead, fault tests",
    config_model=ToyConfig,
    units=_units,
    steps=(
        Step("prepare", prepare, description="value of the unit"),
        Step("work", work, after=(per_unit("prepare"),), description="square it"),
        Step("collect", collect, fan_out=False, after=(all_units("work"),), description="sum"),
    ),
)
