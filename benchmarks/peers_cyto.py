"""Cytometry side by side: scopeflow vs SCIP 0.1.12 (and CellProfiler 4) on the same images.

Data (``scopeflow.testing.make_cyto_dataset``, cached in ``benchmarks/.data``):

IFC
    ``--n`` images of 6 x 90 x 90 (one cell each). SCIP reads one TIFF per channel per image
    named ``<id>_Ch<channel>.tif``; those files are written once from the synthetic channel
    stacks (``peers-ifc-N/scip/``, not timed). scopeflow runs twice: on those same per-image
    files (``layout: files``) and on the dataset's ready ``config.yaml`` (one multi-page TIFF
    per channel). CellProfiler reads the same per-image files.
Confocal
    ``--fields`` fields of 5 x 900 x 1600 (~100 cells each): scopeflow with the dataset's config
    (field mode: Li threshold + nucleus-seeded watershed). SCIP is tried with its only classical
    field segmentation (``watershed_dapi``); the error is recorded when it fails.

Every tool gets the same worker count (``--workers``, one thread each). For each run: wall
seconds of the whole command (start-up included), images/s, CPU seconds per image (user + sys
of the whole process tree, ``getrusage(RUSAGE_CHILDREN)``), peak memory (largest sum of RSS
over the process tree, sampled every 0.1 s with psutil) and the 1-minute load average before
and after. Each timed run waits until the 1-minute load average is below ``--max-load``
(at most ``--max-wait`` s) and the input files are read once beforehand (page cache warm
for every tool alike). Peers are installed on first use into their own Python 3.9 venvs under
``benchmarks/.peers/`` (recipes in ``benchmarks/_peers_env.py``); a peer that cannot be
installed or run is recorded with the reason, never faked. Every scopeflow run records the
commit it ran at (and whether ``src/`` was modified).

Besides the whole-command figures, each scopeflow run reports its ``process`` step's own rate
(images from the first ``process`` unit starting to the last one finishing, from
``events.jsonl``): the throughput a long run converges to once the fixed start-up and final
merge are spread over many images.

    python benchmarks/peers_cyto.py --n 2000 --workers 2
    python benchmarks/peers_cyto.py --n 10000 --workers 2 --fields 32
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import tifffile
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._data import DATA  # noqa: E402
from benchmarks._data import ifc_dataset as _ifc_images  # noqa: E402
from benchmarks._peers_cellprofiler import run_cellprofiler_ifc  # noqa: E402
from benchmarks._peers_env import ensure_cellprofiler, ensure_scip  # noqa: E402
from benchmarks._peers_proc import load_average, log_tail, run_measured, wait_quiet  # noqa: E402
from scopeflow.engine import read_events  # noqa: E402
from scopeflow.testing import make_cyto_dataset  # noqa: E402

RUNS = DATA / "peers-runs"
SCIP_CONFIG = HERE.parent.parent / "shared" / "peers" / "scip-ifc-config.yml"
SCOPEFLOW = Path(sys.executable).parent / "scopeflow"

# --------------------------------------------------------------------------------------- data


def ifc_dataset(n: int) -> Path:
    """The synthetic IFC dataset plus one TIFF per channel per image for SCIP (made once)."""
    folder = _ifc_images(n)
    files = folder / "scip"
    done = files / "DONE"
    if not done.exists():
        shutil.rmtree(files, ignore_errors=True)
        files.mkdir()
        channels = json.loads((folder / "dataset.json").read_text())["channels"]
        stacks = [tifffile.imread(folder / "ifc" / f"ch{c}.tif") for c in range(len(channels))]
        for i in range(n):
            for c, stack in enumerate(stacks):
                tifffile.imwrite(files / f"{i}_Ch{c + 1}.tif", stack[i])
        done.write_text(f"{n} images x {len(channels)} channels\n")
    return folder


def confocal_dataset(n: int) -> Path:
    """The synthetic confocal dataset plus one TIFF per channel per field for SCIP (made once)."""
    folder = DATA / f"peers-confocal-{n}"
    if not (folder / "dataset.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        make_cyto_dataset(folder, kind="confocal", n=n, seed=0)
    files = folder / "scip"
    if not (files / "DONE").exists():
        shutil.rmtree(files, ignore_errors=True)
        files.mkdir()
        for i, path in enumerate(sorted((folder / "fields").glob("*.tif"))):
            field = tifffile.imread(path)
            for c in range(field.shape[0]):
                tifffile.imwrite(files / f"{i}_Ch{c + 1}.tif", field[c])
        (files / "DONE").write_text("ok\n")
    return folder


def _warm(folder: Path) -> float:
    """Read every file under ``folder`` once (page cache warm for every tool alike)."""
    t0 = time.perf_counter()
    for p in folder.rglob("*"):
        if p.is_file():
            with p.open("rb") as fh:
                while fh.read(1 << 22):
                    pass
    return time.perf_counter() - t0


def _channels(folder: Path) -> list[str]:
    return list(json.loads((folder / "dataset.json").read_text())["channels"])


# ---------------------------------------------------------------------------------- scopeflow

FAMILY_OF_PREFIX = {
    "AreaShape": "shape",
    "Intensity": "intensity",
    "Texture": "texture",
    "Granularity": "granularity",
    "Location": "location",
    "Mask": "mask (per-channel mask area)",
}
ID_COLUMNS = {"ImageNumber", "ObjectNumber", "image_id", "image_index"}


def scopeflow_feature_counts(path: Path) -> dict[str, Any]:
    """Rows and per-family column counts of scopeflow's ``features.parquet``."""
    schema = pq.read_schema(path)
    cols = [c for c in schema.names if c not in ID_COLUMNS]
    fams: dict[str, int] = {}
    for c in cols:
        fam = FAMILY_OF_PREFIX.get(c.split("_", 1)[0], "other")
        if c.startswith(("AreaShape_BoundingBox", "AreaShape_Center")):
            fam = "bbox / location"
        fams[fam] = fams.get(fam, 0) + 1
    return {
        "objects": pq.read_metadata(path).num_rows,
        "features_per_cell": len(cols),
        "families": fams,
    }


