"""Rendering of one synthetic SPIM view volume (pure array functions, no file I/O).

Image formation, per view ``v`` and time point ``t`` (all in view pixel space, ``z, y, x``):

1. beads: point sources splatted at their sub-pixel positions with a pixel-integrated
   anisotropic Gaussian PSF (``erf`` differences, evaluated only within 4sigma);
2. specimen: a world-space fluorescence field (soft ellipsoid + soft spherical nuclei) sampled at
   the world position of every view voxel (trilinear), then blurred by the same PSF;
3. depth attenuation ``exp(-z·vz / λ)`` along the view's detection (z) axis, and for a one-sided
   light sheet (several illuminations) ``exp(-d / λ_ill)`` with ``d`` the distance along x from
   the side the sheet enters;
4. background photons, Poisson noise, camera offset, clipping to ``uint16``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.special import erf

from scopeflow.core import affine as _affine
from scopeflow.testing._spim_scene import Specimen

#: Total photons of an average bead (peak voxel ≈ 4.5 % of it for sigma = 1, 1, 1.25 px).
BEAD_PHOTONS = 30_000.0
#: Photons per voxel of a nucleus of brightness 1, and of the specimen's diffuse interior.
NUCLEUS_PHOTONS = 250.0
INTERIOR_PHOTONS = 30.0


def specimen_field(
    specimen: Specimen, spacing: float
) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """Render the specimen's relative fluorescence on an isotropic world grid.

    Parameters
    ----------
    specimen
        Ellipsoid and nuclei (world micrometres).
    spacing
        Grid spacing, micrometres.

    Returns
    -------
    field : numpy.ndarray
        ``(z, y, x)`` float32 grid; nuclei have value ≈ their brightness, the interior
        ``INTERIOR_PHOTONS / NUCLEUS_PHOTONS``.
    origin : numpy.ndarray
        World ``(x, y, z)`` of grid voxel ``[0, 0, 0]``.
    """
    lo = specimen.centre - specimen.semi_axes - 3.0
    n_xyz = np.ceil((2.0 * specimen.semi_axes + 6.0) / spacing).astype(int) + 1
    x = lo[0] + spacing * np.arange(n_xyz[0])
    y = lo[1] + spacing * np.arange(n_xyz[1])
    z = lo[2] + spacing * np.arange(n_xyz[2])
    rx = ((x - specimen.centre[0]) / specimen.semi_axes[0]) ** 2
    ry = ((y - specimen.centre[1]) / specimen.semi_axes[1]) ** 2
    rz = ((z - specimen.centre[2]) / specimen.semi_axes[2]) ** 2
    rho = np.sqrt(rz[:, None, None] + ry[None, :, None] + rx[None, None, :])
    signed = (1.0 - rho) * float(specimen.semi_axes.min())
    interior = INTERIOR_PHOTONS / NUCLEUS_PHOTONS
    field = (interior / (1.0 + np.exp(-signed / 1.0))).astype(np.float32)
    for (cx, cy, cz, r), b in zip(specimen.nuclei, specimen.nuclei_brightness, strict=True):
        c = np.array([cx, cy, cz])
        i0 = np.maximum(np.floor((c - r - 3.0 - lo) / spacing).astype(int), 0)
        i1 = np.minimum(np.ceil((c + r + 3.0 - lo) / spacing).astype(int) + 1, n_xyz)
        dx = (x[i0[0] : i1[0]] - cx) ** 2
        dy = (y[i0[1] : i1[1]] - cy) ** 2
        dz = (z[i0[2] : i1[2]] - cz) ** 2
        d = np.sqrt(dz[:, None, None] + dy[None, :, None] + dx[None, None, :])
        blob = b / (1.0 + np.exp((d - r) / 0.6))
        field[i0[2] : i1[2], i0[1] : i1[1], i0[0] : i1[0]] += blob.astype(np.float32)
    return field, lo


def _sample_field(
    out: NDArray[np.float64],
    field: NDArray[np.float32],
    px_to_grid: NDArray[np.float64],
    psf_px_zyx: tuple[float, float, float],
) -> None:
    """Add the PSF-blurred field, sampled at every voxel of ``out``, to ``out`` (in place)."""
    shape = out.shape
    gz, gy, gx = field.shape
    corners = np.array(
        [[x, y, z] for x in (0, gx - 1) for y in (0, gy - 1) for z in (0, gz - 1)], dtype=np.float64
    )
    box = _affine.apply(_affine.invert(px_to_grid), corners)
    pad = 4.0 * np.array([psf_px_zyx[2], psf_px_zyx[1], psf_px_zyx[0]]) + 2.0
    lo = np.maximum(np.floor(box.min(axis=0) - pad).astype(int), 0)
    hi = np.minimum(np.ceil(box.max(axis=0) + pad).astype(int) + 1, [shape[2], shape[1], shape[0]])
    if np.any(hi <= lo):
        return
    i = np.arange(lo[0], hi[0], dtype=np.float64)
    j = np.arange(lo[1], hi[1], dtype=np.float64)
    k = np.arange(lo[2], hi[2], dtype=np.float64)
    m = px_to_grid
    coords = np.empty((3, k.size, j.size, i.size))
    for dst, row in ((0, 2), (1, 1), (2, 0)):  # grid index order z, y, x
        coords[dst] = (
            m[row, 0] * i[None, None, :]
            + m[row, 1] * j[None, :, None]
            + m[row, 2] * k[:, None, None]
            + m[row, 3]
        )
    sub = ndimage.map_coordinates(
        field, coords, order=1, mode="constant", cval=0.0, prefilter=False
    )
    sub = ndimage.gaussian_filter(sub.astype(np.float64), psf_px_zyx, mode="constant", truncate=4.0)
    out[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]] += sub


def _pixel_weights(
    c: NDArray[np.float64], sigma: float
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Integer positions ``(N, K)`` and pixel-integrated 1-D Gaussian weights around ``c``."""
    r = int(np.ceil(4.0 * sigma))
    pos = np.round(c).astype(np.intp)[:, None] + np.arange(-r, r + 1)[None, :]
    s = np.sqrt(2.0) * sigma
    w = 0.5 * (erf((pos + 0.5 - c[:, None]) / s) - erf((pos - 0.5 - c[:, None]) / s))
    return pos, w


