"""Imaging-flow-cytometry (IFC) images: one cell per small multi-channel image.

Rendering is vectorised over a batch of images. Each cell is an ellipse (random size,
elongation, orientation) with a slightly wavy outline, roughly centred; its nucleus is a smaller
ellipse inside it. Channels (photons, then shot and read noise and ``uint16``; the shot noise
uses the Gaussian approximation of Poisson noise, variance = mean, which is ~10x faster than
exact Poisson draws at this size):

``brightfield``
    bright background with a gradient; the cell slightly darker with a bright outer halo and a
    dark inner rim, the nucleus a little darker still.
``nucleus``
    the nucleus, textured.
``cytoplasm``
    the cell body, dimmer over the nucleus.
``spots``
    0-8 diffraction-limited spots inside the cell.
``dim``
    a faint uniform cell signal close to the background.
``darkfield``
    side scatter: granular texture inside the cell, brighter at its rim, dark background.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

IFC_CHANNELS = ("brightfield", "nucleus", "cytoplasm", "spots", "dim", "darkfield")
IFC_SIZE = 90
IFC_PIXEL_SIZE = 0.33
MAX_SPOTS = 8
READ_NOISE = 3.0

F32 = NDArray[np.float32]


def _sigmoid(x: NDArray[Any]) -> F32:
    out: F32 = (1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))).astype(np.float32)
    return out


def _ellipse_coords(
    xx: F32, yy: F32, cx: F32, cy: F32, theta: F32
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Coordinates ``(u, v)`` of every pixel in the frames of B ellipses, ``(B, H, W)`` each."""
    dx = xx[None] - cx[:, None, None]
    dy = yy[None] - cy[:, None, None]
    c = np.cos(theta)[:, None, None]
    s = np.sin(theta)[:, None, None]
    return dx * c + dy * s, -dx * s + dy * c


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> F32:
    """Unit-variance Gaussian noise smoothed over the last two axes."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    sig = (0.0,) * (len(shape) - 2) + (sigma, sigma)
    out = ndimage.gaussian_filter(noise, sig)
    std = float(out.std()) or 1.0
    scaled: F32 = (out / std).astype(np.float32)
    return scaled


def render_ifc_batch(
    rng: np.random.Generator, b: int
) -> tuple[NDArray[np.uint16], NDArray[np.uint8]]:
    """Render ``b`` single-cell images.

    Parameters
    ----------
    rng
        Random generator (all randomness of the batch comes from it).
    b
        Batch size.

    Returns
    -------
    images : numpy.ndarray
        ``(b, 6, 90, 90)`` ``uint16``, channels :data:`IFC_CHANNELS`.
    labels : numpy.ndarray
        ``(b, 90, 90)`` ``uint8``, 1 = the cell, 0 = background.
    """
    n = IFC_SIZE
    f32 = np.float32
    yy, xx = np.mgrid[0:n, 0:n].astype(f32)
    centre = (n - 1) / 2.0
    cx = (centre + np.clip(rng.normal(0, 1.5, b), -4, 4)).astype(f32)
    cy = (centre + np.clip(rng.normal(0, 1.5, b), -4, 4)).astype(f32)
    a = rng.uniform(11.0, 20.0, b).astype(f32)
    bb = (a * rng.uniform(0.7, 1.0, b)).astype(f32)
    theta = rng.uniform(0, np.pi, b).astype(f32)
    amp = rng.uniform(0, 0.04, (b, 3)).astype(f32)
    phase = rng.uniform(0, 2 * np.pi, (b, 3)).astype(f32)

    u, v = _ellipse_coords(xx, yy, cx, cy, theta)
    un, vn = u / a[:, None, None], v / bb[:, None, None]
    rho = np.sqrt(un * un + vn * vn)
    phi = np.arctan2(vn, un)
    outline = np.ones_like(rho)
    for k in range(3):
        outline += amp[:, k, None, None] * np.cos((k + 2) * phi + phase[:, k, None, None])
    rho_n = rho / outline
    labels = (rho_n < 1.0).astype(np.uint8)
    r_eff = np.sqrt(a * bb)[:, None, None]
    cell = _sigmoid((1.0 - rho_n) * r_eff / 0.7)

    # nucleus: smaller ellipse inside the cell
    off_u = rng.uniform(-0.25, 0.25, b).astype(f32) * a
    off_v = rng.uniform(-0.25, 0.25, b).astype(f32) * bb
    ct, st = np.cos(theta), np.sin(theta)
    ncx, ncy = cx + off_u * ct - off_v * st, cy + off_u * st + off_v * ct
    na = (a * rng.uniform(0.4, 0.6, b)).astype(f32)
    nb = (bb * rng.uniform(0.45, 0.65, b)).astype(f32)
    ntheta = (theta + rng.normal(0, 0.3, b)).astype(f32)
    nu, nv = _ellipse_coords(xx, yy, ncx, ncy, ntheta)
    nrho = np.sqrt((nu / na[:, None, None]) ** 2 + (nv / nb[:, None, None]) ** 2)
    nucleus = _sigmoid((1.0 - nrho) * np.sqrt(na * nb)[:, None, None] / 0.8)

    tex = _smooth_noise(rng, (b, n, n), 2.0)
    grain = _smooth_noise(rng, (b, n, n), 0.7)
    ring_out = np.exp(-(((rho_n - 1.08) * r_eff / 1.2) ** 2))
    ring_in = np.exp(-(((rho_n - 0.93) * r_eff / 1.0) ** 2))

    def level(mean: float, spread: float) -> F32:
        return (mean * rng.lognormal(0.0, spread, b)).astype(f32)[:, None, None]

    photons = np.empty((b, len(IFC_CHANNELS), n, n), dtype=f32)
    grad = rng.uniform(-0.04, 0.04, (b, 2)).astype(f32)
    bg = 900.0 * (
        1.0
        + grad[:, 0, None, None] * (xx - centre) / centre
        + grad[:, 1, None, None] * (yy - centre) / centre
    )
    photons[:, 0] = bg * (
        1.0 - 0.10 * cell - 0.06 * nucleus + 0.20 * ring_out - 0.25 * ring_in + 0.03 * tex * cell
    )
    photons[:, 1] = 15.0 + level(1500.0, 0.3) * nucleus * (1.0 + 0.15 * tex)
    photons[:, 2] = 20.0 + level(500.0, 0.4) * cell * (1.0 - 0.5 * nucleus) * (1.0 + 0.2 * tex)

    spots = np.zeros((b, n, n), dtype=f32)
    n_spots = np.minimum(rng.poisson(3.0, b), MAX_SPOTS)
    for k in range(MAX_SPOTS):
        r = 0.75 * np.sqrt(rng.uniform(0, 1, b))
        ang = rng.uniform(0, 2 * np.pi, b)
        su, sv = r * a * np.cos(ang), r * bb * np.sin(ang)
        sx, sy = cx + su * ct - sv * st, cy + su * st + sv * ct
        spot_amp = np.where(k < n_spots, 600.0 * rng.lognormal(0.0, 0.3, b), 0.0).astype(f32)
        d2 = (xx[None] - sx[:, None, None]) ** 2 + (yy[None] - sy[:, None, None]) ** 2
        spots += spot_amp[:, None, None] * np.exp(-d2 / (2 * 1.1**2))
    photons[:, 3] = 10.0 + 0.05 * photons[:, 2] + spots
    photons[:, 4] = 30.0 + level(40.0, 0.5) * cell
    dark = level(300.0, 0.4)
    photons[:, 5] = 8.0 + dark * cell * np.maximum(0.0, 1.0 + 0.8 * grain) + 0.5 * dark * ring_in

    photons[:, 1:] = ndimage.gaussian_filter(photons[:, 1:], (0, 0, 0.8, 0.8))
    np.maximum(photons, 0.0, out=photons)
    # shot + read noise, Gaussian approximation of Poisson: variance = mean + read noise^2
    noise = rng.standard_normal(photons.shape, dtype=f32)
    noise *= np.sqrt(photons + f32(READ_NOISE**2))
    photons += noise
    np.rint(photons, out=photons)
    images = np.clip(photons, 0, np.iinfo(np.uint16).max).astype(np.uint16)
    return images, labels
