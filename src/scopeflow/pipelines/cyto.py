"""``cyto``: single-cell cytometry (SCIP-style) — normalize, segment, mask, per-cell features.

Units are batches of images (``batch_size``; never one Dask task per small image). Steps:

``quantiles`` (per batch)
    Per-channel intensity histograms for dataset-wide normalisation (nothing to do otherwise).
``merge_quantiles`` (once)
    Merges them into per-channel percentiles (``outputs/quantiles.json``).
``process`` (per batch)
    Load → normalize → segment → mask → features in memory; writes one Parquet part of object
    features and one of per-image rows. Unreadable images are reported (file, reason) in the
    per-image table and the unit's events, and the rest of the batch goes on.
``write`` (once)
    Merges the parts into ``outputs/features.parquet`` and ``outputs/images.parquet``, exports
    CSV / FCS / AnnData on request, and draws the QC montage and histograms (``outputs/qc/``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from scopeflow.core import ConfigError, atomic_write_json
from scopeflow.core.config import OutputPath, StrictModel
from scopeflow.engine import Pipeline, Step, UnitContext, all_units
from scopeflow.io import (
    export_anndata,
    export_csv,
    export_fcs,
    merge_table_parts,
    read_arrow_table,
    write_table_part,
)
from scopeflow.ops import cyto as ops
from scopeflow.steps import cyto as steps
from scopeflow.steps import cyto_qc as qc
from scopeflow.steps.cyto_load import (
    CytoInput,
    CytoSource,
    LoadedBatch,
    check_channels,
    discover_channels,
    read_planes,
)

SMALL_IMAGE_PIXELS = 256 * 256
"""Images up to this size are batched by ``DEFAULT_BATCH``; larger fields one per unit."""
DEFAULT_BATCH = 200  # measured: benchmarks/cyto_batch_size.py, docs/benchmarks.md
"""Default batch of small images: ~ 50 MB of 6 x 90 x 90 uint16 images, ~1-3 s of work."""


class ExportParams(StrictModel):
    """Extra copies of the object table for other tools."""

    csv: bool = False
    fcs: bool = Field(False, description="FCS 3.1 for flow-cytometry software")
    anndata: bool = Field(False, description=".h5ad for scanpy")


class QcParams(StrictModel):
    """Quality-control pictures."""

    cells: int = Field(48, ge=0, le=400, description="random cells in the montage")
    channel: str | int | None = Field(None, description="channel shown (default: segmented)")
    histograms: list[str] = Field(
        default_factory=lambda: [
            "AreaShape_Area",
            "AreaShape_Eccentricity",
            "AreaShape_Solidity",
            "AreaShape_MajorAxisLength",
            "AreaShape_FormFactor",
            "AreaShape_Perimeter",
        ],
        description="feature columns to plot (intensity of the first channel is added)",
    )


class CytoConfig(StrictModel):
    """Configuration of the ``cyto`` pipeline (config.yaml)."""

    root: OutputPath = Field(
        Path(), validate_default=True, description="folder the input paths are relative to"
    )
    input: CytoInput
    channels: list[str] = Field(
        default_factory=list,
        description="channel names, in file order; if empty: from the files' metadata "
        "(array, fields layouts) or the {channel} part of the file names (files layout)",
    )
    pixel_size: float | None = Field(None, gt=0, description="µm per pixel (metadata only)")
    batch_size: int | None = Field(
        None,
        ge=1,
        description=f"images per unit (default {DEFAULT_BATCH} small images, or 1 field)",
    )
    normalize: steps.NormalizeParams = Field(default_factory=steps.NormalizeParams)
    segment: steps.SegmentParams = Field(default_factory=steps.SegmentParams)
    mask: steps.MaskParams = Field(default_factory=steps.MaskParams)
    features: steps.FeatureParams = Field(default_factory=steps.FeatureParams)
    export: ExportParams = Field(default_factory=ExportParams)
    qc: QcParams = Field(default_factory=QcParams)
    seed: int = Field(0, description="seed of the QC sample")

    @model_validator(mode="after")
    def _channels(self) -> CytoConfig:
        if not self.channels:  # bypass assignment validation: this validator would rerun
            self.__dict__["channels"] = discover_channels(self.input, Path(self.root))
        check_channels(self.channels, "config")
        seg = self.segment
        for ref in [*seg.channels, seg.seed_channel, seg.boundary_channel]:
            if ref is not None:
                steps.channel_index(ref, self.channels, "segment")
        self.qc_channel_index()  # a bad qc.channel fails here, not in every unit
        return self

    def qc_channel_index(self) -> int:
        """Index of the channel shown in the QC montage (default: the first segmented one)."""
        ref = self.qc.channel if self.qc.channel is not None else self.segment.channels[0]
        return steps.channel_index(ref, self.channels, "qc.channel")

    def source(self) -> CytoSource:
        """The images of this run."""
        return CytoSource(self.input, Path(self.root), list(self.channels))


_SOURCES: dict[str, tuple[CytoSource, int]] = {}


def _source_of(config: CytoConfig) -> tuple[CytoSource, int]:
    """The run's images and batch size, enumerated once per process (its units share them)."""
    key = config.model_dump_json()
    if key not in _SOURCES:
        source = config.source()
        size = config.batch_size
        if size is None:
            first = source.load(0, 1)
            pixels = int(np.prod(first.images.shape[-2:])) if len(first.images) else 0
            size = DEFAULT_BATCH if pixels <= SMALL_IMAGE_PIXELS else 1
        if len(_SOURCES) >= 4:
            _SOURCES.clear()
        _SOURCES[key] = (source, size)
    return _SOURCES[key]


