"""Per-object feature extraction throughput: ms per image, single core, per feature family.

Data: ``scopeflow.testing.make_cyto_dataset(out, kind="ifc", n=2000)`` (6 channels x 90 x 90
uint16 images in ``images.zarr``, one cell per image in ``labels.tif``; cached in
``benchmarks/.data``). The whole batch is measured by one call of
:func:`scopeflow.ops.cyto.features.measure_objects` per feature family (and one with all
families), in this process, pinned to one CPU, best of ``--repeat`` runs; loading is excluded
(reported separately). SCIP 0.1.12 needs 134 ms of CPU per image on the same kind of data
(``../shared/peers/README.md``): the ratio is reported.

A second experiment chooses the number of texture grey levels: for each candidate, the time of
the texture family and how much its features merely measure object size (median over the 13
Haralick features x channels x scales of the absolute Spearman correlation with the area).

    python benchmarks/cyto_features.py --n 2000 --repeat 3
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import tifffile  # noqa: E402
import zarr  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._data import ifc_dataset  # noqa: E402
from scopeflow.ops.cyto.features import FAMILIES, measure_objects  # noqa: E402

SCIP_MS_PER_IMAGE = 134.0  # CPU ms per 6x90x90 image, ../shared/peers/README.md


def dataset(n: int) -> tuple[np.ndarray, np.ndarray, list[str], float]:
    """Labels ``(N, H, W)``, images ``(N, C, H, W)``, channel names, load seconds."""
    folder = ifc_dataset(n)
    t0 = time.perf_counter()
    labels = tifffile.imread(folder / "labels.tif")
    group = zarr.open_array(folder / "images.zarr", mode="r")
    images = np.asarray(group[:])
    channels = list(group.attrs.get("channels", [f"ch{c}" for c in range(images.shape[1])]))
    return labels, images, channels, time.perf_counter() - t0


def _best(repeat: int, func: Any) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = func()
        best = min(best, time.perf_counter() - t0)
    return best, out


def measure(n: int, repeat: int, levels: list[int]) -> dict[str, Any]:
    """Run both experiments and return the figures."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    labels, images, channels, load_s = dataset(n)
    n_img = labels.shape[0]
    per_family: dict[str, Any] = {}
    for fam in (*FAMILIES, "all"):
        fams = FAMILIES if fam == "all" else (fam,)
        seconds, out = _best(
            repeat,
            lambda fams=fams: measure_objects(
                labels, images, channel_names=channels, families=fams
            ),
        )
        per_family[fam] = {
            "ms_per_image": round(1e3 * seconds / n_img, 3),
            "columns": len(out) - 2,
            "rows": int(out["ObjectNumber"].size),
        }
    all_ms = per_family["all"]["ms_per_image"]
    area = measure_objects(labels, families=("shape",))["AreaShape_Area"]
    level_rows = []
    for lv in levels:
        seconds, out = _best(
            repeat,
            lambda lv=lv: measure_objects(
                labels, images, channel_names=channels, families=("texture",), texture_levels=lv
            ),
        )
        rho = [
            abs(spearmanr(v, area, nan_policy="omit")[0])
            for k, v in out.items()
            if k.startswith("Texture_") and np.nanstd(v) > 0
        ]
        by_feature = {
            f: round(
                float(
                    np.median(
                        [
                            abs(spearmanr(v, area, nan_policy="omit")[0])
                            for k, v in out.items()
                            if k.startswith(f"Texture_{f}_") and np.nanstd(v) > 0
                        ]
                    )
                ),
                3,
            )
            for f in ("AngularSecondMoment", "Entropy", "SumEntropy", "Contrast")
        }
        level_rows.append(
            {
                "levels": lv,
                "texture_ms_per_image": round(1e3 * seconds / n_img, 3),
                "median_abs_spearman_with_area": round(float(np.median(rho)), 3),
                "by_feature": by_feature,
            }
        )
    return {
        "benchmark": "cyto_features",
        "images": n_img,
        "image_shape": list(images.shape[1:]),
        "objects": per_family["all"]["rows"],
        "single_core": True,
        "repeat": repeat,
        "load_ms_per_image": round(1e3 * load_s / n_img, 3),
        "per_family": per_family,
        "scip_ms_per_image": SCIP_MS_PER_IMAGE,
        "speedup_vs_scip": round(SCIP_MS_PER_IMAGE / all_ms, 1),
        "texture_levels": level_rows,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; prints the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="images in the synthetic dataset")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best kept)")
    parser.add_argument(
        "--levels", default="8,16,24,32,64,256", help="texture grey levels to compare (comma list)"
    )
    args = parser.parse_args(argv)
    levels = [int(v) for v in args.levels.split(",") if v]
    result = measure(args.n, args.repeat, levels)
    json.dump(result, sys.stdout, indent=2)
    print()
    return result


if __name__ == "__main__":
    main()
