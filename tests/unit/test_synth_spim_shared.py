"""Work the synthetic SPIM generator shares: view photons across channels and illuminations,
the drawn scene across the dataset and its ground truth, and the registration error measure."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tifffile

from scopeflow.core import affine as _affine
from scopeflow.testing import (
    make_spim_dataset,
    registration_errors,
    render_ground_truth,
)
from scopeflow.testing._spim import (
    ATTENUATION_LENGTH,
    BACKGROUND,
    BEAD_MARGIN,
    CAMERA_OFFSET,
    ILLUMINATION_LENGTH,
    PSF_SIGMA,
)
from scopeflow.testing._spim_cache import _draw, draw_scene
from scopeflow.testing._spim_render import render_view

KW = {"views": 2, "timepoints": 2, "shape": (16, 32, 48), "seed": 4, "write_czi": False}


def test_channels_and_illuminations_match_the_one_view_renderer(tmp_path: Path) -> None:
    """Sharing a view's photons gives the volumes render_view makes on its own, bit for bit."""
    truth = make_spim_dataset(tmp_path, channels=2, illuminations=2, **KW)  # type: ignore[arg-type]
    scene = draw_scene(
        truth.seed,
        views=truth.n_views,
        timepoints=truth.n_timepoints,
        shape=truth.shape,
        voxel_size=truth.voxel_size,
        margin=BEAD_MARGIN,
    )
    for t in range(truth.n_timepoints):
        for v in range(truth.n_views):
            for c in range(2):
                for i in range(2):
                    expected = render_view(
                        shape=truth.shape,
                        voxel_size=truth.voxel_size,
                        px_to_world=truth.view_affine(v, t),
                        beads_world=scene.beads,
                        bead_brightness=scene.bead_brightness,
                        field=scene.field,
                        field_origin=scene.field_origin,
                        field_spacing=scene.field_spacing,
                        psf_sigma=PSF_SIGMA,
                        attenuation_length=ATTENUATION_LENGTH,
                        background=BACKGROUND,
                        camera_offset=CAMERA_OFFSET,
                        rng=np.random.default_rng(np.random.SeedSequence([4, 1, t, v, c, i])),
                        beads=c == 0,
                        illumination_side=i,
                        illumination_length=ILLUMINATION_LENGTH,
                    )
                    got = tifffile.imread(truth.path("tiff", t, v, c=c, i=i))
                    np.testing.assert_array_equal(got, expected)


def test_the_scene_is_drawn_once_and_read_only(tmp_path: Path) -> None:
    _draw.cache_clear()
    truth = make_spim_dataset(tmp_path, **KW)  # type: ignore[arg-type]
    grid = (np.asarray(truth.specimen_centre) - 12.0, 1.0, (24, 24, 24))
    cached = render_ground_truth(truth, *grid)
    info = _draw.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    scene = draw_scene(
        truth.seed,
        views=truth.n_views,
        timepoints=truth.n_timepoints,
        shape=truth.shape,
        voxel_size=truth.voxel_size,
        margin=BEAD_MARGIN,
    )
    frozen = [
        getattr(record, f.name)
        for record in (scene, scene.geometry, scene.specimen)
        for f in dataclasses.fields(record)
        if isinstance(getattr(record, f.name), np.ndarray)
    ]
    assert len(frozen) >= 12  # every array of the shared scene, not a chosen few
    assert not any(a.flags.writeable for a in frozen)
    assert truth.true_affines is not scene.geometry.true  # the truth holds copies
    _draw.cache_clear()
    np.testing.assert_array_equal(render_ground_truth(truth, *grid), cached)
    assert _draw.cache_info().misses == 1


@pytest.mark.parametrize("illuminations", [1, 2])
def test_same_seed_same_pixels_with_several_channels(tmp_path: Path, illuminations: int) -> None:
    a = make_spim_dataset(tmp_path / "a", channels=2, illuminations=illuminations, **KW)  # type: ignore[arg-type]
    _draw.cache_clear()
    b = make_spim_dataset(tmp_path / "b", channels=2, illuminations=illuminations, **KW)  # type: ignore[arg-type]
    for c in range(2):
        for i in range(illuminations):
            np.testing.assert_array_equal(
                tifffile.imread(a.path("tiff", 1, 1, c=c, i=i)),
                tifffile.imread(b.path("tiff", 1, 1, c=c, i=i)),
            )


def test_registration_errors_of_chosen_pairs(tmp_path: Path) -> None:
    truth = make_spim_dataset(tmp_path, **{**KW, "views": 3, "timepoints": 1})  # type: ignore[arg-type]
    models = [
        _affine.compose(_affine.translation([0.1 * v, 0.0, 0.0]), a)
        for v, a in enumerate(truth.true_affines)
    ]
    every = registration_errors(truth, models)
    parts = [registration_errors(truth, models, pairs=[p]) for p in ((0, 1), (0, 2), (1, 2))]
    np.testing.assert_array_equal(every, np.concatenate(parts))
    np.testing.assert_allclose(parts[1], 0.2, atol=1e-9)
    np.testing.assert_array_equal(
        registration_errors(truth, models, pairs=[(1, 2), (0, 1)]),
        np.concatenate([parts[2], parts[0]]),
    )
    assert registration_errors(truth, models, pairs=[]).shape == (0,)
