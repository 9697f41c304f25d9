"""Synthetic microscopy data with known ground truth, and a real server, for tests and benchmarks.

* :func:`make_spim_dataset` -- multiview light-sheet time-lapse (TIFF + CZI) with known view
  affines, drifts and bead positions (:class:`SpimTruth`).
* :func:`make_cyto_dataset` -- imaging-flow-cytometry images or confocal fields with true label
  images and a per-object truth table (:class:`CytoTruth`).
* :class:`Server` -- a real ``scopeflow server`` (API and worker) in a subprocess on a free
  loopback port, started, awaited and stopped; :func:`free_port`.
"""

from scopeflow.testing._cyto import make_cyto_dataset
from scopeflow.testing._cyto_truth import CytoKind, CytoTruth, read_truth_table
from scopeflow.testing._server import Server, free_port
from scopeflow.testing._spim import make_spim_dataset
from scopeflow.testing._spim_cache import clear_scene_cache
from scopeflow.testing._spim_groundtruth import render_ground_truth
from scopeflow.testing._spim_truth import (
    SpimTruth,
    beads_in_view,
    beads_in_view_index,
    registration_errors,
)

__all__ = [
    "CytoKind",
    "CytoTruth",
    "Server",
    "SpimTruth",
    "beads_in_view",
    "beads_in_view_index",
    "clear_scene_cache",
    "free_port",
    "make_cyto_dataset",
    "make_spim_dataset",
    "read_truth_table",
    "registration_errors",
    "render_ground_truth",
]
