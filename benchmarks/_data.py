"""Synthetic benchmark data, made once and cached in ``benchmarks/.data`` (git-ignored)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from scopeflow.core import affine as _affine
from scopeflow.steps.spim import (
    DetectionParams,
    RegistrationParams,
    register_views,
    timepoint_beads,
)
from scopeflow.testing import SpimTruth, make_cyto_dataset, make_spim_dataset

DATA = Path(__file__).resolve().parent / ".data"


def ifc_dataset(n: int) -> Path:
    """``make_cyto_dataset(kind="ifc", n=n, seed=0)``: one folder shared by every benchmark."""
    folder = DATA / f"ifc-{n}"
    if not (folder / "dataset.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        make_cyto_dataset(folder, kind="ifc", n=n, seed=0)
    return folder


def spim_dataset(shape: tuple[int, int, int] = (128, 256, 256), views: int = 4) -> SpimTruth:
    """One synthetic SPIM time point (``make_spim_dataset(seed=0)``, TIFF only)."""
    folder = DATA / f"spim-{views}v1t-{'x'.join(map(str, shape))}"
    if not (folder / "truth.json").exists():
        make_spim_dataset(folder, views=views, timepoints=1, shape=shape, seed=0, write_czi=False)
    return SpimTruth.from_json(folder / "truth.json")


def spim_views_and_beads(truth: SpimTruth) -> tuple[list[Any], list[Any]]:
    """The views of time point 0 and their beads mapped by the nominal transforms (world).

    Detection as the pipeline's: DoG, quadratic fit, intensity-gradient bias removed.
    """
    vols = [tifffile.imread(truth.path("tiff", 0, v)) for v in range(truth.n_views)]
    anisotropy = truth.voxel_size[2] / truth.voxel_size[0]
    xyz, _ = timepoint_beads(vols, DetectionParams(), anisotropy)
    pts = [_affine.apply(truth.nominal_affines[v], p) for v, p in enumerate(xyz)]
    return vols, pts


def registered_models(truth: SpimTruth, pts: list[Any]) -> list[np.ndarray]:
    """Each view's estimated pixel → world model, registered as the pipeline does (affine)."""
    models, _ = register_views(pts, RegistrationParams())
    return [_affine.compose(models[v], truth.nominal_affines[v]) for v in range(len(pts))]
