"""Tests of the layer-2 image operations (scopeflow.ops).

:func:`synthetic_cyto` gives every test module of the session the same small synthetic
cytometry datasets, generated once per session (modules call it from their own session-scoped
fixtures; a ``conftest.py`` is not needed for that).
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from scopeflow.testing import CytoTruth, make_cyto_dataset

_CACHE: dict[tuple[str, int, int], CytoTruth] = {}


def synthetic_cyto(factory: pytest.TempPathFactory, kind: str, n: int, seed: int) -> CytoTruth:
    """Make (once per session) a synthetic cytometry dataset in a session temp folder."""
    key = (kind, n, seed)
    if key not in _CACHE:
        out = factory.mktemp(f"cyto_{kind}_{n}_{seed}")
        _CACHE[key] = make_cyto_dataset(out, kind=kind, n=n, seed=seed)
    return _CACHE[key]


def ifc_arrays(factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(200, 6, 90, 90)`` and true labels of the shared synthetic IFC dataset."""
    truth = synthetic_cyto(factory, "ifc", 200, 7)
    images = np.asarray(zarr.open_array(str(truth.root / truth.files["zarr"]), mode="r"))
    return images, tifffile.imread(truth.root / truth.files["labels"])
