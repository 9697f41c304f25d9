"""Virtual environments of the peers (SCIP 0.1.12, CellProfiler 4.2.8.1), made on first use.

Recipes from ``../shared/peers/README.md``: each peer gets its own Python 3.9 venv under
``benchmarks/.peers/`` (git-ignored, never committed). An install is attempted once; its log is
kept beside the venv (``install.log``) and a failed attempt is recorded in ``FAILED`` so later runs
report the same reason without retrying (delete the folder to retry).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEERS = HERE / ".peers"
SHARED_PEERS = HERE.parent.parent / "shared" / "peers"
PYTHON39 = Path.home() / ".pyenv" / "versions" / "3.9.18" / "bin" / "python"
PYTHON311 = Path.home() / ".pyenv" / "versions" / "3.11.7" / "bin" / "python"
MVS_VERSION = "0.1.62"

SCIP_VERSION = "0.1.12"
CELLPROFILER_VERSION = "4.2.8.1"
JAVA_HOME_CANDIDATES = (
    "/usr/lib/jvm/java-17-openjdk-amd64",
    "/usr/lib/jvm/openjdk-17",
)

# CellProfiler 4.2.8.1's and cellprofiler-core 4.2.8.1's declared dependencies (wheel METADATA),
# without wxPython (GUI only; needs GTK dev files) and with numpy held at 1.23.5 (javabridge).
CELLPROFILER_DEPS = (
    "boto3>=1.12.28",
    "centrosome>=1.2.3,<1.3",
    "docutils==0.15.2",
    "h5py~=3.7.0",
    "imageio>=2.5",
    "inflect>=2.1,<7",
    "Jinja2>=2.11.2",
    "joblib>=0.13",
    "mahotas>=1.4",
    "matplotlib>=3.1.3,<4",
    "mysqlclient==1.4.6",
    "Pillow>=7.1.0",
    "prokaryote==2.4.4",
    "python-bioformats==4.0.7",
    "pyzmq~=22.3",
    "sentry-sdk==0.18.0",
    "requests>=2.22",
    "scipy==1.9.0",
    "scikit-image==0.18.3",
    "scikit-learn>=0.20,<1",
    "six",
    "tifffile<2022.4.22",
    "psutil>=5.7.0",
    "future",
    "fsspec",
)


def java_home() -> str | None:
    """The installed OpenJDK 17, if any."""
    for cand in JAVA_HOME_CANDIDATES:
        if (Path(cand) / "bin" / "java").exists():
            return cand
    return None


def _run(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    with log.open("a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        return subprocess.run(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, check=False
        ).returncode


def _error_lines(log: Path, n: int = 12) -> list[str]:
    """The lines of a pip log that say why it failed (errors first, else the tail)."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    keys = ("error", "Error", "ERROR", "fatal", "not found", "No matching")
    hits = [ln.strip() for ln in lines if any(k in ln for k in keys)]
    return (hits or [ln.strip() for ln in lines])[-n:]


def _ensure(
    name: str,
    steps: list[tuple[list[str], dict[str, str] | None]],
    check: list[str],
    python: Path = PYTHON39,
) -> dict[str, Any]:
    """Create ``PEERS/name`` with ``steps`` unless it exists; ``check`` must then exit 0."""
    venv = PEERS / name
    failed = venv / "FAILED"
    log = venv / "install.log"
    if failed.exists():
        return {"ok": False, "venv": str(venv), "reason": failed.read_text().splitlines()}
    py = venv / "bin" / "python"
    if (venv / "OK").exists() and py.exists():
        return {"ok": True, "venv": str(venv), "install_s": None}
    if not python.exists():
        return {"ok": False, "venv": str(venv), "reason": [f"Python not found at {python}"]}
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    made = subprocess.run(
        [str(python), "-m", "venv", str(venv)], capture_output=True, text=True, check=False
    )
    if made.returncode != 0:
        return {"ok": False, "venv": str(venv), "reason": ["venv:", *made.stderr.splitlines()]}
    for cmd, env in [*steps, (check, None)]:
        full = [str(venv / "bin" / cmd[0]), *cmd[1:]]
        if _run(full, log, env) != 0:
            reason = [f"failed: {' '.join(cmd)}", *_error_lines(log)]
            failed.write_text("\n".join(reason) + "\n")
            return {"ok": False, "venv": str(venv), "reason": reason}
    (venv / "OK").write_text("ok\n")
    return {"ok": True, "venv": str(venv), "install_s": round(time.perf_counter() - t0, 1)}


def ensure_scip() -> dict[str, Any]:
    """SCIP 0.1.12 in ``.peers/scip-0.1.12`` (Python 3.9, late-2022 pins)."""
    constraints = SHARED_PEERS / "scip-constraints-py39.txt"
    if not constraints.exists():
        return {"ok": False, "reason": [f"constraints file missing: {constraints}"]}
    steps: list[tuple[list[str], dict[str, str] | None]] = [
        (["pip", "install", "pip<25"], None),
        (
            [
                "pip",
                "install",
                f"scip[jobqueue]=={SCIP_VERSION}",
                "psutil",
                "-c",
                str(constraints),
            ],
            None,
        ),
    ]
    out = _ensure(f"scip-{SCIP_VERSION}", steps, ["scip", "--help"])
    out["version"] = SCIP_VERSION
    return out


def ensure_cellprofiler() -> dict[str, Any]:
    """CellProfiler 4.2.8.1 headless in ``.peers/cellprofiler-4.2.8.1``."""
    jh = java_home()
    if jh is None:
        return {"ok": False, "reason": ["no OpenJDK 17 under /usr/lib/jvm"]}
    env = {**os.environ, "JAVA_HOME": jh}
    build = ["numpy==1.23.5", "cython<3", "setuptools<70", "wheel"]
    steps: list[tuple[list[str], dict[str, str] | None]] = [
        (["pip", "install", "pip<25"], None),
        (["pip", "install", *build], None),
        (
            ["pip", "install", "--no-build-isolation", "python-javabridge==4.0.3", *build],
            env,
        ),
        (
            [
                "pip",
                "install",
                "--no-deps",
                f"cellprofiler=={CELLPROFILER_VERSION}",
                f"cellprofiler-core=={CELLPROFILER_VERSION}",
            ],
            None,
        ),
        (["pip", "install", "--no-build-isolation", *CELLPROFILER_DEPS, *build], env),
    ]
    out = _ensure(
        f"cellprofiler-{CELLPROFILER_VERSION}",
        steps,
        ["python", "-c", "import cellprofiler_core.pipeline, cellprofiler.modules, javabridge"],
    )
    out["version"] = CELLPROFILER_VERSION
    out["java_home"] = jh
    return out


def ensure_multiview_stitcher() -> dict[str, Any]:
    """multiview-stitcher 0.1.62 in ``.peers/multiview-stitcher-0.1.62`` (Python 3.11)."""
    steps: list[tuple[list[str], dict[str, str] | None]] = [
        (
            [
                "pip",
                "install",
                f"multiview-stitcher=={MVS_VERSION}",
                "pybdv",
                "h5py",
                "joblib",
                "psutil",
                "tifffile",
            ],
            None,
        ),
    ]
    check = ["python", "-c", "import multiview_stitcher"]
    out = _ensure(f"multiview-stitcher-{MVS_VERSION}", steps, check, python=PYTHON311)
    out["version"] = MVS_VERSION
    return out
