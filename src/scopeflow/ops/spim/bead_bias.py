"""Correction of the shift an intensity gradient gives every bead's apparent centre.

A bead imaged through a PSF of variance ``s_d^2`` (per axis ``d``, pixels) and multiplied by a
smooth intensity field ``exp(g . p)`` (depth attenuation along the detection axis, a one-sided
light sheet along x) appears as a Gaussian whose centre is moved by ``s_d^2 g_d``: the product
of ``exp(-(p - c)^2 / 2 s^2)`` and ``exp(g p)`` is a Gaussian centred at ``c + s^2 g``. Sub-pixel
fits (quadratic on the DoG, Gaussian) find that moved centre, so beads seen by two views from
different directions disagree by a few hundredths of a pixel, the same for every bead: a bias
that registration cannot average away (it dominated the registration error on the synthetic
data, 0.069 px, against 0.009 px without attenuation; see docs/spim.md).

:func:`intensity_gradient_shift` measures both factors from the view's own beads:

* ``g``: least-squares fit of ``ln(peak - local background)`` against the beads' positions
  (bead brightnesses vary, but not with position, so the slope is the field's), with one
  round of rejecting fits residuals beyond 3 MADs;
* ``s_d^2``: second moment of the mean background-free profile through the beads along each
  axis, less the ``1/12`` px^2 that centring each profile on its nearest voxel adds.

The correction subtracts ``s^2 g`` from every position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["GradientShift", "intensity_gradient_shift"]

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class GradientShift:
    """The bias of one view's bead positions (``x, y, z`` pixels) and what it was made of."""

    shift: F64
    gradient: F64
    variance: F64
    beads_used: int

    def to_dict(self) -> dict[str, object]:
        """JSON-able form (a completion record's)."""
        return {
            "shift_px": np.round(self.shift, 5).tolist(),
            "log_gradient_per_px": np.round(self.gradient, 6).tolist(),
            "psf_variance_px2": np.round(self.variance, 4).tolist(),
            "beads_used": self.beads_used,
        }


def intensity_gradient_shift(
    volume: ArrayLike, xyz: ArrayLike, *, radius: tuple[int, int, int] = (4, 4, 6)
) -> GradientShift:
    """Apparent shift ``s^2 g`` of a view's beads (subtract it from their positions).

    Parameters
    ----------
    volume : (Z, Y, X) array_like
        The view.
    xyz : (N, 3) array_like
        Bead positions ``(x, y, z)`` in pixels (sub-pixel).
    radius : (int, int, int)
        Half length of the profiles along x, y and z (pixels): 3 PSF sigmas or more.

    Returns
    -------
    GradientShift
        Zero shift when fewer than 20 beads lie ``radius`` inside the volume.
    """
    vol = np.asarray(volume)
    pts = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    r = np.asarray(radius, dtype=int)
    upper = np.array(vol.shape[::-1]) - 1 - r
    centre = np.rint(pts).astype(int)
    keep = np.all((centre >= r) & (centre <= upper), axis=1)
    centre, pts = centre[keep], pts[keep]
    zero = np.zeros(3)
    if len(centre) < 20:
        return GradientShift(zero, zero, zero, len(centre))
    profiles = [_profiles(vol, centre, d, int(r[d])) for d in range(3)]
    background = np.min([p.min(axis=1) for p in profiles], axis=0)
    peak = vol[centre[:, 2], centre[:, 1], centre[:, 0]].astype(np.float64) - background
    ok = peak > 0
    if ok.sum() < 20:
        return GradientShift(zero, zero, zero, int(ok.sum()))
    gradient = _log_gradient(pts[ok], np.log(peak[ok]))
    variance = np.array(
        [_variance(profiles[d][ok] - background[ok, None]) for d in range(3)], dtype=np.float64
    )
    return GradientShift(variance * gradient, gradient, variance, int(ok.sum()))


def _profiles(vol: NDArray[np.generic], centre: NDArray[np.int_], axis: int, r: int) -> F64:
    """``(N, 2r + 1)`` intensities along ``axis`` (0 = x) through each bead's voxel."""
    steps = np.arange(-r, r + 1)
    idx = [np.repeat(centre[:, d : d + 1], len(steps), axis=1) for d in range(3)]
    idx[axis] = idx[axis] + steps[None, :]
    return vol[idx[2], idx[1], idx[0]].astype(np.float64)


def _log_gradient(pts: F64, log_peak: F64) -> F64:
    """Slope of ``log_peak`` against ``(x, y, z)``, refitted once without 3-MAD outliers."""
    a = np.column_stack([np.ones(len(pts)), pts])
    coef = np.linalg.lstsq(a, log_peak, rcond=None)[0]
    res = log_peak - a @ coef
    mad = np.median(np.abs(res - np.median(res))) * 1.4826
    inl = np.abs(res) <= 3.0 * max(mad, 1e-12)
    if inl.sum() >= 20:
        coef = np.linalg.lstsq(a[inl], log_peak[inl], rcond=None)[0]
    out: F64 = np.asarray(coef[1:], dtype=np.float64)
    return out


def _variance(profiles: F64) -> float:
    """PSF variance (px^2) from the mean normalised profile.

    The tails (background, noise, neighbours) would inflate a second moment, so the variance
    comes from the curvature of the log of the profile's central 5 samples (a Gaussian's log
    is a parabola ``-x^2 / 2 s^2``) after removing the baseline of its two ends; less the
    ``1/12`` px^2 of centring each bead on its nearest voxel.
    """
    total = profiles.sum(axis=1)
    good = total > 0
    mean = (profiles[good] / total[good, None]).mean(axis=0)
    mean = mean - 0.5 * (mean[0] + mean[-1])
    c = len(mean) // 2
    core = mean[c - 2 : c + 3]
    if (core <= 0).any():
        return 0.0
    a = float(np.polyfit(np.arange(-2, 3), np.log(core), 2)[0])
    if a >= 0:
        return 0.0
    return max(-1.0 / (2.0 * a) - 1.0 / 12.0, 0.0)
