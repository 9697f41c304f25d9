"""Multi-view Richardson-Lucy: sharper beads than fusion, every PSF type, kernels, errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from scopeflow.core.errors import ConfigError
from scopeflow.ops.spim.deconvolution import (
    PSF_TYPES,
    backprojection_kernels,
    deconvolve_views,
    fwhm,
    normalise_weights,
)

SHAPE = (40, 40, 40)


def _gauss_psf(sigma_zyx: tuple[float, float, float], size: int = 15) -> np.ndarray:
    k = np.zeros((size,) * 3)
    k[(size // 2,) * 3] = 1.0
    return ndimage.gaussian_filter(k, sigma_zyx)


@pytest.fixture(scope="module")
def scene() -> dict[str, object]:
    rng = np.random.default_rng(0)
    truth = np.zeros(SHAPE)
    beads = []
    while len(beads) < 12:
        p = rng.integers(8, 32, 3)
        if all(np.abs(p - q).max() > 7 for q in beads):
            beads.append(p)
    for p in beads:
        truth[tuple(p)] = 5000.0
    psfs = [_gauss_psf((3.0, 1.0, 1.0)), _gauss_psf((1.0, 1.0, 3.0))]  # z- and x-elongated
    views = []
    for k in psfs:
        blurred = ndimage.convolve(truth, k, mode="constant") + 5.0
        views.append(rng.poisson(blurred).astype(np.float32))
    return {"truth": truth, "beads": beads, "psfs": psfs, "views": views}


def _mean_fwhm(vol: np.ndarray, beads: list[np.ndarray]) -> float:
    return float(np.mean([fwhm(vol, tuple(p), axis) for p in beads for axis in range(3)]))


@pytest.mark.parametrize("psf_type", PSF_TYPES)
def test_deconvolution_narrows_beads_by_more_than_30_percent(
    scene: dict[str, object], psf_type: str
) -> None:
    views, psfs, beads = scene["views"], scene["psfs"], scene["beads"]
    assert isinstance(views, list) and isinstance(psfs, list) and isinstance(beads, list)
    fused = (views[0] + views[1]) / 2.0
    ones = [np.ones(SHAPE, np.float32)] * 2
    out = deconvolve_views(views, ones, psfs, iterations=10, psf_type=psf_type)
    assert np.isfinite(out).all() and out.min() >= 0
    before, after = _mean_fwhm(fused, beads), _mean_fwhm(out, beads)
    assert after <= 0.7 * before, (psf_type, before, after)
    # flux is kept where the beads are (no ringing blow-up)
    assert 0.5 < out.sum() / fused.sum() < 1.5


def test_efficient_kernels_converge_faster_than_independent(scene: dict[str, object]) -> None:
    views, psfs, beads = scene["views"], scene["psfs"], scene["beads"]
    assert isinstance(views, list) and isinstance(psfs, list) and isinstance(beads, list)
    ones = [np.ones(SHAPE, np.float32)] * 2
    widths = {
        t: _mean_fwhm(deconvolve_views(views, ones, psfs, iterations=3, psf_type=t), beads)
        for t in ("independent", "optimization_i")
    }
    assert widths["optimization_i"] < widths["independent"], widths


def test_kernels_weights_and_bad_input() -> None:
    p = [_gauss_psf((2.0, 1.0, 1.0), 9), _gauss_psf((1.0, 1.0, 2.0), 9)]
    for t in PSF_TYPES:
        ks = backprojection_kernels(p, t)
        assert all(abs(float(k.sum()) - 1.0) < 1e-5 and k.shape == (9, 9, 9) for k in ks)
    ind = backprojection_kernels(p, "independent")
    np.testing.assert_allclose(ind[0], (p[0] / p[0].sum())[::-1, ::-1, ::-1], atol=1e-7)
    w = normalise_weights([np.full((2, 2, 2), 1.0), np.full((2, 2, 2), 3.0)], osem=2.0)
    np.testing.assert_allclose(w[0], 0.5)
    np.testing.assert_allclose(w[1], 1.0)  # 0.75 * 2, clipped
    with pytest.raises(ConfigError, match="psf_type"):
        backprojection_kernels(p, "wiener")
    with pytest.raises(ConfigError, match="odd"):
        backprojection_kernels([np.ones((4, 5, 5))], "independent")
    with pytest.raises(ConfigError, match="positive sum"):
        backprojection_kernels([np.zeros((3, 3, 3))], "independent")
    views = [np.ones((8, 20, 20), np.float32)] * 2
    for weights, init in (  # NaN planes came back, not an error
        ([np.ones((8, 20, 20))] * 2, np.ones((12, 20, 20))),
        ([np.ones((8, 20, 20)), np.ones((8, 20, 21))], None),
        ([np.ones((8, 20, 20))], None),
    ):
        with pytest.raises(ConfigError, match="one \\(z, y, x\\) shape"):
            deconvolve_views(views, weights, p, iterations=1, init=init)


def test_fwhm_of_a_gaussian() -> None:
    vol = np.zeros((31, 31, 31))
    vol[15, 15, 15] = 1.0
    vol = ndimage.gaussian_filter(vol, 2.0)
    assert fwhm(vol, (15, 15, 15), 0) == pytest.approx(2.3548 * 2.0, rel=0.05)


def test_blockwise_deconvolution_equals_the_whole_volume(scene: dict[str, object]) -> None:
    views, psfs = scene["views"], scene["psfs"]
    assert isinstance(views, list) and isinstance(psfs, list)
    rng = np.random.default_rng(5)
    weights = [rng.uniform(0.2, 1.0, SHAPE).astype(np.float32) for _ in views]
    whole = deconvolve_views(views, weights, psfs, iterations=3, lam=0.006)
    blocks = deconvolve_views(views, weights, psfs, iterations=3, lam=0.006, block=16)
    # float32 FFTs of other sizes: differences of ~1e-6 of the maximum
    np.testing.assert_allclose(blocks, whole, rtol=1e-4, atol=1e-5 * float(whole.max()))
