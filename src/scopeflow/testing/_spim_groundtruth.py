"""The noise-free sample of a synthetic SPIM dataset, rendered on any world grid.

Fusion is judged against it: the same specimen and beads that :func:`make_spim_dataset` imaged,
without noise, background or depth attenuation, blurred by an isotropic-in-xz PSF (what a fusion
of views rotated about y can at best recover), in world micrometres of the sample frame
(time point 0, i.e. after time-lapse registration to it).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from scopeflow.core import affine as _affine
from scopeflow.core.errors import ConfigError
from scopeflow.testing._spim_cache import draw_scene
from scopeflow.testing._spim_render import add_beads, specimen_signal
from scopeflow.testing._spim_truth import SpimTruth

__all__ = ["render_ground_truth"]


def render_ground_truth(
    truth: SpimTruth,
    origin_xyz: ArrayLike,
    spacing: float,
    shape_zyx: tuple[int, int, int],
    *,
    psf_sigma: tuple[float, float, float] | None = None,
    beads: bool = True,
) -> NDArray[np.float64]:
    """The sample (photons) on the grid ``origin + spacing * index`` (world µm, x y z).

    Parameters
    ----------
    truth
        The dataset's ground truth. Its scene is drawn again from ``truth.seed``, or taken from
        the cache :func:`make_spim_dataset` filled when it made the dataset in this process.
    origin_xyz, spacing, shape_zyx
        The grid.
    psf_sigma
        ``(x, y, z)`` blur in µm; default: the views' PSF with its x and z sigmas averaged
        in quadrature, since views rotate about y.
    beads
        Include the beads (False: the specimen alone).

    Raises
    ------
    ConfigError
        The scene drawn again does not reproduce the truth's beads (other generator version).
    """
    from scopeflow.testing._spim import BEAD_MARGIN, PSF_SIGMA

    scene = draw_scene(
        truth.seed,
        views=truth.n_views,
        timepoints=truth.n_timepoints,
        shape=truth.shape,
        voxel_size=truth.voxel_size,
        margin=BEAD_MARGIN,
    )
    bead_xyz, brightness = scene.beads, scene.bead_brightness
    if bead_xyz.shape != truth.beads_world.shape or not np.allclose(bead_xyz, truth.beads_world):
        raise ConfigError("render_ground_truth", [("truth", "scene does not match its seed")])
    if psf_sigma is None:
        xz = float(np.sqrt((PSF_SIGMA[0] ** 2 + PSF_SIGMA[2] ** 2) / 2.0))
        psf_sigma = (xz, PSF_SIGMA[1], xz)
    grid_to_world = _affine.compose(
        _affine.translation(origin_xyz), _affine.scaling((spacing, spacing, spacing))
    )
    # a view's noise-free photons, rendered for a "view" that is the grid itself
    voxel_size = (spacing, spacing, spacing)
    out = specimen_signal(
        shape=shape_zyx,
        voxel_size=voxel_size,
        px_to_world=grid_to_world,
        field=scene.field,
        field_origin=scene.field_origin,
        field_spacing=scene.field_spacing,
        psf_sigma=psf_sigma,
    )
    if beads:
        add_beads(
            out,
            voxel_size=voxel_size,
            px_to_world=grid_to_world,
            beads_world=bead_xyz,
            bead_brightness=brightness,
            psf_sigma=psf_sigma,
        )
    return out