_PART = re.compile(r"(\d+) images, (\d+) objects; (.*)$")


def scopeflow_parts(run_dir: Path) -> dict[str, Any]:
    """Per-part ms per image of the ``process`` step (from its unit logs), image-weighted."""
    total = 0
    sums: dict[str, float] = {}
    for log in sorted((run_dir / "logs" / "process").glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            m = _PART.search(line)
            if not m:
                continue
            n = int(m.group(1))
            total += n
            for part in m.group(3).split(", "):
                name, value, _ = part.rsplit(" ", 2)
                sums[name] = sums.get(name, 0.0) + float(value) * n
    if not total:
        return {}
    return {k: round(v / total, 3) for k, v in sums.items()}


def _step_seconds(events: list[dict[str, Any]]) -> dict[str, float]:
    """Sum of unit seconds per step (done events)."""
    out: dict[str, float] = {}
    for ev in events:
        if ev["state"] == "done" and ev.get("seconds") is not None:
            out[ev["step"]] = round(out.get(ev["step"], 0.0) + float(ev["seconds"]), 3)
    return out


def _process_span(events: list[dict[str, Any]], n_images: int) -> dict[str, Any]:
    """The ``process`` step's wall span (first unit running → last done) and its image rate."""
    ts = {
        state: [e["ts"] for e in events if e["step"] == "process" and e["state"] == state]
        for state in ("running", "done")
    }
    if not ts["running"] or not ts["done"] or max(ts["done"]) <= min(ts["running"]):
        return {}
    span = max(ts["done"]) - min(ts["running"])
    return {"wall_s": round(span, 2), "images_per_s": round(n_images / span, 1)}


def scopeflow_version() -> dict[str, Any]:
    """The commit of the working tree that runs, and whether ``src/`` differs from it."""
    root = HERE.parent

    def git(*a: str) -> str:
        out = subprocess.run(
            ["git", *a], cwd=root, capture_output=True, text=True, check=False, timeout=30
        )
        return out.stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "src_modified": bool(git("status", "--porcelain", "--", "src")),
    }