def splat_points(
    out: NDArray[np.float64],
    pts_xyz: NDArray[np.float64],
    photons: NDArray[np.float64],
    psf_px_xyz: tuple[float, float, float],
) -> None:
    """Add point sources with a pixel-integrated anisotropic Gaussian PSF to ``out`` (in place).

    Parameters
    ----------
    out
        ``(z, y, x)`` float64 volume.
    pts_xyz
        ``(N, 3)`` sub-pixel positions ``(x, y, z)`` in voxel units.
    photons
        ``(N,)`` total photons of each point.
    psf_px_xyz
        PSF standard deviation along ``x, y, z`` in voxels.
    """
    if len(pts_xyz) == 0:
        return
    nz, ny, nx = out.shape
    px, wx = _pixel_weights(pts_xyz[:, 0], psf_px_xyz[0])
    py, wy = _pixel_weights(pts_xyz[:, 1], psf_px_xyz[1])
    pz, wz = _pixel_weights(pts_xyz[:, 2], psf_px_xyz[2])
    w = (
        photons[:, None, None, None]
        * wz[:, :, None, None]
        * wy[:, None, :, None]
        * wx[:, None, None, :]
    )
    valid = (
        ((pz >= 0) & (pz < nz))[:, :, None, None]
        & ((py >= 0) & (py < ny))[:, None, :, None]
        & ((px >= 0) & (px < nx))[:, None, None, :]
    )
    flat = (pz[:, :, None, None] * ny + py[:, None, :, None]) * nx + px[:, None, None, :]
    acc = np.bincount(flat[valid], weights=w[valid], minlength=out.size)
    out += acc.reshape(out.shape)


def _psf_px(
    psf_sigma: tuple[float, float, float], voxel_size: tuple[float, float, float]
) -> tuple[float, float, float]:
    """``(x, y, z)`` PSF sigma in voxels."""
    vs = np.asarray(voxel_size, dtype=np.float64)
    return (psf_sigma[0] / vs[0], psf_sigma[1] / vs[1], psf_sigma[2] / vs[2])


def specimen_signal(
    *,
    shape: tuple[int, int, int],
    voxel_size: tuple[float, float, float],
    px_to_world: NDArray[np.float64],
    field: NDArray[np.float32],
    field_origin: NDArray[np.float64],
    field_spacing: float,
    psf_sigma: tuple[float, float, float],
) -> NDArray[np.float64]:
    """Noise-free specimen photons of one view (step 2 of the module docstring).

    Parameters are those of :func:`render_view`. Returns a new ``(z, y, x)`` float64 volume,
    shared by every channel and illumination of the view (see :func:`add_beads`, :func:`expose`).
    """
    psf_px = _psf_px(psf_sigma, voxel_size)
    signal = np.zeros(shape, dtype=np.float64)
    to_grid = _affine.compose(
        _affine.scaling(np.full(3, 1.0 / field_spacing)),
        _affine.translation(-field_origin),
        px_to_world,
    )
    _sample_field(signal, field, to_grid, (psf_px[2], psf_px[1], psf_px[0]))
    signal *= NUCLEUS_PHOTONS
    return signal


