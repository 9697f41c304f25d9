"""Resave throughput: TIFF views → BigDataViewer HDF5 (with pyramid) and → OME-Zarr (with pyramid).

A synthetic multiview time-lapse (``scopeflow.testing.make_spim_dataset``, 4 views x 4 time
points of 128 x 512 x 512 uint16 = 1.07 GB of TIFFs by default; cached in
``benchmarks/.data``) is resaved the way the SPIM pipeline's ``resave`` step does it: one unit of
work per time point, run in parallel worker processes, each reading its TIFF views lazily and
writing its own BDV partition file (then one master file + XML) or its own time-point region of
one OME-Zarr image per view. Throughput = input bytes / wall seconds. In the same run, the raw
sequential write speed of the same disk is measured (1 GiB of incompressible bytes + fsync).
The input TIFFs are in the page cache (they were just written or read): this measures the
writers, which is what the goal is about. Both the raw write and the resaves are timed until
their data are on disk (fsync / ``os.sync``).

    python benchmarks/resave_throughput.py --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._disk import sequential_write_mb_s  # noqa: E402
from scopeflow.io import (  # noqa: E402
    SpimData,
    TiffReader,
    ViewSetup,
    ViewTransform,
    create_ome_zarr,
    partition_filename,
    write_bdv_master,
    write_bdv_partition,
    write_ome_zarr_region,
    write_spimdata,
)
from scopeflow.testing import SpimTruth, make_spim_dataset  # noqa: E402


def dataset(shape: tuple[int, int, int], views: int, timepoints: int) -> SpimTruth:
    """The cached synthetic dataset (made once)."""
    folder = HERE / ".data" / f"resave-{views}v{timepoints}t-{'x'.join(map(str, shape))}"
    if not (folder / "truth.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        make_spim_dataset(
            folder, views=views, timepoints=timepoints, shape=shape, seed=0, write_czi=False
        )
    return SpimTruth.from_json(folder / "truth.json")


def _views(truth: SpimTruth, t: int) -> dict[int, Any]:
    return {v: TiffReader(truth.path("tiff", t, v)).to_dask(0) for v in range(truth.n_views)}


def resave_bdv_timepoint(truth_json: str, out: str, t: int) -> str:
    """One unit of work: time point ``t`` → its own BDV partition file."""
    truth = SpimTruth.from_json(truth_json)
    path = Path(out) / partition_filename("dataset", t)
    write_bdv_partition(path, t, _views(truth, t), voxel_size=truth.voxel_size, num_workers=1)
    return str(path)


def resave_zarr_timepoint(truth_json: str, out: str, t: int) -> None:
    """One unit of work: time point ``t`` → its region of each view's OME-Zarr image."""
    truth = SpimTruth.from_json(truth_json)
    for v, arr in _views(truth, t).items():
        write_ome_zarr_region(Path(out) / f"view{v:02d}.ome.zarr", t, arr)


def run_bdv(truth: SpimTruth, out: Path, workers: int) -> float:
    """Resave every time point in parallel, then the master file and XML; wall seconds."""
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        parts = list(
            pool.map(
                resave_bdv_timepoint,
                [str(truth.root / "truth.json")] * truth.n_timepoints,
                [str(out)] * truth.n_timepoints,
                range(truth.n_timepoints),
            )
        )
    master = write_bdv_master(out / "dataset.h5", parts)
    sd = SpimData(
        hdf5=master,
        timepoints=list(range(truth.n_timepoints)),
        setups={
            v: ViewSetup(
                id=v, name=f"view {v}", size=truth.shape[::-1], voxel_size=truth.voxel_size
            )
            for v in range(truth.n_views)
        },
    )
    for t in range(truth.n_timepoints):
        for v in range(truth.n_views):
            sd.set_transforms(t, v, [ViewTransform("calibration", truth.nominal_affines[v])])
    write_spimdata(sd, out / "dataset.xml")
    os.sync()  # on disk, like the raw write it is compared with (which fsyncs)
    return time.perf_counter() - t0


def run_zarr(truth: SpimTruth, out: Path, workers: int) -> float:
    """Preallocate one OME-Zarr per view, fill time points in parallel; wall seconds."""
    t0 = time.perf_counter()
    for v in range(truth.n_views):
        create_ome_zarr(
            out / f"view{v:02d}.ome.zarr",
            (truth.n_timepoints, *truth.shape),
            "uint16",
            axes="tzyx",
            voxel_size=truth.voxel_size,
        )
    with ProcessPoolExecutor(workers) as pool:
        list(
            pool.map(
                resave_zarr_timepoint,
                [str(truth.root / "truth.json")] * truth.n_timepoints,
                [str(out)] * truth.n_timepoints,
                range(truth.n_timepoints),
            )
        )
    os.sync()
    return time.perf_counter() - t0


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; prints the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="128,512,512", help="z,y,x of each view")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--timepoints", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / ".data" / "resave-out")
    args = parser.parse_args(argv)
    shape = tuple(int(s) for s in args.shape.split(","))
    truth = dataset(shape, args.views, args.timepoints)  # type: ignore[arg-type]
    input_bytes = sum(
        truth.path("tiff", t, v).stat().st_size
        for t in range(truth.n_timepoints)
        for v in range(truth.n_views)
    )
    shutil.rmtree(args.out, ignore_errors=True)
    # the virtual disk's speed varies from run to run: the median of three 1 GiB writes
    disk_runs = [sequential_write_mb_s(args.out, total_mb=1024) for _ in range(3)]
    disk = statistics.median(disk_runs)
    result: dict[str, Any] = {
        "benchmark": "resave_throughput",
        "input_gb": round(input_bytes / 1e9, 3),
        "views": args.views,
        "timepoints": args.timepoints,
        "shape_zyx": list(shape),
        "workers": args.workers,
        "disk_sequential_write_mb_s": round(disk, 1),
        "disk_runs_mb_s": [round(d, 1) for d in disk_runs],
    }
    for name, func in (("bdv_hdf5", run_bdv), ("ome_zarr", run_zarr)):
        out = args.out / name
        out.mkdir(parents=True)
        seconds = func(truth, out, args.workers)
        mb_s = input_bytes / seconds / 1e6
        result[name] = {
            "wall_s": round(seconds, 2),
            "mb_s": round(mb_s, 1),
            "fraction_of_disk": round(mb_s / disk, 3),
            "output_gb": round(_size(out) / 1e9, 3),
        }
        shutil.rmtree(out)
    json.dump(result, sys.stdout, indent=2)
    print()
    return result


if __name__ == "__main__":
    main()
