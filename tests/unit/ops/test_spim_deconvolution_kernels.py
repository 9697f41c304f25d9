"""Richardson-Lucy on the CPU: compiled point-wise steps and buffered FFTs against plain NumPy."""

from __future__ import annotations

import contextlib
import types
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from scipy import ndimage

from scopeflow.core.errors import ConfigError
from scopeflow.ops.spim._kernels import reflect_pad
from scopeflow.ops.spim.block_convolution import Convolver, default_backend, reflect_pad_arrays
from scopeflow.ops.spim.deconvolution import _split, _Step, deconvolve_views


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
        ((3, 9, 4), (2, 2, 3)),
        ((5, 6, 7), (1, 0, 2)),
        ((4, 5, 6), (2, 3, 0)),
    ],
)
def test_reflect_padding_in_place_is_numpys(
    shape: tuple[int, int, int], half: tuple[int, int, int]
) -> None:
    rng = np.random.default_rng(0)
    vol = rng.random(shape).astype(np.float32)
    buf = np.full([n + 2 * h + 3 for n, h in zip(shape, half, strict=True)], -1.0, np.float32)
    buf[tuple(slice(h, h + n) for h, n in zip(half, shape, strict=True))] = vol
    compiled = buf.copy()
    reflect_pad_arrays(buf, half, shape)
    padded = np.pad(vol, [(h, h) for h in half], mode="reflect")
    np.testing.assert_array_equal(buf[tuple(slice(0, n) for n in padded.shape)], padded)
    assert (buf[tuple(slice(n, None) for n in padded.shape)] == -1).all()  # the rest untouched
    if all(h < n for h, n in zip(half, shape, strict=True)):  # the compiled one, in two slabs
        cut = padded.shape[0] // 2
        reflect_pad(compiled, half, shape, 0, cut)
        reflect_pad(compiled, half, shape, cut, padded.shape[0])
        np.testing.assert_array_equal(compiled, buf)


needs_ducc0 = pytest.mark.skipif(
    default_backend() != "ducc0", reason="ducc0 (the `fft` extra) is not installed"
)
BACKENDS = [pytest.param("ducc0", marks=needs_ducc0), "scipy"]


