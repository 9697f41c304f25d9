"""Cytometry steps: one batch of images from pixels to per-object feature rows.

``process_batch`` composes load → normalize → segment → mask → features for one batch in memory
(intermediates of small images are cheaper to recompute than to write), timing each part.
Parameters are pydantic models; the pipeline module (``scopeflow.pipelines.cyto``) wires these
functions into the engine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from scopeflow.core import ConfigError
from scopeflow.core.config import StrictModel
from scopeflow.ops import cyto as ops
from scopeflow.ops.cyto import features as feat
from scopeflow.ops.cyto import mask as masking
from scopeflow.ops.cyto import segment as seg
from scopeflow.steps.cyto_load import LoadedBatch

ChannelRef = str | int
Family = Literal["shape", "intensity", "texture", "granularity", "location"]
ALL_FAMILIES: list[Family] = ["shape", "intensity", "texture", "granularity", "location"]


class NormalizeParams(StrictModel):
    """Per-channel percentile clipping and rescaling to [0, 1]."""

    mode: Literal["per_image", "dataset", "none"] = Field(
        "dataset", description="quantiles per image, over the whole dataset first, or none"
    )
    lower: float = Field(1.0, ge=0, lt=100, description="lower percentile")
    upper: float = Field(99.0, gt=0, le=100, description="upper percentile")
    sample: float = Field(
        0.1,
        gt=0,
        le=1,
        description="fraction of the images (evenly spaced) whose pixels make the dataset "
        "percentiles; 1 reads every image twice",
    )


class SegmentParams(StrictModel):
    """How cells are found (see scopeflow.ops.cyto.segment)."""

    mode: Literal["ifc", "field", "labels", "cellpose"] = Field(
        "ifc", description="ifc: one cell per image; field: many touching cells per image"
    )
    channel: ChannelRef | list[ChannelRef] = Field(0, description="channel(s) to segment")
    method: Literal["otsu", "li", "triangle", "local"] = "otsu"
    smooth: float = Field(1.0, ge=0, description="Gaussian sigma before thresholding, px")
    threshold_correction: float = Field(1.0, gt=0)
    min_area: float = Field(0.0, ge=0, description="smaller objects are removed, px")
    max_area: float | None = Field(None, gt=0, description="larger objects are removed, px")
    # field mode
    seeds: Literal["distance", "maxima", "nuclei", "none"] = "distance"
    seed_channel: ChannelRef | None = None
    seed_smooth: float = Field(2.0, ge=0, description="Gaussian sigma of the seed channel, px")
    min_distance: float = Field(7.0, gt=0, description="smallest distance between seeds, px")
    watershed_on: Literal["distance", "intensity", "boundary"] = "distance"
    boundary_channel: ChannelRef | None = None
    refine_distance: float | None = Field(
        None, gt=0, description="re-threshold each cell within this distance (px)"
    )
    remove_border: bool = True
    # labels / cellpose
    labels_pattern: str | None = Field(
        None, description="labels mode: label image per image, with {id} (or {i})"
    )
    model_path: str | None = Field(None, description="cellpose mode: the user's model file")
    diameter: float | None = Field(None, gt=0, description="cellpose: cell diameter, px")

    @model_validator(mode="after")
    def _method(self) -> SegmentParams:
        if self.mode == "ifc" and self.method == "local":
            raise ValueError(
                "method 'local' is for field mode; ifc mode takes otsu, li or triangle"
            )
        return self

    @property
    def channels(self) -> list[ChannelRef]:
        """The segmented channel reference(s) as a list."""
        return self.channel if isinstance(self.channel, list) else [self.channel]


class MaskParams(StrictModel):
    """Per-channel masks inside each cell, as SCIP makes them."""

    enabled: bool = True
    method: Literal["otsu", "li", "triangle"] = "li"
    region: Literal["territory", "image"] = "territory"
    combine: Literal["union", "labels"] = "labels"


class FeatureParams(StrictModel):
    """Which feature families, and their settings (see scopeflow.ops.cyto.features)."""

    families: list[Family] = Field(default_factory=lambda: list(ALL_FAMILIES))
    texture_scales: list[int] = Field(default_factory=lambda: [3, 5])
    texture_levels: int | None = Field(
        None, ge=2, le=256, description="grey levels of the co-occurrence matrix (default: ops')"
    )
    granularity_spectrum: int = Field(16, ge=1, le=64)
    background: Literal["median_outside"] | None = None


@dataclass
class BatchResult:
    """What :func:`process_batch` returns (see there)."""

    objects: dict[str, NDArray[Any]]
    images: dict[str, Any]
    seconds: dict[str, float]
    labels: NDArray[np.int32]


def channel_index(ref: ChannelRef, channels: Sequence[str], key: str) -> int:
    """Index of a channel given by name or index."""
    if isinstance(ref, int):
        if not 0 <= ref < len(channels):
            raise ConfigError(key, [(key, f"channel index {ref} out of range 0..{len(channels)}")])
        return ref
    if ref not in channels:
        raise ConfigError(key, [(key, f"unknown channel {ref!r}; channels: {list(channels)}")])
    return list(channels).index(ref)


def segment_batch(
    images: NDArray[Any],
    params: SegmentParams,
    channels: Sequence[str],
    *,
    labels: NDArray[Any] | None = None,
) -> NDArray[np.int32]:
    """Label images ``(n, H, W)`` of a batch ``(n, C, H, W)`` (raw or normalized)."""
    chans = [channel_index(r, channels, "segment.channel") for r in params.channels]
    channel: int | list[int] = chans[0] if len(chans) == 1 else chans
    if params.mode == "ifc":
        return seg.segment_single_cell(
            images,
            channel=channel,
            channel_axis=1,
            method=params.method,
            smooth=params.smooth,
            threshold_correction=params.threshold_correction,
            min_area=params.min_area,
        )
    if params.mode == "field":
        opt = lambda r, k: None if r is None else channel_index(r, channels, k)  # noqa: E731
        return seg.segment_fields(
            images,
            channel_axis=1,
            channel=channel,
            method=params.method,
            smooth=params.smooth,
            threshold_correction=params.threshold_correction,
            seeds=params.seeds,
            seed_channel=opt(params.seed_channel, "segment.seed_channel"),
            seed_smooth=params.seed_smooth,
            min_distance=params.min_distance,
            watershed_on=params.watershed_on,
            boundary_channel=opt(params.boundary_channel, "segment.boundary_channel"),
            refine_distance=params.refine_distance,
            min_area=params.min_area,
            max_area=params.max_area,
            remove_border=params.remove_border,
        )
    if params.mode == "labels":
        if labels is None:
            raise ConfigError(
                "segment", [("segment.labels_pattern", "labels mode needs label images")]
            )
        return seg.validate_labels(labels, shape=(len(images), *images.shape[-2:]))
    if params.model_path is None:
        raise ConfigError("segment", [("segment.model_path", "cellpose mode needs a model file")])
    return np.stack(
        [
            seg.segment_cellpose(
                img[chans], params.model_path, channel_axis=0, diameter=params.diameter
            )
            for img in images
        ]
    ).astype(np.int32)


def process_batch(
    batch: LoadedBatch,
    *,
    channels: Sequence[str],
    normalize: NormalizeParams,
    quantiles: tuple[NDArray[Any], NDArray[Any]] | None,
    segment: SegmentParams,
    mask: MaskParams,
    features: FeatureParams,
    labels: NDArray[Any] | None = None,
) -> BatchResult:
    """Features of every cell of a batch.

    Returns
    -------
    BatchResult
        With these fields:
    objects
        Column name → array, one row per object (``image_index`` in the batch, ``ObjectNumber``,
        ``image_id``, then the features).
    images
        Column name → list, one row per image (object count, intensity statistics).
    seconds
        Wall seconds of each part (normalize, segment, mask, features).
    labels
        The label images ``(n, H, W)`` the features were measured on.
    """
    seconds: dict[str, float] = {}
    raw = batch.images
    t = time.perf_counter()
    if normalize.mode == "dataset" and quantiles is not None:
        work = ops.normalize(raw, quantiles[0], quantiles[1], channel_axis=1)
    elif normalize.mode == "per_image":
        work = ops.normalize_per_image(raw, (normalize.lower, normalize.upper), channel_axis=1)
    else:
        work = raw.astype(np.float32)
    seconds["normalize"] = time.perf_counter() - t

    t = time.perf_counter()
    lab = segment_batch(work, segment, channels, labels=labels)
    seconds["segment"] = time.perf_counter() - t

    t = time.perf_counter()
    measured_labels = lab
    masks: NDArray[np.bool_] | None = None
    if mask.enabled and len(raw):
        masks, combined = masking.compute_masks(
            work,
            lab,
            channel_axis=1,
            method=mask.method,
            region=mask.region,
            combine=mask.combine,
        )
        measured_labels = np.where(combined, lab, 0).astype(np.int32)
    seconds["mask"] = time.perf_counter() - t

    t = time.perf_counter()
    kwargs: dict[str, Any] = {
        "channel_names": list(channels),
        "families": features.families,
        "texture_scales": features.texture_scales,
        "granularity_spectrum": features.granularity_spectrum,
        "background": features.background,
    }
    if features.texture_levels is not None:
        kwargs["texture_levels"] = features.texture_levels
    objects = feat.measure_objects(measured_labels, raw, **kwargs)
    seconds["features"] = time.perf_counter() - t

    index = np.asarray(objects["image_index"], dtype=np.int64)
    n_obj = np.bincount(index, minlength=len(raw))
    objects["image_id"] = np.asarray(batch.image_ids, dtype=object)[index]
    if masks is not None:
        _mask_areas(objects, measured_labels, masks, channels)
    images = image_rows(channels)
    images["image_id"] += list(batch.image_ids)
    images["source"] += list(batch.sources)
    images["objects"] += n_obj[: len(raw)].tolist()
    images["error"] += [""] * len(raw)
    for c, name in enumerate(channels):
        plane = raw[:, c].reshape(len(raw), -1)  # no float copy of the batch per channel
        images[f"Intensity_MeanIntensity_{name}"] += plane.mean(axis=1, dtype=np.float64).tolist()
        images[f"Intensity_MaxIntensity_{name}"] += plane.max(axis=1).astype(float).tolist()
        images[f"Intensity_MinIntensity_{name}"] += plane.min(axis=1).astype(float).tolist()
    images["mask_area_fraction"] += (
        (measured_labels > 0).reshape(len(raw), -1).mean(axis=1).tolist()
    )
    add_error_rows(images, batch.errors)
    return BatchResult(objects, images, seconds, measured_labels)


def _mask_areas(
    objects: dict[str, NDArray[Any]],
    labels: NDArray[Any],
    masks: NDArray[np.bool_],
    channels: Sequence[str],
) -> None:
    """Add ``Mask_Area_<ch>`` and ``Mask_AreaFraction_<ch>``: each channel's mask in each cell."""
    n = labels.shape[0]
    index = np.asarray(objects["image_index"], dtype=np.int64)
    number = np.asarray(objects["ObjectNumber"], dtype=np.int64)
    size = int(labels.max()) + 1 if labels.size else 1
    cell = labels > 0  # only labelled pixels count: skip the background
    flat = (np.arange(n)[:, None, None] * size + labels)[cell]
    rows = index * size + number
    area = np.bincount(flat, minlength=n * size)[rows].astype(np.float64)
    for c, name in enumerate(channels):
        hits = flat[masks[:, c][cell]]
        inside = np.bincount(hits, minlength=n * size)[rows].astype(np.float64)
        objects[f"Mask_Area_{name}"] = inside
        with np.errstate(invalid="ignore", divide="ignore"):
            objects[f"Mask_AreaFraction_{name}"] = inside / area


def image_rows(channels: Sequence[str]) -> dict[str, list[Any]]:
    """Empty per-image table: identity, object count, error, per-channel intensity, mask area."""
    cols = ["image_id", "source", "objects", "error"]
    for name in channels:
        cols += [f"Intensity_{s}Intensity_{name}" for s in ("Mean", "Max", "Min")]
    cols.append("mask_area_fraction")
    return {c: [] for c in cols}


def add_error_rows(images: dict[str, list[Any]], errors: Sequence[dict[str, str]]) -> None:
    """Append one row per unreadable image (file and reason; NaN measurements)."""
    for err in errors:
        for key, values in images.items():
            values.append(
                {
                    "image_id": err["image_id"],
                    "source": err["file"],
                    "objects": 0,
                    "error": err["error"],
                }.get(key, float("nan"))
            )
