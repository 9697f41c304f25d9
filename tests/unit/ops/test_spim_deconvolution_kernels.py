"""Richardson-Lucy on the CPU: compiled point-wise steps and buffered FFTs against plain NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from scopeflow.ops.spim.deconvolution import (
    _Convolver,
    _reflect_pad,
    _Step,
    _update,
    deconvolve_views,
)


def _psf(sigma_zyx: tuple[float, float, float], shape: tuple[int, int, int]) -> np.ndarray:
    k = np.zeros(shape)
    k[tuple(n // 2 for n in shape)] = 1.0
    return ndimage.gaussian_filter(k, sigma_zyx)


@pytest.mark.parametrize(
    ("shape", "half"),
    [
        ((9, 12, 10), (3, 2, 4)),
        ((5, 6, 7), (0, 1, 2)),
        ((4, 3, 9), (4, 2, 3)),
        ((2, 2, 2), (1, 1, 1)),
    ],
)
def test_reflect_padding_in_place_is_numpys(
    shape: tuple[int, int, int], half: tuple[int, int, int]
) -> None:
    rng = np.random.default_rng(0)
    vol = rng.random(shape).astype(np.float32)
    buf = np.full([n + 2 * h + 3 for n, h in zip(shape, half, strict=True)], -1.0, np.float32)
    buf[tuple(slice(h, h + n) for h, n in zip(half, shape, strict=True))] = vol
    _reflect_pad(buf, half, shape)
    padded = np.pad(vol, [(h, h) for h in half], mode="reflect")
    np.testing.assert_array_equal(buf[tuple(slice(0, n) for n in padded.shape)], padded)
    assert (buf[tuple(slice(n, None) for n in padded.shape)] == -1).all()  # the rest untouched


def test_buffered_convolution_equals_the_plain_one() -> None:
    rng = np.random.default_rng(1)
    vol = rng.random((21, 17, 19)).astype(np.float32)
    kernel = _psf((2.0, 1.0, 1.5), (9, 7, 11)).astype(np.float32)
    conv = _Convolver(np, vol.shape, kernel.shape)
    spectrum = conv.spectrum(kernel)
    plain = conv(vol, spectrum)
    conv.interior()[...] = vol
    full, off = conv.convolve_interior(spectrum)
    sl = tuple(slice(o, o + n) for o, n in zip(off, vol.shape, strict=True))
    np.testing.assert_allclose(full[sl], plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lam", [0.0, 0.006])
def test_compiled_update_equals_the_array_module_update(lam: float) -> None:
    rng = np.random.default_rng(2)
    shape = (20, 24, 22)
    psf = _psf((2.0, 1.0, 1.0), (9, 7, 7))
    psi = rng.uniform(1.0, 500.0, shape).astype(np.float32)
    phi = rng.poisson(200.0, shape).astype(np.float32)
    phi[:, :, :5] = 0  # no data there: q = 1
    w = rng.uniform(0.0, 1.0, shape).astype(np.float32)
    k = [psf.astype(np.float32)]
    opts = {"lam": lam, "top": float(phi.max()), "min_intensity": 1e-4}
    with _Step(np, k, k, threads=1, **opts) as step:
        c, f1, f2 = step.convolver(shape)
        fast = step.update(psi, phi, w, (c, f1[0], f2[0]), out=None)
    plain = _update(psi, phi, w, conv=c, f1=f1[0], f2=f2[0], **opts)
    assert fast.dtype == np.float32 and plain.dtype == np.float32
    # FFTs of other plans differ by float32 rounding (both Tikhonov forms are cancellation-free)
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-6 * float(plain.max()))


def test_threads_change_nothing() -> None:
    rng = np.random.default_rng(3)
    shape = (24, 20, 22)
    psfs = [_psf((2.0, 1.0, 1.0), (9, 7, 7)), _psf((1.0, 1.0, 2.0), (9, 7, 7))]
    views = [rng.poisson(100.0, shape).astype(np.float32) for _ in psfs]
    weights = [rng.uniform(0.1, 1.0, shape).astype(np.float32) for _ in psfs]
    one = deconvolve_views(views, weights, psfs, iterations=2)
    two = deconvolve_views(views, weights, psfs, iterations=2, threads=2)
    np.testing.assert_allclose(two, one, rtol=1e-6)
    blocks = deconvolve_views(views, weights, psfs, iterations=2, block=10, threads=2)
    np.testing.assert_allclose(blocks, one, rtol=1e-4, atol=1e-5 * float(one.max()))
