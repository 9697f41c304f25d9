"""Steps of the built-in ``example`` pipeline: segment one image, measure its objects, report.

These are plain typed functions (file in, file out) with pydantic parameters; the pipeline
module wraps them as engine steps. They stand in for the real pipelines until those land.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from numpy.typing import NDArray
from pydantic import Field
from scipy import ndimage as ndi
from skimage import feature, filters, measure, morphology, segmentation

from scopeflow.core import FormatError
from scopeflow.core.config import StrictModel

OBJECT_COLUMNS = (
    "image_id",
    "object",
    "area",
    "centroid_x",
    "centroid_y",
    "mean_intensity",
    "max_intensity",
)


class SegmentParams(StrictModel):
    """How objects are found in one image."""

    channel: int = Field(0, ge=0, description="channel (first axis of a C,Y,X image) to segment")
    sigma: float = Field(1.5, ge=0, description="Gaussian smoothing before thresholding, px")
    min_area: int = Field(40, ge=1, description="smaller objects are removed, px")
    split_distance: float | None = Field(
        9.0,
        gt=0,
        description="split touching objects by a watershed on the distance transform, seeded "
        "at maxima at least this far apart (px); null: no splitting",
    )


def read_image(path: Path, channel: int) -> NDArray[Any]:
    """Read one 2-D plane (``channel`` of a C,Y,X TIFF, or a Y,X TIFF)."""
    try:
        data = tifffile.imread(path)
    except Exception as exc:  # tifffile raises several types for broken files
        raise FormatError(path, f"cannot read as TIFF: {exc}") from None
    if data.ndim == 2:
        return np.asarray(data)
    if data.ndim == 3:
        if channel >= data.shape[0]:
            raise FormatError(path, f"has {data.shape[0]} channels, channel {channel} requested")
        return np.asarray(data[channel])
    raise FormatError(path, f"expected a Y,X or C,Y,X image, got shape {data.shape}")


def segment(image: NDArray[Any], params: SegmentParams) -> NDArray[np.int32]:
    """Label the bright objects of ``image``.

    Otsu threshold of the smoothed image, hole filling, optional watershed split of touching
    objects on the distance transform, size filter.

    Parameters
    ----------
    image
        (row, column) image, any numeric dtype.
    params
        Smoothing and size filter.

    Returns
    -------
    ndarray of int32, shape of ``image``
        0 for background, 1..N for objects.
    """
    smooth = filters.gaussian(image.astype(np.float32), sigma=params.sigma, preserve_range=True)
    mask = smooth > filters.threshold_otsu(smooth)
    mask = ndi.binary_fill_holes(mask)
    labels = measure.label(mask)
    if params.split_distance is not None:
        distance = ndi.distance_transform_edt(mask)
        peaks = feature.peak_local_max(
            distance, min_distance=round(params.split_distance), labels=labels, exclude_border=False
        )
        markers = np.zeros(mask.shape, dtype=np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        labels = segmentation.watershed(-distance, markers, mask=mask)
    labels = morphology.remove_small_objects(labels, max_size=params.min_area - 1)
    relabelled, _, _ = _relabel(labels)
    return relabelled.astype(np.int32)


def _relabel(labels: NDArray[Any]) -> tuple[NDArray[Any], int, int]:
    from skimage.segmentation import relabel_sequential

    out, fw, _ = relabel_sequential(labels)
    return out, int(out.max()), len(fw)


def measure_objects(
    labels: NDArray[Any], image: NDArray[Any], image_id: str
) -> list[dict[str, Any]]:
    """One row per object: area, centroid (x = column, y = row) and intensities."""
    rows: list[dict[str, Any]] = []
    for prop in measure.regionprops(labels, intensity_image=image):
        cy, cx = prop.centroid
        rows.append(
            {
                "image_id": image_id,
                "object": int(prop.label),
                "area": int(prop.area),
                "centroid_x": round(float(cx), 3),
                "centroid_y": round(float(cy), 3),
                "mean_intensity": round(float(prop.intensity_mean), 3),
                "max_intensity": float(prop.intensity_max),
            }
        )
    return rows


def write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> Path:
    """Write ``rows`` as CSV with a header of ``columns``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    """Read a CSV file into a list of rows."""
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def match_to_truth(
    found: Sequence[dict[str, Any]], truth: Sequence[dict[str, str]], *, max_distance: float
) -> dict[str, float | None]:
    """Match found objects to true ones by nearest centroid (greedy, one-to-one).

    Returns counts, recall, precision and the mean centroid error of matched pairs (px); a ratio
    without a denominator is None.
    """
    true_xy = np.array([[float(t["centroid_x"]), float(t["centroid_y"])] for t in truth])
    found_xy = np.array([[float(f["centroid_x"]), float(f["centroid_y"])] for f in found])
    matched: list[float] = []
    if len(true_xy) and len(found_xy):
        dist = np.hypot(*(found_xy[:, None, :] - true_xy[None, :, :]).transpose(2, 0, 1))
        order = np.dstack(np.unravel_index(np.argsort(dist, axis=None), dist.shape))[0]
        used_f: set[int] = set()
        used_t: set[int] = set()
        for fi, ti in order:
            if dist[fi, ti] > max_distance:
                break
            if fi in used_f or ti in used_t:
                continue
            used_f.add(int(fi))
            used_t.add(int(ti))
            matched.append(float(dist[fi, ti]))
    n_true, n_found = len(true_xy), len(found_xy)
    return {
        "true": n_true,
        "found": n_found,
        "matched": len(matched),
        "recall": len(matched) / n_true if n_true else None,
        "precision": len(matched) / n_found if n_found else None,
        "mean_centroid_error_px": float(np.mean(matched)) if matched else None,
    }