@pytest.mark.parametrize("extra", [0, 3])
@pytest.mark.parametrize("pooled", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("block", [(21, 17, 19), (8, 9, 7), (6, 5, 4)])
def test_block_convolution_is_the_mirrored_convolution(
    block: tuple[int, int, int], backend: str, pooled: bool, extra: int
) -> None:
    """Every block against SciPy's mirrored convolution. ``extra`` planes of junk after the
    padding: with 0 the whole-volume block (21, 17, 19) is smaller than its transform and is
    copied into a zero-padded buffer; otherwise every window is a view of the volume."""
    with contextlib.ExitStack() as stack:
        _check_block_convolution(block, backend, pooled, extra, stack)


def _check_block_convolution(
    block: tuple[int, int, int],
    backend: str,
    pooled: bool,
    extra: int,
    stack: contextlib.ExitStack,
) -> None:
    rng = np.random.default_rng(1)
    vol = rng.random((21, 17, 19)).astype(np.float32)
    kernel = _psf((2.0, 1.0, 1.5), (9, 7, 11)).astype(np.float32)
    kernel[0, 0, 0] = 0.05  # not symmetric: a mirrored kernel would be caught
    # np.pad's 'reflect' is ndimage's 'mirror'; ndimage centres odd kernels as we do
    ref = ndimage.convolve(vol.astype(np.float64), kernel.astype(np.float64), mode="mirror")
    conv = Convolver(np, block, kernel.shape, workers=2, backend=backend)
    spectrum = conv.spectrum(kernel)
    normalised = conv.spectrum(kernel, normalised=True)
    # junk beyond the padding (the transform's extra planes may hold anything)
    padded = rng.uniform(
        -1e3, 1e3, [n + 2 * h + extra for n, h in zip(vol.shape, conv.half, strict=True)]
    )
    padded = padded.astype(np.float32)
    padded[tuple(slice(h, h + n) for h, n in zip(conv.half, vol.shape, strict=True))] = vol
    reflect_pad_arrays(padded, conv.half, vol.shape)
    if pooled:  # the spectra's product on threads
        conv.pool = stack.enter_context(ThreadPoolExecutor(2))
    for lo in [(0, 0, 0), (13, 8, 12), (15, 12, 15)]:  # blocks of every size, buffers reused
        ext = tuple(min(b, n - a) for a, b, n in zip(lo, block, vol.shape, strict=True))
        want = ref[tuple(slice(a, a + n) for a, n in zip(lo, ext, strict=True))]
        full, off = conv.convolve(padded, lo, ext, normalised)
        fast = full[tuple(slice(o, o + n) for o, n in zip(off, ext, strict=True))]
        np.testing.assert_allclose(fast, want, rtol=1e-4, atol=1e-5)
        plain = conv.convolve_plain(padded, lo, ext, spectrum)
        np.testing.assert_allclose(plain, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("lam", [0.0, 0.006])
@pytest.mark.parametrize("block", [None, 9])
def test_compiled_update_equals_the_array_module_update(lam: float, block: int | None) -> None:
    rng = np.random.default_rng(2)
    shape = (20, 24, 22)
    psfs = [_psf((2.0, 1.0, 1.0), (9, 7, 7)), _psf((1.0, 1.0, 2.0), (9, 7, 7))]
    start = rng.uniform(1.0, 500.0, shape).astype(np.float32)
    phi = rng.poisson(200.0, shape).astype(np.float32)
    phi[:, :, :5] = 0  # no data there: q = 1
    w = rng.uniform(0.0, 1.0, shape).astype(np.float32)
    k = [p.astype(np.float32) for p in psfs]
    opts = {"lam": lam, "top": float(phi.max()), "min_intensity": 1e-4}
    out = []
    for compiled in (True, False):
        with _Step(np, k, k[::-1], _split(shape, block), threads=1, compiled=compiled, **opts) as s:
            psi = s.padded(start)
            s.view(psi, phi, w, 0)
            s.view(psi, phi, w, 1)
            out.append(psi[s.interior].copy())
    fast, plain = out
    assert fast.dtype == np.float32 and plain.dtype == np.float32
    assert not np.allclose(fast, start, rtol=1e-3)  # two updates changed the estimate
    # ducc0's FFTs against SciPy's differ by float32 rounding (both Tikhonov forms are
    # cancellation-free): up to ~3e-6 of the maximum
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=5e-6 * float(plain.max()))


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


def test_on_iteration_is_called_after_each_pass() -> None:
    rng = np.random.default_rng(6)
    shape = (16, 18, 20)
    psfs = [_psf((2.0, 1.0, 1.0), (9, 7, 7)), _psf((1.0, 1.0, 2.0), (9, 7, 7))]
    views = [rng.poisson(100.0, shape).astype(np.float32) for _ in psfs]
    weights = [np.ones(shape, np.float32)] * 2
    seen: list[int] = []
    out = deconvolve_views(views, weights, psfs, iterations=3, on_iteration=seen.append)
    assert seen == [1, 2, 3]
    three = deconvolve_views(views, weights, psfs, iterations=3)
    np.testing.assert_array_equal(out, three)  # observing changes nothing


def test_fft_backends_agree_and_unknown_ones_are_refused() -> None:
    rng = np.random.default_rng(7)
    shape = (18, 16, 20)
    psfs = [_psf((2.0, 1.0, 1.0), (9, 7, 7)), _psf((1.0, 1.0, 2.0), (9, 7, 7))]
    views = [rng.poisson(100.0, shape).astype(np.float32) for _ in psfs]
    weights = [rng.uniform(0.1, 1.0, shape).astype(np.float32) for _ in psfs]
    scipy_fft = deconvolve_views(views, weights, psfs, iterations=2, fft="scipy", block=10)
    assert not np.allclose(scipy_fft, views[0], rtol=0.05)
    if default_backend() == "ducc0":
        ducc = deconvolve_views(views, weights, psfs, iterations=2, fft="ducc0", block=10)
        np.testing.assert_allclose(ducc, scipy_fft, rtol=1e-5, atol=5e-6 * float(ducc.max()))
    with pytest.raises(ConfigError, match="fftw"):
        deconvolve_views(views, weights, psfs, iterations=1, fft="fftw")


def test_without_ducc0_scipy_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from scopeflow.ops.spim import block_convolution

    monkeypatch.setattr(block_convolution, "ducc0", None)
    assert default_backend() == "scipy"
    assert Convolver(np, (8, 8, 8), (3, 3, 3)).backend == "scipy"
    with pytest.raises(ConfigError, match=r"'ducc0': expected one of the installed \('scipy',\)"):
        Convolver(np, (8, 8, 8), (3, 3, 3), backend="ducc0")
    gpu_like = types.SimpleNamespace(fft=np.fft)  # CuPy uses cuFFT: its ``fft`` is not checked
    assert Convolver(gpu_like, (8, 8, 8), (3, 3, 3), backend="ducc0").backend == "ducc0"


def test_array_module_path_runs_with_a_module_other_than_numpy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CuPy path's code (array-module operations, ``xp.fft``, the stream synchronised
    before ``on_iteration``), run on the CPU: NumPy behind a stand-in module, as no GPU is
    lent to these tests. It gives the compiled CPU path's result to float32 rounding. It
    checks the branches taken for a module other than NumPy; it cannot catch a stray ``np``
    call on the arrays (the stand-in's arrays are NumPy's), nor check CuPy itself."""
    from scopeflow.ops.spim import deconvolution

    synced: list[int] = []
    xp = types.ModuleType("gpu_stand_in")
    xp.__dict__.update({k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    stream = types.SimpleNamespace(synchronize=lambda: synced.append(1))
    xp.cuda = types.SimpleNamespace(get_current_stream=lambda: stream)  # type: ignore[attr-defined]

    monkeypatch.setattr(deconvolution, "array_module", lambda gpu: xp if gpu else np)
    rng = np.random.default_rng(8)
    shape = (18, 20, 16)
    psfs = [_psf((2.0, 1.0, 1.0), (9, 7, 7)), _psf((1.0, 1.0, 2.0), (9, 7, 7))]
    views = [rng.poisson(100.0, shape).astype(np.float32) for _ in psfs]
    weights = [rng.uniform(0.1, 1.0, shape).astype(np.float32) for _ in psfs]
    seen: list[tuple[int, int]] = []
    for block in (None, 10):
        gpu = deconvolve_views(
            views,
            weights,
            psfs,
            iterations=2,
            gpu=True,
            block=block,
            on_iteration=lambda i: seen.append((i, len(synced))),
        )
        cpu = deconvolve_views(views, weights, psfs, iterations=2, block=block)
        assert isinstance(gpu, np.ndarray) and gpu.dtype == np.float32
        np.testing.assert_allclose(gpu, cpu, rtol=1e-5, atol=5e-6 * float(cpu.max()))
    assert seen == [(1, 1), (2, 2), (1, 3), (2, 4)]  # synchronised before each call
