"""The drawn scene of a synthetic SPIM dataset, memoised by the arguments that determine it.

:func:`~scopeflow.testing.make_spim_dataset` and
:func:`~scopeflow.testing.render_ground_truth` both need the same scene (view geometry, drifts,
specimen, beads and the specimen's fluorescence field); it depends only on the seed and the
dataset's size, so it is drawn once and shared. The arrays of a cached scene are read-only.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from scopeflow.testing._spim_render import specimen_field
from scopeflow.testing._spim_scene import (
    Geometry,
    Specimen,
    make_beads,
    make_geometry,
    make_specimen,
)

#: Scenes kept (the field is ~2 MB at the default size, ~17 MB at 128 x 256 x 256 voxels).
CACHED_SCENES = 4


@dataclass(frozen=True, eq=False)
class Scene:
    """Everything random about a dataset, and the specimen field rendered from it."""

    geometry: Geometry
    specimen: Specimen
    beads: NDArray[np.float64]  # (N, 3) world µm
    bead_brightness: NDArray[np.float64]  # (N,)
    field: NDArray[np.float32]  # (z, y, x), see specimen_field
    field_origin: NDArray[np.float64]  # (3,) world x, y, z of field[0, 0, 0]
    field_spacing: float  # µm


def _freeze(*records: object) -> None:
    """Make every array field of these dataclasses read-only (the cached scene is shared)."""
    for record in records:
        for f in dataclasses.fields(record):  # type: ignore[arg-type]
            value = getattr(record, f.name)
            if isinstance(value, np.ndarray):
                value.setflags(write=False)


@functools.lru_cache(maxsize=CACHED_SCENES)
def _draw(
    seed: int,
    *,
    views: int,
    timepoints: int,
    shape: tuple[int, int, int],
    voxel_size: tuple[float, float, float],
    margin: float,
) -> Scene:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    geometry = make_geometry(
        rng, views=views, timepoints=timepoints, shape=shape, voxel_size=voxel_size
    )
    specimen = make_specimen(rng, shape=shape, voxel_size=voxel_size)
    beads, brightness = make_beads(
        rng, geometry=geometry, specimen=specimen, shape=shape, margin=margin
    )
    spacing = min(voxel_size)
    field, origin = specimen_field(specimen, spacing)
    scene = Scene(
        geometry=geometry,
        specimen=specimen,
        beads=beads,
        bead_brightness=brightness,
        field=field,
        field_origin=origin,
        field_spacing=spacing,
    )
    _freeze(geometry, specimen, scene)
    return scene


def draw_scene(
    seed: int,
    *,
    views: int,
    timepoints: int,
    shape: tuple[int, int, int],
    voxel_size: tuple[float, float, float],
    margin: float,
) -> Scene:
    """The scene of a dataset: drawn from ``SeedSequence([seed, 0])``, or the cached copy.

    Parameters
    ----------
    seed
        The dataset's seed.
    views, timepoints
        Number of views and time points.
    shape
        ``(z, y, x)`` view volume, voxels.
    voxel_size
        ``(x, y, z)`` µm; the specimen field's spacing is the smallest of them.
    margin
        Beads fill the views' world box grown by this many µm.

    Returns
    -------
    Scene
        Read-only arrays; the same object for the same arguments while it stays cached.
    """
    return _draw(
        int(seed),
        views=int(views),
        timepoints=int(timepoints),
        shape=(int(shape[0]), int(shape[1]), int(shape[2])),
        voxel_size=(float(voxel_size[0]), float(voxel_size[1]), float(voxel_size[2])),
        margin=float(margin),
    )


def clear_scene_cache() -> None:
    """Forget the cached scenes (a long-lived process that made a dataset frees them)."""
    _draw.cache_clear()
