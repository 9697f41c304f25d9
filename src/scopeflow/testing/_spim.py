"""Synthetic multiview SPIM (light-sheet) time-lapse with known geometry.

A specimen (an ellipsoid with blob-like nuclei in a shell below its surface) sits in agarose with
fluorescent beads (point sources, kept ≥ 4 µm apart and outside the specimen). It is imaged from
``V`` angles evenly spaced about the y axis (``0, 360/V, …``) at ``T`` time points. Every view has
a known affine (nominal rotation + small scale, shear and translation errors; setup 0 is exact)
and every time point a known sample drift. Image formation: pixel-integrated anisotropic
Gaussian PSF (sigma = 1.0, 1.0, 2.5 µm in x, y, z of the view), depth attenuation along the view's
z axis, background, Poisson noise, camera offset, ``uint16``.

Coordinate convention
---------------------
Affines are row-major 3x4 and map view *pixel* coordinates ``(x, y, z)`` (voxel indices, voxel
centres at integers; arrays are stored ``z, y, x``) to world coordinates in µm — the
BigDataViewer convention, so the nominal affine includes the voxel-size (z-anisotropy)
calibration: ``A_nominal = T(c) · R_y(angle) · T(-c) · diag(vx, vy, vz)`` with ``c`` the world
centre of the volume. World is the frame of the sample at time point 0. At time point ``t`` the
sample has drifted by ``d_t`` (``d_0 = 0``): a world point ``w`` is imaged by view ``v`` at pixel
``p = A_v⁻¹(w + d_t)``; conversely ``w = A_v(p) - d_t``; ``T(-d_t) · A_v`` is the complete
(view + time-lapse) registration of ``(v, t)`` to the reference time point 0.

Files written under ``out``
---------------------------
``tiff/t{t:03d}_v{v:02d}.tif`` (``tiff/t{t:03d}_v{v:02d}_c{c}_i{i}.tif`` with several channels
or illuminations)
    One ImageJ hyperstack per (time point, view[, channel, illumination]): ``uint16``
    ``(z, y, x)``; x/y pixel size in the resolution tags (pixels per µm), z step as ``spacing``
    with ``unit=um`` in the ImageJ description.
``czi/t{t:03d}.czi`` (``write_czi=True``, one illumination)
    One CZI per time point holding the same pixels: view ``v`` is scene ``v``, planes at
    ``T=0, C=c, Z=z``, each scene at location ``(0, 0)``; channel names as in ``channels``;
    ``Scaling/Items/Distance`` X, Y, Z in metres (the CZI unit); custom attributes
    ``ScopeflowAngles`` (comma-separated degrees by scene) and ``ScopeflowTimepoint``. Each file
    is read back with ``pylibCZIrw`` and compared to the data before the call returns.
``truth.json``
    :meth:`SpimTruth.to_dict`: ``convention``, ``shape`` (z, y, x), ``voxel_size`` (x, y, z µm),
    ``views`` (``setup``, ``angle``, ``nominal_affine``, ``true_affine`` as 12 floats),
    ``timepoints`` (``t``, ``drift``), ``beads_world``, ``nuclei_world``, ``specimen``,
    ``psf_sigma``, ``attenuation_length``, ``background``, ``camera_offset``, ``seed``, ``files``.
Channels and illuminations
    Channel 0 (``beads``) shows the specimen and the beads; further channels (``nuclei``,
    ``ch2`` …) the same specimen without beads (a stain the beads do not emit in). With
    several illuminations, illumination ``i`` is a light sheet entering from the view's low
    (even ``i``) or high (odd ``i``) x edge, attenuated over ``ILLUMINATION_LENGTH`` µm; with one,
    the illumination is uniform. Geometry is shared: every channel and illumination of a view
    has the view's affine.
``config.yaml`` (and ``config_czi.yaml`` with CZI)
    A ready configuration for the spim pipeline (TIFF input; CZI input), paths relative to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scopeflow.core import affine as _affine
from scopeflow.core.errors import ConfigError
from scopeflow.testing._spim_cache import draw_scene
from scopeflow.testing._spim_render import add_beads, expose, specimen_signal
from scopeflow.testing._spim_truth import SpimTruth
from scopeflow.testing._spim_write import (
    CZI_PATTERN,
    TIFF_PATTERN,
    write_czi_timepoint,
    write_spim_configs,
    write_tiff_view,
)

PSF_SIGMA = (1.0, 1.0, 2.5)
#: beads stay this far (µm) inside the specimen box; the ground truth redraws the same scene
BEAD_MARGIN = 4.0 * max(PSF_SIGMA)
ATTENUATION_LENGTH = 150.0
BACKGROUND = 20.0
CAMERA_OFFSET = 100
ILLUMINATION_LENGTH = 200.0
MULTI_TIFF_PATTERN = "tiff/t{t:03d}_v{v:02d}_c{c}_i{i}.tif"


def channel_names(n: int) -> list[str]:
    """Names of ``n`` synthetic channels: ``beads``, ``nuclei``, ``ch2`` …."""
    return ["beads", "nuclei", *(f"ch{c}" for c in range(2, n))][:n]


def _check(
    views: int,
    timepoints: int,
    shape: tuple[int, int, int],
    voxel_size: tuple[float, float, float],
    *,
    channels: int = 1,
    illuminations: int = 1,
    write_czi: bool = False,
) -> None:
    problems: list[tuple[str, str]] = []
    if channels < 1:
        problems.append(("channels", f"must be >= 1, got {channels}"))
    if illuminations < 1:
        problems.append(("illuminations", f"must be >= 1, got {illuminations}"))
    if write_czi and illuminations > 1:
        problems.append(
            ("write_czi", "pylibCZIrw writes no illumination (I) dimension: use TIFF only")
        )
    if views < 1:
        problems.append(("views", f"must be >= 1, got {views}"))
    if timepoints < 1:
        problems.append(("timepoints", f"must be >= 1, got {timepoints}"))
    if len(shape) != 3 or any(int(s) < 16 for s in shape):
        problems.append(("shape", f"expected three sizes (z, y, x) >= 16, got {shape}"))
    if len(voxel_size) != 3 or any(float(s) <= 0 for s in voxel_size):
        problems.append(("voxel_size", f"expected three sizes (x, y, z) > 0, got {voxel_size}"))
    if problems:
        raise ConfigError("make_spim_dataset", problems)


def make_spim_dataset(
    out: str | Path,
    *,
    views: int = 4,
    timepoints: int = 3,
    shape: tuple[int, int, int] = (64, 128, 128),
    seed: int = 0,
    write_czi: bool = True,
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 2.0),
    channels: int = 1,
    illuminations: int = 1,
) -> SpimTruth:
    """Generate a synthetic multiview SPIM time-lapse with known ground truth.

    Parameters
    ----------
    out
        Output folder (created; existing files of the same names are overwritten).
    views
        Number of views, at angles ``360 · v / views`` degrees about the y axis.
    timepoints
        Number of time points.
    shape
        ``(z, y, x)`` shape of each view volume, voxels (each at least 16).
    seed
        Seed of every random choice: the same seed gives identical files.
    write_czi
        Also write one CZI per time point (views as scenes).
    voxel_size
        ``(x, y, z)`` voxel size, µm.
    channels
        Number of channels (channel 0 has the beads; see the module docstring).
    illuminations
        Number of illuminations (one-sided light sheets from alternating sides); CZI files
        need one.

    Returns
    -------
    SpimTruth
        The ground truth, also written to ``out/truth.json``. See the module docstring for the
        file layout and the affine / drift convention.

    Raises
    ------
    scopeflow.core.errors.ConfigError
        An argument is out of range.
    """
    _check(
        views,
        timepoints,
        shape,
        voxel_size,
        channels=channels,
        illuminations=illuminations,
        write_czi=write_czi,
    )
    names = channel_names(channels)
    multi = channels > 1 or illuminations > 1
    pattern = MULTI_TIFF_PATTERN if multi else TIFF_PATTERN
    shape = (int(shape[0]), int(shape[1]), int(shape[2]))
    voxel_size = (float(voxel_size[0]), float(voxel_size[1]), float(voxel_size[2]))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    scene = draw_scene(
        seed,
        views=views,
        timepoints=timepoints,
        shape=shape,
        voxel_size=voxel_size,
        margin=BEAD_MARGIN,
    )
    geometry, specimen, beads = scene.geometry, scene.specimen, scene.beads

    combos = [(c, i) for c in range(channels) for i in range(illuminations)]
    tiff_files: list[list[Any]] = [
        [
            pattern.format(t=t, v=v)
            if not multi
            else [
                [pattern.format(t=t, v=v, c=c, i=i) for i in range(illuminations)]
                for c in range(channels)
            ]
            for v in range(views)
        ]
        for t in range(timepoints)
    ]
    czi_files = [CZI_PATTERN.format(t=t) for t in range(timepoints)] if write_czi else []
    for t in range(timepoints):
        volumes: list[list[NDArray[np.uint16]]] = [[] for _ in range(channels)]
        for v in range(views):
            px_to_world = _affine.compose(
                _affine.translation(-geometry.drifts[t]), geometry.true[v]
            )
            # the photons of a view are the same in every channel and illumination but for the
            # beads (channel 0 only) and the light sheet's side, applied by expose()
            specimen_only = specimen_signal(
                shape=shape,
                voxel_size=voxel_size,
                px_to_world=px_to_world,
                field=scene.field,
                field_origin=scene.field_origin,
                field_spacing=scene.field_spacing,
                psf_sigma=PSF_SIGMA,
            )
            with_beads = specimen_only.copy() if channels > 1 else specimen_only
            add_beads(
                with_beads,
                voxel_size=voxel_size,
                px_to_world=px_to_world,
                beads_world=beads,
                bead_brightness=scene.bead_brightness,
                psf_sigma=PSF_SIGMA,
            )
            for c, i in combos:
                key = [seed, 1, t, v] + ([c, i] if multi else [])
                vol = expose(
                    with_beads if c == 0 else specimen_only,
                    voxel_size=voxel_size,
                    attenuation_length=ATTENUATION_LENGTH,
                    background=BACKGROUND,
                    camera_offset=CAMERA_OFFSET,
                    rng=np.random.default_rng(np.random.SeedSequence(key)),
                    illumination_side=(i % 2) if illuminations > 1 else None,
                    illumination_length=ILLUMINATION_LENGTH,
                )
                write_tiff_view(out / pattern.format(t=t, v=v, c=c, i=i), vol, voxel_size)
                volumes[c].append(vol)
        if write_czi:
            write_czi_timepoint(
                out / czi_files[t],
                volumes,
                voxel_size=voxel_size,
                angles=geometry.angles,
                t=t,
                channel_names=names,
            )

    configs = write_spim_configs(
        out,
        timepoints=timepoints,
        angles=geometry.angles,
        voxel_size=voxel_size,
        with_czi=write_czi,
        channels=names,
        illuminations=illuminations,
        tiff_pattern=pattern,
    )
    truth = SpimTruth(
        root=out,
        shape=shape,
        voxel_size=voxel_size,
        angles=geometry.angles,
        nominal_affines=geometry.nominal,
        true_affines=geometry.true,
        drifts=geometry.drifts,
        beads_world=beads,
        nuclei_world=specimen.nuclei,
        specimen_centre=(
            float(specimen.centre[0]),
            float(specimen.centre[1]),
            float(specimen.centre[2]),
        ),
        specimen_semi_axes=(
            float(specimen.semi_axes[0]),
            float(specimen.semi_axes[1]),
            float(specimen.semi_axes[2]),
        ),
        psf_sigma=PSF_SIGMA,
        attenuation_length=ATTENUATION_LENGTH,
        background=BACKGROUND,
        camera_offset=CAMERA_OFFSET,
        seed=seed,
        channels=tuple(names),
        illuminations=illuminations,
        illumination_length=ILLUMINATION_LENGTH,
        files={
            "tiff_pattern": pattern,
            "czi_pattern": CZI_PATTERN if write_czi else None,
            "tiff": tiff_files,
            "czi": czi_files,
            "config": configs[0],
            "config_czi": configs[1] if write_czi else None,
            "truth": "truth.json",
        },
    )
    truth.to_json(out / "truth.json")
    return truth
