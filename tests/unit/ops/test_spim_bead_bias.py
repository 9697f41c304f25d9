"""The intensity-gradient bias of bead centres is measured from the beads and removed."""

from __future__ import annotations

import numpy as np

from scopeflow.ops.spim.bead_bias import intensity_gradient_shift
from scopeflow.ops.spim.beads import detect_beads

SIGMA = np.array([1.0, 1.0, 1.3])  # x, y, z px
GRADIENT = np.array([0.004, 0.0, -0.015])  # d ln(intensity) / d px, x y z


def _beads(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian beads at sub-pixel positions under the field ``exp(GRADIENT . p)``."""
    rng = np.random.default_rng(seed)
    shape = (48, 64, 64)
    pts: list[np.ndarray] = []
    while len(pts) < 120:
        p = rng.uniform([6, 6, 6], [58, 58, 42])
        if all(np.linalg.norm((p - q) / SIGMA) > 8 for q in pts):
            pts.append(p)
    xyz = np.array(pts)
    z, y, x = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    vol = np.zeros(shape)
    for p, b in zip(xyz, rng.uniform(0.5, 1.5, len(xyz)), strict=True):
        sl = tuple(slice(max(int(c) - 8, 0), int(c) + 9) for c in p[::-1])
        d2 = sum(((g[sl] - c) / s) ** 2 for g, c, s in zip((x, y, z), p, SIGMA, strict=True))
        vol[sl] += 1000.0 * b * np.exp(-0.5 * d2)
    vol *= np.exp(GRADIENT[0] * x + GRADIENT[2] * z)
    noisy = rng.poisson(vol + 20.0).astype(np.uint16)
    return noisy, xyz


def test_gradient_and_psf_variance_are_measured() -> None:
    vol, _ = _beads()
    found = detect_beads(vol, anisotropy=1.0, threshold=0.02).xyz
    bias = intensity_gradient_shift(vol, found)
    assert bias.beads_used >= 100
    np.testing.assert_allclose(bias.gradient, GRADIENT, atol=0.0015)
    np.testing.assert_allclose(bias.variance, SIGMA**2, rtol=0.15)
    np.testing.assert_allclose(bias.shift, SIGMA**2 * GRADIENT, atol=0.004)


def test_correction_removes_the_common_shift() -> None:
    vol, xyz = _beads(seed=1)
    found = detect_beads(vol, anisotropy=1.0, threshold=0.02).xyz
    nearest = np.argmin(np.linalg.norm(found[:, None] - xyz[None], axis=2), axis=1)
    before = (found - xyz[nearest]).mean(axis=0)
    after = (found - intensity_gradient_shift(vol, found).shift - xyz[nearest]).mean(axis=0)
    assert abs(before[2]) > 0.015  # the shift is there: s_z^2 g_z = -0.025 px
    # what is left is the localisation noise of the mean over ~120 beads (~0.005 px)
    assert abs(after[2]) < 0.3 * abs(before[2]) and np.abs(after).max() < 0.01, (before, after)


def test_too_few_beads_give_no_shift() -> None:
    vol, xyz = _beads()
    bias = intensity_gradient_shift(vol, xyz[:5])
    assert bias.beads_used == 5 and not bias.shift.any()
