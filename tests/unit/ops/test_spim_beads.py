"""Bead detection: DoG + quadratic sub-pixel localisation against known positions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.special import erf

from scopeflow.core.errors import ConfigError
from scopeflow.ops.spim.beads import detect_beads, difference_of_gaussian
from scopeflow.testing import make_spim_dataset
from scopeflow.testing._spim_truth import beads_in_view

SHAPE = (40, 72, 80)  # z, y, x


def _render(xyz: np.ndarray, amp: np.ndarray, sigma: tuple[float, float, float]) -> np.ndarray:
    """Pixel-integrated anisotropic Gaussians (sigma x, y, z) at sub-pixel ``xyz``."""
    vol = np.zeros(SHAPE)
    grids = [np.arange(n, dtype=np.float64) for n in SHAPE[::-1]]  # x, y, z
    for p, a in zip(xyz, amp, strict=True):
        prof = []
        for axis in range(3):
            edges = grids[axis] - p[axis]
            s = sigma[axis] * np.sqrt(2.0)
            prof.append(0.5 * (erf((edges + 0.5) / s) - erf((edges - 0.5) / s)))
        vol += a * prof[2][:, None, None] * prof[1][None, :, None] * prof[0][None, None, :]
    return vol


def _beads(rng: np.random.Generator, n: int) -> np.ndarray:
    """Sub-pixel positions at least 8 voxels from the faces and 9 from each other."""
    out: list[np.ndarray] = []
    lo, hi = np.array([8, 8, 6]), np.array(SHAPE[::-1]) - np.array([8, 8, 6]) - 1
    while len(out) < n:
        p = rng.uniform(lo, hi)
        if all(np.linalg.norm(p - q) > 9 for q in out):
            out.append(p)
    return np.array(out)


def _errors(found: np.ndarray, true: np.ndarray) -> np.ndarray:
    dist, _ = cKDTree(found).query(true)
    return dist


def test_sub_pixel_positions_of_isolated_beads() -> None:
    rng = np.random.default_rng(0)
    true = _beads(rng, 40)
    vol = _render(true, rng.uniform(500, 1500, len(true)), (1.2, 1.2, 1.2))
    det = detect_beads(vol, sigma=1.8, threshold=0.008)
    assert len(det) == len(true)
    assert det.converged.all()
    err = _errors(det.xyz, true)
    assert err.max() < 0.1 and err.mean() < 0.04, (err.mean(), err.max())
    assert (det.response > 0).all()


def test_noise_and_background_and_anisotropy() -> None:
    rng = np.random.default_rng(1)
    true = _beads(rng, 30)
    vol = _render(true, rng.uniform(2000, 4000, len(true)), (1.0, 1.0, 0.6))
    noisy = rng.poisson(vol + 20.0).astype(np.uint16) + 100
    det = detect_beads(noisy, sigma=1.5, threshold=0.02, anisotropy=1.6)
    err = _errors(det.xyz, true)
    assert (err < 0.5).mean() == 1.0, err
    assert err.mean() < 0.15
    extra = _errors(true, det.xyz)  # every detection is a true bead
    assert (extra < 1.0).all()


def test_threshold_downsampling_and_cap() -> None:
    rng = np.random.default_rng(2)
    true = _beads(rng, 20)
    amp = np.where(np.arange(20) < 10, 1000.0, 60.0)  # ten bright, ten dim
    vol = _render(true, amp, (1.4, 1.4, 1.4))
    bright = detect_beads(vol, threshold=0.1)  # dim ones respond ~0.025, bright ~0.41
    assert len(bright) == 10
    assert _errors(bright.xyz, true[:10]).max() < 0.1
    both = detect_beads(vol, threshold=0.0005)
    assert len(both) == 20
    capped = detect_beads(vol, threshold=0.0005, max_detections=10)
    assert _errors(capped.xyz, true[:10]).max() < 0.1  # the cap keeps the strongest
    half = detect_beads(vol, sigma=1.0, threshold=0.005, downsample_xy=2, image_sigma=0.3)
    err = _errors(half.xyz, true[:10])
    assert err.max() < 0.6, err


def test_dark_spots_with_find_min() -> None:
    rng = np.random.default_rng(3)
    true = _beads(rng, 10)
    vol = 2000.0 - _render(true, np.full(10, 1500.0), (1.2, 1.2, 1.2))
    dark = detect_beads(vol, find="min")
    assert len(dark) == 10 and (dark.response < 0).all()
    assert _errors(dark.xyz, true).max() < 0.1
    both = detect_beads(vol, find="both")  # the bright rings around dark spots count too
    assert _errors(both.xyz, true).max() < 0.1 and len(both) > len(dark)


def test_dog_is_zero_on_a_flat_volume_and_bad_parameters_are_listed() -> None:
    dog = difference_of_gaussian(np.full((9, 9, 9), 7.0))
    assert np.abs(dog).max() < 1e-4
    assert len(detect_beads(np.full((9, 9, 9), 7.0))) == 0
    with pytest.raises(ConfigError) as info:
        detect_beads(np.zeros((9, 9, 9)), sigma=0.4, k=0.9, threshold=-1)
    message = str(info.value)
    assert "sigma" in message and "k:" in message and "threshold" in message
    with pytest.raises(ConfigError, match=r"expected \(z, y, x\)"):
        detect_beads(np.zeros((9, 9)))
    with pytest.raises(ConfigError, match="find"):
        detect_beads(np.zeros((9, 9, 9)), find="up")


def test_beads_of_a_synthetic_spim_view(tmp_path_factory: pytest.TempPathFactory) -> None:
    out = tmp_path_factory.mktemp("spim")
    truth = make_spim_dataset(out, views=2, timepoints=1, shape=(32, 96, 96), seed=3)
    import tifffile

    vol = tifffile.imread(truth.path("tiff", 0, 0))
    det = detect_beads(vol, sigma=1.8, threshold=0.008, anisotropy=2.0)
    true = beads_in_view(truth, 0, 0, margin=4.0)  # detections closer to a face are dropped
    err = _errors(det.xyz, true)
    found = err < 1.0
    assert found.mean() >= 0.9, (found.mean(), len(true), len(det))
    assert np.median(err[found]) < 0.25, np.median(err[found])
