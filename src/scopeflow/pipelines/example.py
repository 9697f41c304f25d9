"""``example``: the small built-in pipeline that ``scopeflow demo`` runs.

Per image: ``segment`` (Otsu threshold, labels written as TIFF) → ``measure`` (one CSV row per
object); once: ``report`` (all objects in one CSV, per-image counts, and — when a ground-truth
table is given — recall/precision of the found objects). It stands in for the cytometry and
SPIM pipelines until they land, and exercises both kinds of dependency of the engine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tifffile
from pydantic import Field

from scopeflow.core import InputNotFoundError
from scopeflow.core.config import InputPath, StrictModel
from scopeflow.engine import Pipeline, Step, UnitContext, all_units, per_unit
from scopeflow.steps import example as steps


class ExampleConfig(StrictModel):
    """Configuration of the ``example`` pipeline."""

    input: InputPath = Field(description="folder of the images (TIFF, Y,X or C,Y,X)")
    pattern: str = Field("*.tif", description="glob of the image files inside 'input'")
    segment: steps.SegmentParams = Field(default_factory=steps.SegmentParams)
    truth: InputPath | None = Field(
        None, description="optional CSV of true objects (image_id, centroid_x, centroid_y)"
    )
    match_distance: float = Field(
        8.0, gt=0, description="largest centroid distance (px) of a found/true match"
    )


def _images(config: ExampleConfig) -> dict[str, Path]:
    files = sorted(p for p in Path(config.input).glob(config.pattern) if p.is_file())
    if not files:
        raise InputNotFoundError(Path(config.input) / config.pattern, "images matching")
    return {p.stem: p for p in files}


def _units(config: ExampleConfig) -> list[str]:
    return list(_images(config))


def segment(ctx: UnitContext) -> dict[str, Any]:
    """Segment one image; write ``outputs/labels/<unit>.tif``."""
    cfg: ExampleConfig = ctx.config
    path = _images(cfg)[ctx.unit]
    image = steps.read_image(path, cfg.segment.channel)
    labels = steps.segment(image, cfg.segment)
    out = ctx.output_path("labels", f"{ctx.unit}.tif")
    tifffile.imwrite(out, labels, compression="zlib")
    ctx.log.info("%s: %d objects in %s image", path.name, int(labels.max()), image.shape)
    return {"image": str(path), "labels": ctx.relative(out), "objects": int(labels.max())}


def measure(ctx: UnitContext) -> dict[str, Any]:
    """Measure the objects of one image; write ``outputs/objects/<unit>.csv``."""
    cfg: ExampleConfig = ctx.config
    seg = ctx.upstream["segment"]
    labels = tifffile.imread(ctx.run_dir / seg["labels"])
    image = steps.read_image(Path(seg["image"]), cfg.segment.channel)
    rows = steps.measure_objects(labels, image, ctx.unit)
    out = steps.write_csv(ctx.output_path("objects", f"{ctx.unit}.csv"), rows, steps.OBJECT_COLUMNS)
    return {"table": ctx.relative(out), "objects": len(rows)}


def report(ctx: UnitContext) -> dict[str, Any]:
    """Merge the per-image tables; compare with the truth when given."""
    cfg: ExampleConfig = ctx.config
    rows: list[dict[str, Any]] = []
    per_image: dict[str, dict[str, Any]] = {}
    truth_rows = steps.read_csv(cfg.truth) if cfg.truth else None
    for unit, result in sorted(ctx.upstream["measure"].items()):
        found = steps.read_csv(ctx.run_dir / result["table"])
        rows.extend(found)
        entry: dict[str, Any] = {"objects": len(found)}
        if truth_rows is not None:
            truth = [t for t in truth_rows if _image_key(t["image_id"]) == _image_key(unit)]
            entry.update(steps.match_to_truth(found, truth, max_distance=cfg.match_distance))
        per_image[unit] = entry
    table = steps.write_csv(ctx.output_path("objects.csv"), rows, steps.OBJECT_COLUMNS)
    rep: dict[str, Any] = {"images": len(per_image), "objects": len(rows), "per_image": per_image}
    if truth_rows is not None:
        true_n = sum(e["true"] for e in per_image.values())
        found_n = sum(e["found"] for e in per_image.values())
        matched = sum(e["matched"] for e in per_image.values())
        rep["recall"] = matched / true_n if true_n else None
        rep["precision"] = matched / found_n if found_n else None
    report_path = ctx.output_path("report.json")
    report_path.write_text(json.dumps(rep, indent=2) + "\n")
    ctx.log.info("%d objects in %d images", len(rows), len(per_image))
    return {
        "objects": len(rows),
        "recall": rep.get("recall"),
        "precision": rep.get("precision"),
        "outputs": {"objects": ctx.relative(table), "report": ctx.relative(report_path)},
    }


def _image_key(value: str) -> str:
    digits = "".join(ch for ch in value if ch.isdigit())
    return str(int(digits)) if digits else value


PIPELINE = Pipeline(
    name="example",
    description="segment and measure objects in TIFF images (the demo pipeline)",
    config_model=ExampleConfig,
    units=_units,
    steps=(
        Step("segment", segment, description="Otsu threshold + labels"),
        Step("measure", measure, after=(per_unit("segment"),), description="per-object table"),
        Step("report", report, fan_out=False, after=(all_units("measure"),), description="merge"),
    ),
)