def run_scopeflow(
    config: Path,
    label: str,
    workers: int,
    n_images: int,
    gate: dict[str, Any],
) -> dict[str, Any]:
    """``scopeflow run cyto -c config --workdir ... --workers N`` from a fresh run directory."""
    run_dir = RUNS / f"scopeflow-{label}"
    shutil.rmtree(run_dir, ignore_errors=True)
    quiet = wait_quiet(**gate)
    cmd = [
        str(SCOPEFLOW),
        "run",
        "cyto",
        "-c",
        str(config),
        "--workdir",
        str(run_dir),
        "--workers",
        str(workers),
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    version = scopeflow_version()
    res = run_measured(cmd, log=RUNS / f"scopeflow-{label}.log", env=env)
    res["scopeflow_version"] = version
    res["load_gate"] = quiet
    res["images"] = n_images
    features = run_dir / "outputs" / "features.parquet"
    if res["returncode"] != 0 or not features.exists():
        res["ok"] = False
        res["error"] = log_tail(Path(res["log"]), keys=("Error", "error", "Traceback"))
        return res
    res["ok"] = True
    res.update(_rates(res, n_images))
    res["features"] = scopeflow_feature_counts(features)
    res["process_ms_per_image"] = scopeflow_parts(run_dir)
    events = read_events(run_dir / "events.jsonl")
    res["unit_seconds_per_step"] = _step_seconds(events)
    res["process_step"] = _process_span(events, n_images)
    res["run_dir"] = str(run_dir)
    return res


def _rates(res: dict[str, Any], n: int) -> dict[str, Any]:
    return {
        "images_per_s": round(n / res["wall_s"], 2),
        "cpu_s_per_image": round(res["cpu_s"] / n, 4),
    }


def scopeflow_files_config(folder: Path, channels: list[str]) -> Path:
    """The dataset's ready config, reading SCIP's per-image files instead of the stacks."""
    ready = yaml.safe_load((folder / "config.yaml").read_text())
    ready["input"] = {"format": "tiff", "layout": "files", "pattern": "scip/{id}_Ch{channel}.tif"}
    ready["channels"] = channels
    path = folder / "config-files.yaml"
    path.write_text(
        "# scopeflow on the same per-image TIFFs SCIP reads (benchmarks/peers_cyto.py)\n"
        + yaml.safe_dump(ready, sort_keys=False)
    )
    return path


# --------------------------------------------------------------------------------------- SCIP

SCIP_INTENSITY = {
    "mean",
    "median",
    "max",
    "min",
    "std",
    "mad",
    "lower_quartile",
    "upper_quartile",
    "sum",
    "skewness",
    "kurtosis",
}


_SCIP_INTENSITY_RE = re.compile(
    r"(combined_)?(bgcorr_)?(edge_)?(" + "|".join(sorted(SCIP_INTENSITY)) + ")"
)


def scip_feature_counts(out: Path, channels: list[str]) -> dict[str, Any]:
    """Rows and per-family counts of SCIP's ``feat_*`` columns (``meta_*`` reported apart)."""
    parts = sorted(out.glob("*.parquet"))
    if not parts:
        return {"objects": 0, "features_per_cell": 0, "families": {}}
    names = pq.read_schema(parts[0]).names
    rows = sum(pq.read_metadata(p).num_rows for p in parts)
    fams: dict[str, int] = {}
    for c in names:
        if not c.startswith("feat_"):
            continue
        _, mask, stem = c.split("_", 2)
        for ch in [*channels, "combined"]:
            if stem.endswith("_" + ch):
                stem = stem[: -len(ch) - 1]
                break
        if "glcm" in stem or "sobel" in stem:
            fam = "texture (GLCM 15 levels + Sobel)"
        elif mask == "raw":
            fam = "intensity (whole image, raw)"
        elif _SCIP_INTENSITY_RE.fullmatch(stem):
            fam = "intensity"
        else:
            fam = "shape (regionprops, per channel mask + combined)"
        fams[fam] = fams.get(fam, 0) + 1
    meta = [c for c in names if c.startswith("meta_")]
    return {
        "objects": rows,
        "features_per_cell": sum(fams.values()),
        "families": fams,
        "meta_columns": meta,
        "bbox_columns": len([c for c in meta if "bbox" in c]),
    }


def scip_ifc_config(folder: Path, channels: list[str]) -> Path:
    """``scip-ifc-config.yml`` with this dataset's channel names (everything else unchanged)."""
    cfg = yaml.safe_load(SCIP_CONFIG.read_text())
    cfg["load"]["channels"] = list(range(1, len(channels) + 1))
    cfg["load"]["channel_names"] = channels
    path = folder / "scip-ifc-config.yml"
    path.write_text(
        "# ../shared/peers/scip-ifc-config.yml with the synthetic channel names\n"
        + yaml.safe_dump(cfg, sort_keys=False)
    )
    return path


def _scip_cmd(
    scip: Path, workers: int, out: Path, config: Path, *, inp: Path, timing: Path
) -> list[str]:
    return [
        str(scip),
        "-j",
        str(workers),
        "-t",
        "1",
        "--headless",
        "-s",
        "10",
        "--timing",
        str(timing),
        str(out),
        str(config),
        str(inp),
    ]


def _run_scip(
    env_info: dict[str, Any],
    label: str,
    config: Path,
    *,
    inp: Path,
    workers: int,
    gate: dict[str, Any],
    timeout_s: float | None = None,
) -> tuple[dict[str, Any], Path, Path]:
    """One timed SCIP run from a clean output folder; its result, output and timing paths."""
    out = RUNS / f"scip-{label}"
    timing = RUNS / f"scip-{label}-timing.json"
    timing.unlink(missing_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    scip = Path(env_info["venv"]) / "bin" / "scip"
    quiet = wait_quiet(**gate)
    work = RUNS / "scip-cwd"
    work.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"timeout_s": timeout_s} if timeout_s else {}
    res = run_measured(
        _scip_cmd(scip, workers, out, config, inp=inp, timing=timing),
        log=RUNS / f"scip-{label}.log",
        cwd=work,
        **kwargs,
    )
    res["load_gate"] = quiet
    res["config"] = str(config)
    return res, out, timing


def run_scip_ifc(folder: Path, workers: int, n_images: int, gate: dict[str, Any]) -> dict[str, Any]:
    """SCIP on the per-image TIFFs with the IFC config."""
    env_info = ensure_scip()
    if not env_info["ok"]:
        return {"ok": False, "reason": env_info["reason"], "install": env_info}
    channels = _channels(folder)
    config = scip_ifc_config(folder, channels)
    res, out, timing = _run_scip(
        env_info, "ifc", config, inp=folder / "scip", workers=workers, gate=gate
    )
    res["images"] = n_images
    res["install"] = env_info
    if res["returncode"] != 0 or not list(out.glob("*.parquet")):
        res["ok"] = False
        res["error"] = log_tail(Path(res["log"]), keys=("Error", "error", "Traceback"))
        return res
    res["ok"] = True
    res.update(_rates(res, n_images))
    if timing.exists():
        res["scip_reported_runtime_s"] = round(json.loads(timing.read_text())["runtime"], 2)
    res["features"] = scip_feature_counts(out, channels)
    return res


def scip_confocal_attempt(folder: Path, workers: int, gate: dict[str, Any]) -> dict[str, Any]:
    """Try SCIP's classical field segmentation (``watershed_dapi``) on the confocal fields."""
    env_info = ensure_scip()
    if not env_info["ok"]:
        return {"ok": False, "reason": env_info["reason"]}
    channels = _channels(folder)
    cfg = yaml.safe_load(SCIP_CONFIG.read_text())
    cfg["load"]["channels"] = list(range(1, len(channels) + 1))
    cfg["load"]["channel_names"] = channels
    cfg["segment"] = {
        "method": "watershed_dapi",
        "settings": {
            "cell_diameter": 30,
            "dapi_channel_index": channels.index("nucleus"),
            "parent_channel_index": channels.index("nucleus"),
            "substract": None,
        },
        "export": False,
    }
    cfg["mask"] = None
    cfg["feature_extraction"] = ["shape", "intensity", "bbox", "texture"]
    config = folder / "scip-field-config.yml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    res, out, _ = _run_scip(
        env_info, "confocal", config, inp=folder / "scip", workers=workers, gate=gate, timeout_s=900
    )
    parquet = list(out.glob("*.parquet"))
    res["ok"] = res["returncode"] == 0 and bool(parquet)
    if not res["ok"]:
        res["error"] = log_tail(
            Path(res["log"]), n=6, keys=("Error:", "error:", "Exception", "unexpected")
        )
    else:
        res["features"] = scip_feature_counts(out, channels)
        res["note"] = "SCIP ran; check its labels before trusting them (see peers README)"
    return res


