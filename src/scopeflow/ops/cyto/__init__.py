"""Layer 2 ops for single-cell cytometry: pure array functions, image first, no file I/O.

Normalisation (:mod:`.normalize`), segmentation (:mod:`.segment`), per-channel masks
(:mod:`.mask`), per-object features named the CellProfiler way (:mod:`.features`) and object
matching metrics (:mod:`.metrics`). Batches are ``(N, C, H, W)`` images with ``(N, H, W)`` labels.
"""

from scopeflow.ops.cyto.features import (
    DEFAULT_TEXTURE_LEVELS,
    FAMILIES,
    feature_columns,
    measure_objects,
)
from scopeflow.ops.cyto.mask import channel_masks, combined_mask, compute_masks
from scopeflow.ops.cyto.metrics import LabelMatch, iou_matrix, match_labels
from scopeflow.ops.cyto.normalize import (
    QuantileState,
    channel_quantiles,
    finalize_quantiles,
    merge_quantile_states,
    normalize,
    normalize_per_image,
)
from scopeflow.ops.cyto.segment import (
    segment_cellpose,
    segment_field,
    segment_fields,
    segment_single_cell,
    validate_labels,
)

__all__ = [
    "DEFAULT_TEXTURE_LEVELS",
    "FAMILIES",
    "LabelMatch",
    "QuantileState",
    "channel_masks",
    "channel_quantiles",
    "combined_mask",
    "compute_masks",
    "feature_columns",
    "finalize_quantiles",
    "iou_matrix",
    "match_labels",
    "measure_objects",
    "merge_quantile_states",
    "normalize",
    "normalize_per_image",
    "segment_cellpose",
    "segment_field",
    "segment_fields",
    "segment_single_cell",
    "validate_labels",
]
