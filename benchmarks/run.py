"""Run every benchmark and store the results in benchmarks/results/ (``make bench``).

Each benchmark module has ``main(argv) -> dict``; results are written as JSON with the command
line that produced them, ready to be copied into docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import psutil

# ducc0 sizes its FFT thread pool once, at import (below), from this or OMP_NUM_THREADS
os.environ.setdefault("DUCC0_NUM_THREADS", str(os.cpu_count() or 1))

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks import (  # noqa: E402
    cyto_batch_size,
    cyto_features,
    czi_readers,
    engine_overhead,
    peers_cyto,
    peers_spim,
    resave_throughput,
    service_http,
    spim_deconvolution,
    spim_ops,
)

BENCHMARKS = {
    "engine_overhead": (engine_overhead.main, ["--units", "10000", "--workers", "2"]),
    "czi_readers": (czi_readers.main, ["--repeat", "7"]),
    "resave_throughput": (resave_throughput.main, ["--workers", "2"]),
    "cyto_features": (cyto_features.main, ["--n", "2000", "--repeat", "3"]),
    "cyto_batch_size": (cyto_batch_size.main, ["--n", "10000"]),
    "spim_ops": (spim_ops.main, []),
    "spim_deconvolution": (
        spim_deconvolution.main,
        ["--size", "128", "--views", "4", "--iterations", "10", "--threads", "2"],
    ),
    "spim_deconvolution_256": (
        spim_deconvolution.main,
        ["--size", "256", "--iterations", "5", "--threads", "2", "--blocks", "none,128"],
    ),
    # installs multiview-stitcher into its own venv on first use (benchmarks/.peers)
    "peers_spim": (peers_spim.main, ["--workers", "2"]),
    "service_http": (service_http.main, ["--clients", "100", "--seconds", "30"]),
    # installs SCIP and CellProfiler into their own venvs on first use (benchmarks/.peers)
    "peers_cyto": (peers_cyto.main, ["--n", "10000", "--workers", "2", "--fields", "32"]),
}


def main(names: list[str] | None = None) -> None:
    """Run the benchmarks (all, or those ``names``), write benchmarks/results/<name>.json.

    ``python benchmarks/run.py [NAME ...]``; an unknown name is an error before anything runs.
    """
    chosen = names or list(BENCHMARKS)
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    results_dir = HERE / "results"
    results_dir.mkdir(exist_ok=True)
    machine = {
        "cpus": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for name in chosen:
        func, argv = BENCHMARKS[name]
        command = f"python benchmarks/{func.__module__.rsplit('.', 1)[-1]}.py {' '.join(argv)}"
        print(f"== {name}: {command}", flush=True)
        result = func(argv)
        result.update(
            command=command,
            machine=machine,
            date=time.strftime("%Y-%m-%d"),
        )
        (results_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
