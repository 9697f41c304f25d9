"""Fixtures for integration tests that need real HPC infrastructure.

``slurm``
    A running Slurm controller with a usable node. If ``sinfo`` already works it
    is used as it is. Otherwise, with ``SCOPEFLOW_SLURM_AUTOSTART=1`` (and as
    root), ``scripts/slurm-up.sh`` starts a single-node Slurm on localhost for
    the test session and ``scripts/slurm-down.sh`` stops it afterwards.
    Otherwise the test is skipped.

``mpirun``
    OpenMPI's ``mpirun`` plus the environment from ``scripts/mpi-env.sh`` (run
    as root, oversubscribe, local launch only), and ``mpi4py``/``dask_mpi``
    importable by this interpreter. Otherwise the test is skipped.

With ``SCOPEFLOW_REQUIRE_INFRA=1`` (set in CI) a missing piece fails the test
instead of skipping it, so that CI can never go green by skipping these.

Tests using them carry ``pytest.mark.slurm`` / ``pytest.mark.mpi``.

``chromium``, ``browser_page``
    Debian's headless ``chromium`` driven by Playwright (skipped, or failed under
    ``SCOPEFLOW_REQUIRE_INFRA=1``, without it or the ``playwright`` package).

``web_server``
    A real ``scopeflow server`` (API and worker, :class:`scopeflow.testing.Server`) on a data
    folder made by :func:`service_data`: the example templates and one user, alice / pw.

``shots``
    The folder for the web tests' screenshots: ``SCOPEFLOW_WEB_SCREENSHOTS`` (``docs/screenshots``
    refreshes the documentation's), else one in the test's temporary folder.

:func:`example_images` writes the small TIFFs that the ``example-segment`` pipeline segments.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytest
import tifffile

from scopeflow.testing import Server
from tests.conftest import EXAMPLE_TEMPLATES, cli_env, run_cli

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "scripts"
USABLE_NODE_STATES = "idle,mixed,allocated,completing"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _unavailable(reason: str) -> NoReturn:
    """Skip, or fail when SCOPEFLOW_REQUIRE_INFRA=1 says the infrastructure must be there."""
    if _flag("SCOPEFLOW_REQUIRE_INFRA"):
        pytest.fail(
            f"{reason} (SCOPEFLOW_REQUIRE_INFRA=1, so this fails instead of skipping)",
            pytrace=False,
        )
    pytest.skip(reason)


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# --------------------------------------------------------------------------- Slurm


@dataclass(frozen=True)
class SlurmInfo:
    """What tests need to know about the Slurm they run against."""

    partition: str
    """Default partition (``debug`` for the one slurm-up.sh writes)."""
    started_here: bool
    """True if this test session started Slurm (and will stop it)."""
    accounting: bool
    """True if Slurm stores accounting in slurmdbd, so ``sacct`` works."""


def _slurm_usable() -> tuple[bool, str]:
    """(usable, why not): sinfo answers and at least one node can take jobs."""
    if shutil.which("sinfo") is None:
        return False, "Slurm client tools (sinfo) are not installed; run scripts/system-deps.sh"
    try:
        # quick: sinfo retries for ~10 s when slurmctld is down, scontrol ping does not
        ping = _run(["scontrol", "ping"], timeout=20)
        if ping.returncode != 0 or "UP" not in ping.stdout:
            first_line = (ping.stdout + ping.stderr).strip().splitlines()[:1]
            return False, f"slurmctld is not reachable: {' '.join(first_line)}"
        probe = _run(["sinfo", "-h", "-o", "%T"], timeout=20)
    except subprocess.TimeoutExpired:
        return False, "scontrol ping / sinfo timed out"
    if probe.returncode != 0:
        return False, f"sinfo failed: {_tail(probe.stderr or probe.stdout, 5)}"
    states = {s.strip() for s in probe.stdout.split()}
    if not states & set(USABLE_NODE_STATES.split(",")):
        return False, f"Slurm answers but has no usable node (states: {sorted(states)})"
    return True, ""


def _default_partition() -> str:
    out = _run(["sinfo", "-h", "-o", "%P"], timeout=20).stdout.split()
    for name in out:
        if name.endswith("*"):
            return name.rstrip("*")
    return out[0] if out else "debug"


def _accounting_enabled() -> bool:
    out = _run(["scontrol", "show", "config"], timeout=20).stdout
    match = re.search(r"^AccountingStorageType\s*=\s*(\S+)", out, re.MULTILINE)
    return bool(match and match.group(1).endswith("slurmdbd"))


def _slurm_down() -> None:
    _run(["bash", str(SCRIPTS / "slurm-down.sh")], timeout=180)


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmInfo]:
    usable, why = _slurm_usable()
    started_here = False
    if not usable:
        if not _flag("SCOPEFLOW_SLURM_AUTOSTART"):
            _unavailable(
                f"no usable Slurm ({why}); run `sudo scripts/slurm-up.sh` "
                "or set SCOPEFLOW_SLURM_AUTOSTART=1"
            )
        if os.geteuid() != 0:
            _unavailable("SCOPEFLOW_SLURM_AUTOSTART=1 needs root to run scripts/slurm-up.sh")
        try:
            up = _run(["bash", str(SCRIPTS / "slurm-up.sh")], timeout=300)
        except subprocess.TimeoutExpired:
            _slurm_down()
            _unavailable("scripts/slurm-up.sh did not finish within 300 s")
        if up.returncode != 0:
            _slurm_down()  # whatever it did start
            _unavailable(
                f"scripts/slurm-up.sh failed (exit {up.returncode}):\n"
                f"{_tail(up.stdout + up.stderr)}"
            )
        started_here = "already up" not in up.stdout
    try:
        if not usable:
            usable, why = _slurm_usable()
            if not usable:
                _unavailable(f"Slurm still unusable after scripts/slurm-up.sh: {why}")
        yield SlurmInfo(
            partition=_default_partition(),
            started_here=started_here,
            accounting=_accounting_enabled(),
        )
    finally:
        if started_here:
            _slurm_down()


# --------------------------------------------------------------------------- MPI


def _mpi_env_from_script(path: Path) -> dict[str, str]:
    """The ``export NAME=VALUE`` lines of scripts/mpi-env.sh."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"\s*export\s+([A-Za-z_][A-Za-z0-9_]*)=(\S*)\s*", line)
        if match:
            env[match.group(1)] = match.group(2).strip("'\"")
    return env