def _batches(config: CytoConfig) -> list[tuple[int, int]]:
    source, size = _source_of(config)
    return source.batches(size)


def _units(config: CytoConfig) -> list[str]:
    return [f"b{start:07d}" for start, _ in _batches(config)]


def _range(ctx: UnitContext) -> tuple[int, int]:
    source, size = _source_of(ctx.config)
    start = int(ctx.unit[1:])
    if start % size or start >= source.count:
        raise KeyError(f"unit {ctx.unit} is not a batch of this input")
    return start, min(start + size, source.count)


def quantiles(ctx: UnitContext) -> dict[str, Any]:
    """Per-channel histograms of one batch (dataset normalisation only)."""
    cfg: CytoConfig = ctx.config
    if cfg.normalize.mode != "dataset":
        return {"state": None}
    start, stop = _range(ctx)
    step = max(1, round(1 / cfg.normalize.sample))
    batch = _source_of(cfg)[0].load(start, stop, step)
    if not len(batch.images):  # every image of the batch unreadable: reported by 'process'
        return {"state": None}
    state = ops.channel_quantiles(
        batch.images, q=(cfg.normalize.lower, cfg.normalize.upper), channel_axis=1
    )
    path = ctx.output_path("_work", "quantiles", f"{ctx.unit}.npz")
    np.savez_compressed(
        path, counts=state.counts, value_range=state.value_range, q=state.q, exact=state.exact
    )
    return {"state": ctx.relative(path)}


def merge_quantiles(ctx: UnitContext) -> dict[str, Any]:
    """Dataset-wide per-channel percentiles from every batch's histograms."""
    cfg: CytoConfig = ctx.config
    paths = [r["state"] for r in ctx.upstream["quantiles"].values() if r["state"]]
    if not paths:
        return {"lo": None, "hi": None}

    def states() -> Iterator[ops.QuantileState]:  # one file in memory at a time
        for rel in paths:
            with np.load(ctx.run_dir / rel) as z:
                yield ops.QuantileState(
                    counts=z["counts"],
                    value_range=tuple(z["value_range"]),
                    q=tuple(z["q"]),
                    exact=bool(z["exact"]),
                )

    lo, hi = ops.merge_quantile_states(states()).finalize()
    out = ctx.output_path("quantiles.json")
    atomic_write_json(
        out,
        {
            "channels": cfg.channels,
            "lower": lo.tolist(),
            "upper": hi.tolist(),
            "percentiles": [cfg.normalize.lower, cfg.normalize.upper],
        },
    )
    ctx.log.info(
        "dataset percentiles: %s", dict(zip(cfg.channels, zip(lo, hi, strict=True), strict=True))
    )
    return {"lo": lo.tolist(), "hi": hi.tolist(), "outputs": {"quantiles": ctx.relative(out)}}


