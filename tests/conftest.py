"""Shared fixtures: a real LocalCluster, and a runner for the ``scopeflow`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import dask
import pytest
from distributed import Client, LocalCluster

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
EXAMPLE_TEMPLATES = REPO / "src/scopeflow/service/templates.example.yaml"
"""The service's example registry of command templates."""


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Client]:
    """A real LocalCluster of two single-threaded worker processes, shared by the session."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 2}):
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
            silence_logs=50,
        )
    # not the default scheduler: tests that compute plain dask arrays keep their local scheduler
    with cluster, Client(cluster, set_as_default=False) as client:
        yield client


def cli_env() -> dict[str, str]:
    """Environment for ``scopeflow`` subprocesses (no colour, wide console)."""
    env = dict(os.environ)
    env.update({"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb", "PYTHONUNBUFFERED": "1"})
    return env


def scopeflow_cmd(*args: str | Path) -> list[str]:
    """argv of the installed ``scopeflow`` command."""
    return [sys.executable, "-m", "scopeflow", *map(str, args)]


def run_cli(
    args: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    timeout: float = 240,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``scopeflow ARGS`` (environment: :func:`cli_env` plus ``extra_env``), capture output."""
    return subprocess.run(
        scopeflow_cmd(*args),
        cwd=cwd,
        env={**cli_env(), **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