@dataclass(frozen=True)
class MpiRun:
    """OpenMPI's launcher and the environment it needs here."""

    path: str
    env: dict[str, str] = field(repr=False)
    """Full environment for subprocess (os.environ plus scripts/mpi-env.sh)."""
    extra_env: dict[str, str]
    """Only the variables from scripts/mpi-env.sh."""

    def cmd(self, nprocs: int, *argv: str) -> list[str]:
        """``mpirun -np N ARGV...``; run Python as ``python -m mpi4py script.py`` so that an
        exception on any rank aborts all ranks instead of hanging in MPI_Finalize."""
        return [self.path, "-np", str(nprocs), *argv]

    def run_scopeflow(
        self, nprocs: int, *args: str | Path, timeout: float = 400
    ) -> subprocess.CompletedProcess[str]:
        """``mpirun -np N python -m mpi4py -m scopeflow ARGS`` with the CLI's environment."""
        cmd = self.cmd(
            nprocs, sys.executable, "-m", "mpi4py", "-m", "scopeflow", *(str(a) for a in args)
        )
        env = {**cli_env(), **self.extra_env}
        return subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )


@pytest.fixture(scope="session")
def mpirun() -> MpiRun:
    path = shutil.which("mpirun")
    if path is None:
        _unavailable("OpenMPI's mpirun is not installed; run scripts/system-deps.sh")
    missing = [m for m in ("mpi4py", "dask_mpi") if importlib.util.find_spec(m) is None]
    if missing:
        _unavailable(
            f"{', '.join(missing)} not importable; "
            "run `uv pip install mpi4py dask-mpi` into the venv"
        )
    extra = _mpi_env_from_script(SCRIPTS / "mpi-env.sh")
    if not extra:
        _unavailable("scripts/mpi-env.sh exports nothing")
    env = {**os.environ, **extra}
    try:
        version = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=30, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        _unavailable("mpirun --version timed out")
    if version.returncode != 0 or "Open MPI" not in version.stdout + version.stderr:
        _unavailable(
            f"{path} is not a working OpenMPI mpirun: {_tail(version.stdout + version.stderr, 5)}"
        )
    return MpiRun(path=path, env=env, extra_env=extra)


# -- a real headless browser -------------------------------------------------------------------


@pytest.fixture
def chromium() -> str:
    """Path of Debian's chromium (skip, or fail under SCOPEFLOW_REQUIRE_INFRA=1, without it)."""
    if importlib.util.find_spec("playwright") is None:
        _unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    path = shutil.which("chromium")
    if path is None:
        _unavailable("no chromium on PATH (scripts/system-deps.sh installs Debian's)")
    return path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the test item (``item.rep_setup``, ``rep_call``, …), so
    that a fixture's teardown can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def browser_page(
    chromium: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Any, Any]]:
    """A 1280x800 page of a new headless Chromium (downloads allowed) and Playwright's
    ``expect``, both with 15 s timeouts; never a downloaded browser (``executable_path``).

    A failing test leaves ``tmp_path/failure.png`` (the page as the failure left it); an
    uncaught error of the page's scripts fails the test.
    """
    from playwright.sync_api import expect, sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = browser.new_context(
            viewport={"width": 1280, "height": 800}, accept_downloads=True
        )
        page = context.new_page()  # page.context may open more tabs
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.set_default_timeout(15_000)
        expect.set_options(timeout=15_000)
        try:
            yield page, expect
            # pytest does not raise a test's failure into its fixtures: the report says it
            report = getattr(request.node, "rep_call", None)
            if report is not None and report.failed:
                page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        finally:
            browser.close()
    assert not errors, errors


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """The screenshots' folder: ``SCOPEFLOW_WEB_SCREENSHOTS``, else ``tmp_path/shots``."""
    folder = Path(os.environ.get("SCOPEFLOW_WEB_SCREENSHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def example_images(folder: Path) -> list[Path]:
    """``folder/img0.tif`` and ``img1.tif`` (folder created when missing): 96 x 96 uint16
    noise with four bright round objects each, for the ``example-segment`` pipeline."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :96]
    paths = []
    for i in range(2):
        img = rng.normal(100, 5, (96, 96))
        for cy, cx in rng.uniform(15, 80, (4, 2)):
            img += 400 * ((yy - cy) ** 2 + (xx - cx) ** 2 < 36)
        paths.append(folder / f"img{i}.tif")
        tifffile.imwrite(paths[-1], img.astype(np.uint16))
    return paths


def service_data(folder: Path) -> Path:
    """A service data folder ``folder/service``: the example templates and alice (password pw)."""
    data = folder / "service"
    data.mkdir()
    shutil.copy(EXAMPLE_TEMPLATES, data / "templates.yaml")
    result = run_cli(["admin", "create-user", "alice", "--password", "pw", "--data-dir", data])
    assert result.returncode == 0, result.stderr
    return data


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[Server]:
    """A real ``scopeflow server`` on :func:`service_data`, stopped after the test."""
    with Server(service_data(tmp_path)) as srv:
        yield srv