# --------------------------------------------------------------------------------------- main


def _ratio(a: dict[str, Any], b: dict[str, Any], key: str, invert: bool = False) -> float | None:
    if not (a.get("ok") and b.get("ok")) or not a.get(key) or not b.get(key):
        return None
    r = b[key] / a[key] if invert else a[key] / b[key]
    return round(r, 2)


def _per_field(res: dict[str, Any], workers: int, n_fields: int) -> None:
    """Seconds per field per core: from the wall time, the CPU time, and the process step."""
    parts = res["process_ms_per_image"]
    steps = res["unit_seconds_per_step"]
    res["s_per_field_per_core_wall"] = round(res["wall_s"] * workers / n_fields, 3)
    res["cpu_s_per_field"] = round(res["cpu_s"] / n_fields, 3)
    res["process_unit_s_per_field"] = round(steps.get("process", 0.0) / n_fields, 3)
    res["all_units_s_per_field"] = round(sum(steps.values()) / n_fields, 3)
    res["measured_parts_s_per_field"] = round(sum(parts.values()) / 1e3, 3) if parts else None


def _previous_peers(args: argparse.Namespace) -> dict[str, Any]:
    """The peers' results of an earlier run of this script on the same data and workers."""
    old = json.loads(Path(args.peers_from).read_text())
    same = (
        old.get("ifc", {}).get("images") == args.n
        and old.get("workers") == args.workers
        and old.get("confocal", {}).get("fields", 0) == args.fields
    )
    if not same:
        raise SystemExit(f"{args.peers_from}: other --n, --workers or --fields than this run")
    origin = {"file": str(args.peers_from), "date": old.get("date"), "command": old.get("command")}
    for part in (
        old["ifc"].get("scip"),
        old["ifc"].get("cellprofiler"),
        old.get("confocal", {}).get("scip"),
    ):
        if isinstance(part, dict):
            part["reused_from"] = origin
    return old


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; prints the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="IFC images")
    parser.add_argument("--fields", type=int, default=8, help="confocal fields (0: skip)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cp-n", type=int, default=500, help="IFC images for CellProfiler")
    parser.add_argument("--skip-scip", action="store_true")
    parser.add_argument("--skip-cellprofiler", action="store_true")
    parser.add_argument(
        "--peers-from",
        type=Path,
        help="take SCIP's and CellProfiler's figures from this earlier result file (same --n, "
        "--workers, --fields) instead of running them again; marked 'reused_from'",
    )
    parser.add_argument("--max-load", type=float, default=0.7, help="1-min load to start a timing")
    parser.add_argument("--max-wait", type=float, default=900, help="s to wait for that load")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "peers_cyto.json")
    args = parser.parse_args(argv)
    gate = {"max_load": args.max_load, "timeout_s": args.max_wait}
    RUNS.mkdir(parents=True, exist_ok=True)

    previous = _previous_peers(args) if args.peers_from else None
    if previous is not None:
        args.skip_scip = args.skip_cellprofiler = True
    # installs and data first (not timed), then the timings
    scip_env = ensure_scip() if not args.skip_scip else None
    cp_env = ensure_cellprofiler() if not args.skip_cellprofiler else None
    ifc = ifc_dataset(args.n)
    channels = _channels(ifc)
    files_cfg = scopeflow_files_config(ifc, channels)
    conf = confocal_dataset(args.fields) if args.fields > 0 else None

    result: dict[str, Any] = {
        "benchmark": "peers_cyto",
        "workers": args.workers,
        "threads_per_worker": 1,
        "max_load": args.max_load,
        "load_at_start": load_average(),
        "scopeflow_version": scopeflow_version(),
        "ifc": {"images": args.n, "shape": [len(channels), 90, 90], "data": str(ifc)},
    }
    warm_s = _warm(ifc / "scip") + _warm(ifc / "ifc")
    result["ifc"]["page_cache_warm_s"] = round(warm_s, 1)

    sf_files = run_scopeflow(files_cfg, "ifc-files", args.workers, args.n, gate)
    sf_stacks = run_scopeflow(ifc / "config.yaml", "ifc-stacks", args.workers, args.n, gate)
    result["ifc"]["scopeflow_same_files"] = sf_files
    result["ifc"]["scopeflow_channel_stacks"] = sf_stacks
    if previous is not None:
        result["ifc"]["scip"] = previous["ifc"]["scip"]
    elif args.skip_scip:
        result["ifc"]["scip"] = {"ok": False, "reason": ["skipped (--skip-scip)"]}
    elif scip_env is not None and not scip_env["ok"]:
        result["ifc"]["scip"] = {"ok": False, "reason": scip_env["reason"]}
    else:
        result["ifc"]["scip"] = run_scip_ifc(ifc, args.workers, args.n, gate)
    scip = result["ifc"]["scip"]
    result["ifc"]["ratios_scopeflow_over_scip"] = {
        label: {
            "throughput": _ratio(sf, scip, "images_per_s"),
            "cpu_per_image": _ratio(sf, scip, "cpu_s_per_image", invert=True),
            "peak_memory": _ratio(sf, scip, "peak_rss_mb"),
        }
        for label, sf in (("same_files", sf_files), ("channel_stacks", sf_stacks))
    }

    if previous is not None:
        result["ifc"]["cellprofiler"] = previous["ifc"]["cellprofiler"]
    elif args.skip_cellprofiler:
        result["ifc"]["cellprofiler"] = {"ok": False, "reason": ["skipped (--skip-cellprofiler)"]}
    elif cp_env is not None and not cp_env["ok"]:
        result["ifc"]["cellprofiler"] = {"ok": False, "reason": cp_env["reason"]}
    else:
        assert cp_env is not None
        cp = run_cellprofiler_ifc(
            cp_env,
            ifc,
            channels=channels,
            n=min(args.cp_n, args.n),
            workers=args.workers,
            runs=RUNS,
            gate=gate,
        )
        result["ifc"]["cellprofiler"] = cp
    cp = result["ifc"]["cellprofiler"]
    if cp.get("ok"):
        result["ifc"]["ratios_scopeflow_over_cellprofiler"] = {
            "throughput": _ratio(sf_files, cp, "images_per_s"),
            "cpu_per_image": _ratio(sf_files, cp, "cpu_s_per_image", invert=True),
        }

    if conf is not None:
        n_fields = args.fields
        _warm(conf)
        sf = run_scopeflow(conf / "config.yaml", "confocal", args.workers, n_fields, gate)
        if sf.get("ok"):
            _per_field(sf, args.workers, n_fields)
        conf_res: dict[str, Any] = {"fields": n_fields, "shape": [5, 900, 1600], "scopeflow": sf}
        if previous is not None and "confocal" in previous:
            conf_res["scip"] = previous["confocal"]["scip"]
        elif args.skip_scip:
            conf_res["scip"] = {"ok": False, "reason": ["skipped (--skip-scip)"]}
        else:
            conf_res["scip"] = scip_confocal_attempt(conf, args.workers, gate)
        result["confocal"] = conf_res

    result["load_at_end"] = load_average()
    if scopeflow_version() != result["scopeflow_version"]:
        result["warning"] = "scopeflow's commit or src/ changed during the run: see each run's"
        result["warning"] += " scopeflow_version"
    json.dump(result, sys.stdout, indent=2)
    print()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result.update(
        command=f"python benchmarks/peers_cyto.py {' '.join(argv or sys.argv[1:])}",
        date=time.strftime("%Y-%m-%d %H:%M"),
    )
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
