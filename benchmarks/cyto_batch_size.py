"""Choose the cytometry pipeline's default batch size (images per unit) by measurement.

Runs ``scopeflow run cyto`` on the same synthetic IFC dataset (``--n`` images of 6 x 90 x 90,
``make_cyto_dataset(kind="ifc", seed=0)``, cached in ``benchmarks/.data``) once per batch size,
with ``--workers`` single-threaded workers, from a fresh run directory each time, and reports:
wall seconds of the whole command, images/s, the ``process`` units' seconds per image per core
and their parts (normalize, segment, mask, features), and the largest peak RSS of a worker.

Small batches pay a fixed cost per unit (scheduling, a Parquet part, a QC sample); large ones
allocate large temporaries that the allocator hands back to the system and page-faults in
again, and hold more memory.

    python benchmarks/cyto_batch_size.py --n 10000 --sizes 50 100 200 400 800
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._data import ifc_dataset  # noqa: E402

SCOPEFLOW = Path(sys.executable).parent / "scopeflow"


def one_run(folder: Path, size: int, workers: int) -> dict[str, Any]:
    """Run the pipeline with ``batch_size: size``; figures from the run directory."""
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    cfg["batch_size"] = size
    config = folder / f"config-batch-{size}.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run = folder / "runs" / f"batch-{size}"
    shutil.rmtree(run, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(SCOPEFLOW), "run", "cyto", "-c", str(config), "-w", str(run)]
    cmd += ["-n", str(workers), "--no-progress"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    wall = time.perf_counter() - t0
    records = [json.loads(p.read_text()) for p in (run / "state" / "process").glob("*.json")]
    n = sum(r["result"]["images"] for r in records)
    parts: dict[str, float] = {}
    for r in records:
        for k, v in r["result"]["seconds"].items():
            parts[k] = parts.get(k, 0.0) + v
    return {
        "batch_size": size,
        "units": len(records),
        "wall_s": round(wall, 2),
        "images_per_s": round(n / wall, 1),
        "process_ms_per_image_per_core": round(sum(r["seconds"] for r in records) / n * 1e3, 2),
        "parts_ms_per_image": {k: round(v / n * 1e3, 2) for k, v in parts.items()},
        "peak_worker_rss_mb": max(r["peak_rss_mb"] for r in records),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; prints the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 400, 800])
    args = parser.parse_args(argv)
    folder = ifc_dataset(args.n)
    rows = [one_run(folder, size, args.workers) for size in args.sizes]
    out = {"benchmark": "cyto_batch_size", "images": args.n, "workers": args.workers, "runs": rows}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