def process(ctx: UnitContext) -> dict[str, Any]:
    """One batch: features of every cell, per-image rows, a QC sample."""
    cfg: CytoConfig = ctx.config
    start, stop = _range(ctx)
    batch = _source_of(cfg)[0].load(start, stop)
    q = ctx.upstream["merge_quantiles"]
    quant = (np.asarray(q["lo"]), np.asarray(q["hi"])) if q["lo"] is not None else None
    result = None
    if len(batch.images):  # a batch of only unreadable images has nothing to measure
        labels = _user_labels(cfg, batch) if cfg.segment.mode == "labels" else None
        result = steps.process_batch(
            batch,
            channels=cfg.channels,
            normalize=cfg.normalize,
            quantiles=quant,
            segment=cfg.segment,
            mask=cfg.mask,
            features=cfg.features,
            labels=labels,
        )
        objects = dict(result.objects)
        position = np.asarray(batch.indices, dtype=np.int64)
        number = position[np.asarray(objects.pop("image_index"), dtype=np.int64)] + 1
        table = pa.table({"ImageNumber": number, **objects})
        write_table_part(ctx.outputs / "_work" / "features", ctx.unit, table)
    seconds = result.seconds if result is not None else {}
    n_objects = len(result.objects["ObjectNumber"]) if result is not None else 0
    write_table_part(
        ctx.outputs / "_work" / "images", ctx.unit, _image_rows(batch, result, cfg.channels)
    )
    if cfg.qc.cells and result is not None:
        sample = qc.sample_cells(
            batch.images,
            result.labels,
            batch.image_ids,
            channel=cfg.qc_channel_index(),
            n=max(1, cfg.qc.cells // max(1, len(_batches(cfg)))) + 1,
            seed=cfg.seed + start,
        )
        np.savez_compressed(ctx.output_path("_work", "qc", f"{ctx.unit}.npz"), **sample)  # type: ignore[arg-type]
    for err in batch.errors:
        ctx.log.warning("unreadable image %s (%s): %s", err["image_id"], err["file"], err["error"])
    n = len(batch.images)
    ctx.log.info(
        "%d images, %d objects; %s",
        n,
        n_objects,
        ", ".join(f"{k} {v / max(n, 1) * 1e3:.2f} ms/image" for k, v in seconds.items()),
    )
    return {
        "images": n,
        "objects": n_objects,
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
        "warnings": [
            f"unreadable image {e['image_id']} ({e['file']}): {e['error']}" for e in batch.errors
        ],
    }


def _user_labels(cfg: CytoConfig, batch: LoadedBatch) -> np.ndarray[Any, Any]:
    """The user's label image of every image of the batch (``segment.labels_pattern``)."""
    pattern = cfg.segment.labels_pattern
    if not pattern:
        raise ConfigError(
            "config", [("segment.labels_pattern", "labels mode needs a pattern with {id}")]
        )
    planes = []
    for image_id in batch.image_ids:
        # eager, like the images (a lazy reader per small file costs more than its pixels)
        planes.append(read_planes(Path(cfg.root) / pattern.format(id=image_id), None)[0])
    return np.stack(planes)


def _image_rows(
    batch: LoadedBatch, result: steps.BatchResult | None, channels: list[str]
) -> pa.Table:
    """Per-image rows; a batch of only unreadable images still reports them."""
    if result is not None:
        return pa.table(result.images)
    rows = steps.image_rows(channels)
    steps.add_error_rows(rows, batch.errors)
    return pa.table(rows)


def write(ctx: UnitContext) -> dict[str, Any]:
    """Merge the parts into the output tables; exports."""
    cfg: CytoConfig = ctx.config
    work = ctx.outputs / "_work"
    features = merge_table_parts(work / "features", ctx.output_path("features.parquet"))
    images = merge_table_parts(work / "images", ctx.output_path("images.parquet"))
    outputs = {"features": ctx.relative(features), "images": ctx.relative(images)}
    if cfg.export.csv:
        outputs["csv"] = ctx.relative(export_csv(features, ctx.output_path("features.csv")))
    if cfg.export.fcs:
        outputs["fcs"] = ctx.relative(export_fcs(features, ctx.output_path("features.fcs")))
    if cfg.export.anndata:
        outputs["anndata"] = ctx.relative(
            export_anndata(features, ctx.output_path("features.h5ad"))
        )
    n_images = pq.ParquetFile(images).metadata.num_rows
    n_objects = pq.ParquetFile(features).metadata.num_rows
    ctx.log.info("%d objects in %d images", n_objects, n_images)
    return {"objects": n_objects, "images": n_images, "outputs": outputs}


def qc_pictures(ctx: UnitContext) -> dict[str, Any]:
    """QC montage of random cells and feature histograms (runs beside ``write``)."""
    cfg: CytoConfig = ctx.config
    work = ctx.outputs / "_work"
    qc_dir = ctx.outputs / "qc"
    qc_dir.mkdir(parents=True, exist_ok=True)
    samples = sorted((work / "qc").glob("*.npz")) if (work / "qc").exists() else []
    if samples:
        loaded = [dict(np.load(p)) for p in samples]
        merged = {k: np.concatenate([p[k] for p in loaded]) for k in loaded[0]}
        keep = np.random.default_rng(cfg.seed).permutation(len(merged["crops"]))[: cfg.qc.cells]
        qc.write_montage(
            {k: v[keep] for k, v in merged.items()},
            qc_dir / "cells.png",
            title=f"{len(keep)} random cells, mask outlines in red",
        )
    tables = sorted((work / "features").glob("*.parquet")) if (work / "features").exists() else []
    first = f"Intensity_MeanIntensity_{cfg.channels[0]}"
    known = set(pq.read_schema(tables[0]).names) if tables else set()
    columns = [c for c in dict.fromkeys([*cfg.qc.histograms, first]) if c in known]
    if columns:
        table = read_arrow_table(work / "features", columns=columns)
        n_objects = table.num_rows
        qc.write_histograms(
            {c: table.column(c).to_numpy() for c in columns},
            qc_dir / "features.png",
            title=f"{n_objects} objects",
        )
    return {"outputs": {"qc": ctx.relative(qc_dir)}}


PIPELINE = Pipeline(
    name="cyto",
    description="single-cell cytometry: normalize, segment, mask, per-cell features",
    config_model=CytoConfig,
    units=_units,
    steps=(
        Step("quantiles", quantiles, description="per-channel histograms"),
        Step("merge_quantiles", merge_quantiles, fan_out=False, after=(all_units("quantiles"),)),
        Step("process", process, after=(all_units("merge_quantiles"),), description="features"),
        Step("write", write, fan_out=False, after=(all_units("process"),), description="tables"),
        Step("qc", qc_pictures, fan_out=False, after=(all_units("process"),), description="QC"),
    ),
)
