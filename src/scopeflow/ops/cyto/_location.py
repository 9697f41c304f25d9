"""``Location_*`` features: object centroids, intensity-weighted centres, brightest pixels."""

from __future__ import annotations

import numpy as np

from scopeflow.ops.cyto._moments import F64, Features, ObjectPixels

LOCATION_FEATURES = (
    "CenterMassIntensity_X", "CenterMassIntensity_Y", "MaxIntensity_X", "MaxIntensity_Y",
)  # fmt: skip


def location_features(op: ObjectPixels, values: F64) -> Features:
    """``CenterMassIntensity_X/Y`` and ``MaxIntensity_X/Y`` per channel, ``(C, n)`` each.

    The maximum's position is its first occurrence in raster order (as
    ``scipy.ndimage.maximum_position``); the centre of mass is NaN for a zero-sum object.
    """
    total = op.sum(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        cm_x = op.sum(values * op.col) / total
        cm_y = op.sum(values * op.row) / total
    vmax = np.maximum.reduceat(values, op.starts, axis=-1)
    index = np.where(values == vmax[:, op.obj], np.arange(op.obj.size), op.obj.size)
    first = np.minimum.reduceat(index, op.starts, axis=-1)
    return {
        "CenterMassIntensity_X": cm_x,
        "CenterMassIntensity_Y": cm_y,
        "MaxIntensity_X": op.col[first].astype(np.float64),
        "MaxIntensity_Y": op.row[first].astype(np.float64),
    }