def add_beads(
    signal: NDArray[np.float64],
    *,
    voxel_size: tuple[float, float, float],
    px_to_world: NDArray[np.float64],
    beads_world: NDArray[np.float64],
    bead_brightness: NDArray[np.float64],
    psf_sigma: tuple[float, float, float],
) -> None:
    """Add the beads within reach of the ``(z, y, x)`` view volume ``signal`` (in place, step 1).

    Parameters are those of :func:`render_view`.
    """
    shape = signal.shape
    psf_px = _psf_px(psf_sigma, voxel_size)
    pts = _affine.apply(_affine.invert(px_to_world), beads_world)
    reach = 4.0 * np.array(psf_px) + 1.0
    upper = np.array([shape[2], shape[1], shape[0]]) - 1.0 + reach
    near = np.all((pts >= -reach) & (pts <= upper), axis=1)
    splat_points(signal, pts[near], BEAD_PHOTONS * bead_brightness[near], psf_px)


def expose(
    signal: NDArray[np.float64],
    *,
    voxel_size: tuple[float, float, float],
    attenuation_length: float,
    background: float,
    camera_offset: int,
    rng: np.random.Generator,
    illumination_side: int | None = None,
    illumination_length: float = 200.0,
) -> NDArray[np.uint16]:
    """Attenuate, add background and noise, digitise (steps 3 and 4); ``signal`` is not changed.

    Parameters are those of :func:`render_view`; ``signal`` is the ``(z, y, x)`` photons of
    :func:`specimen_signal` with or without :func:`add_beads`.
    """
    vs = np.asarray(voxel_size, dtype=np.float64)
    depth = np.arange(signal.shape[0], dtype=np.float64) * vs[2]
    if illumination_side is not None:
        x = np.arange(signal.shape[2], dtype=np.float64) * vs[0]
        dist = x if illumination_side == 0 else x[-1] - x
        lit = signal * np.exp(-dist / illumination_length)[None, None, :]
        lit *= np.exp(-depth / attenuation_length)[:, None, None]
    else:
        lit = signal * np.exp(-depth / attenuation_length)[:, None, None]
    lit += background
    counts = rng.poisson(lit)
    counts += camera_offset
    np.clip(counts, 0, np.iinfo(np.uint16).max, out=counts)
    out: NDArray[np.uint16] = counts.astype(np.uint16)
    return out


def render_view(
    *,
    shape: tuple[int, int, int],
    voxel_size: tuple[float, float, float],
    px_to_world: NDArray[np.float64],
    beads_world: NDArray[np.float64],
    bead_brightness: NDArray[np.float64],
    field: NDArray[np.float32],
    field_origin: NDArray[np.float64],
    field_spacing: float,
    psf_sigma: tuple[float, float, float],
    attenuation_length: float,
    background: float,
    camera_offset: int,
    rng: np.random.Generator,
    beads: bool = True,
    illumination_side: int | None = None,
    illumination_length: float = 200.0,
) -> NDArray[np.uint16]:
    """Render one view volume.

    :func:`specimen_signal`, :func:`add_beads` and :func:`expose` in one call; a dataset with
    several channels or illuminations calls them separately to share the first two.

    Parameters
    ----------
    shape
        ``(z, y, x)`` output shape.
    voxel_size
        ``(x, y, z)`` µm.
    px_to_world
        3x4 affine from view pixels to the sample world frame, ``T(-d_t) · A_v``.
    beads_world, bead_brightness
        ``(N, 3)`` bead positions (world µm) and relative brightness.
    field, field_origin, field_spacing
        Specimen field from :func:`specimen_field`.
    psf_sigma
        ``(x, y, z)`` PSF standard deviation, µm.
    attenuation_length
        λ of the depth attenuation ``exp(-depth / λ)``, µm.
    background, camera_offset
        Mean background photons per voxel; constant added after the noise.
    rng
        Source of the Poisson noise.
    beads
        Draw the beads (False: a channel in which they do not fluoresce).
    illumination_side
        None: uniform illumination. 0 / 1: a light sheet entering from the view's low / high
        x edge, the signal scaled by ``exp(-distance / illumination_length)`` along x.
    illumination_length
        λ of the light sheet's attenuation, µm.

    Returns
    -------
    numpy.ndarray
        ``(z, y, x)`` ``uint16`` volume.
    """
    signal = specimen_signal(
        shape=shape,
        voxel_size=voxel_size,
        px_to_world=px_to_world,
        field=field,
        field_origin=field_origin,
        field_spacing=field_spacing,
        psf_sigma=psf_sigma,
    )
    if beads:
        add_beads(
            signal,
            voxel_size=voxel_size,
            px_to_world=px_to_world,
            beads_world=beads_world,
            bead_brightness=bead_brightness,
            psf_sigma=psf_sigma,
        )
    return expose(
        signal,
        voxel_size=voxel_size,
        attenuation_length=attenuation_length,
        background=background,
        camera_offset=camera_offset,
        rng=rng,
        illumination_side=illumination_side,
        illumination_length=illumination_length,
    )
