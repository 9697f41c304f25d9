"""Multi-view Richardson-Lucy deconvolution (Preibisch et al. 2014), NumPy or CuPy.

All views are given on the output grid (each view resampled there, with its blending weights)
together with its PSF in that grid's orientation. The estimate ``psi`` is updated view by view
(sequential, "OSEM"-like):

``q_v = phi_v / (psi * P_v)`` (1 where the view has no data), ``u_v = q_v * K_v``,
``psi_new = psi * u_v``, optionally Tikhonov-regularised
``(sqrt(1 + 2 lambda x) - 1) / lambda`` on ``x = psi_new / max`` (lambda = 0.006 default),
floored at ``min_intensity``, and blended in with the view's weight:
``psi <- psi + w_v (psi_new - psi)``.

``*`` is convolution (FFT, with the kernels' spectra computed once per shape). The back-projection
kernel ``K_v`` depends on the PSF type [1]_:

``independent``
    ``K_v = P_v^*`` (``^*``: mirrored), classic sequential multi-view RL.
``efficient_bayesian``
    ``K_v = P_v^* prod_{w != v} (P_v^* * P_w * P_w^*)`` (normalised to sum 1).
``optimization_i`` (default)
    ``K_v = [P_v prod_{w != v} (P_v * P_w^*)]^*``.
``optimization_ii``
    ``K_v = [P_v^N]^*`` (``N`` views).

Weights: each view's blending weights normalised to sum to 1 over views at each voxel, then
multiplied by ``osem`` (OSEM speed-up, 1 = none; ``number of views`` = maximal) and clipped at 1.

References
----------
.. [1] Preibisch S, Amat F, Stamataki E, Sarov M, Singer RH, Myers E, Tomancak P (2014)
   "Efficient Bayesian-based multiview deconvolution", Nat. Methods 11: 645-648.
   :DOI:`10.1038/nmeth.2929`
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import fft as sfft

from scopeflow.core.errors import ConfigError

__all__ = [
    "PSF_TYPES",
    "array_module",
    "backprojection_kernels",
    "deconvolve_views",
    "fwhm",
    "normalise_weights",
]

PSF_TYPES = ("independent", "efficient_bayesian", "optimization_i", "optimization_ii")
F32 = NDArray[np.float32]


def array_module(gpu: bool | None = None) -> Any:
    """CuPy when ``gpu`` is not False and CuPy with a GPU is available, else NumPy."""
    if gpu is False:
        return np
    try:
        import cupy  # type: ignore[import-not-found]

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return cupy
    except Exception:  # no CuPy, or no usable GPU
        pass
    if gpu:
        raise ConfigError("deconvolution", [("gpu", "CuPy with a CUDA GPU is not available")])
    return np


def _norm(k: NDArray[Any]) -> NDArray[Any]:
    total = float(k.sum())
    if not total > 0:
        raise ConfigError("deconvolution", [("psf", "a PSF must have a positive sum")])
    out: NDArray[Any] = (k / total).astype(np.float32)
    return out


def _mirror(k: NDArray[Any]) -> NDArray[Any]:
    return np.ascontiguousarray(k[::-1, ::-1, ::-1])


def _conv_same(a: NDArray[Any], k: NDArray[Any]) -> NDArray[Any]:
    """Convolution of two small kernels, the result the shape of ``a`` (centred)."""
    full = sfft.irfftn(
        sfft.rfftn(a, [a.shape[i] + k.shape[i] - 1 for i in range(3)])
        * sfft.rfftn(k, [a.shape[i] + k.shape[i] - 1 for i in range(3)]),
        [a.shape[i] + k.shape[i] - 1 for i in range(3)],
    )
    start = [(k.shape[i] - 1) // 2 for i in range(3)]
    out: NDArray[Any] = full[tuple(slice(s, s + n) for s, n in zip(start, a.shape, strict=True))]
    clipped: NDArray[Any] = np.maximum(out, 0.0)
    return clipped


def backprojection_kernels(
    psfs: Sequence[ArrayLike], psf_type: str = "optimization_i"
) -> list[F32]:
    """The kernels ``K_v`` (see the module docstring), each normalised to sum 1.

    Parameters
    ----------
    psfs : sequence of (z, y, x) array_like
        One PSF per view on the output grid, odd sizes, all the same shape.
    psf_type : {'independent', 'efficient_bayesian', 'optimization_i', 'optimization_ii'}
        How the views' PSFs are combined.
    """
    if psf_type not in PSF_TYPES:
        raise ConfigError("deconvolution", [("psf_type", f"expected one of {PSF_TYPES}")])
    p = [_norm(np.asarray(k, dtype=np.float64)) for k in psfs]
    if any(k.shape != p[0].shape or min(s % 2 for s in k.shape) == 0 for k in p):
        raise ConfigError("deconvolution", [("psf", "PSFs need one shape with odd sizes")])
    n = len(p)
    out = []
    for v, pv in enumerate(p):
        if n == 1 or psf_type == "independent":
            k = _mirror(pv)
        elif psf_type == "efficient_bayesian":
            k = _mirror(pv).astype(np.float64)
            for w in range(n):
                if w != v:
                    k = k * _conv_same(_conv_same(_mirror(pv), p[w]), _mirror(p[w]))
        elif psf_type == "optimization_i":
            k = pv.astype(np.float64)
            for w in range(n):
                if w != v:
                    k = k * _conv_same(pv, _mirror(p[w]))
            k = _mirror(k)
        else:
            k = _mirror(pv.astype(np.float64) ** n)
        out.append(_norm(k))
    return out


def normalise_weights(weights: Sequence[ArrayLike], osem: float = 1.0) -> list[F32]:
    """Per-voxel weights summing to 1 over views, times ``osem``, clipped to ``[0, 1]``."""
    w = np.stack([np.asarray(x, dtype=np.float32) for x in weights])
    total = w.sum(axis=0)
    np.divide(w, total, out=w, where=total > 0)
    w *= np.float32(osem)
    np.clip(w, 0.0, 1.0, out=w)
    return list(w)


class _Convolver:
    """Same-size convolution of volumes of one shape with fixed kernels (spectra cached)."""

    def __init__(self, xp: Any, shape: tuple[int, ...], kshape: tuple[int, ...]) -> None:
        self.xp = xp
        self.shape = shape
        self.half = [k // 2 for k in kshape]
        self.fshape = [
            sfft.next_fast_len(s + k - 1, real=True) for s, k in zip(shape, kshape, strict=True)
        ]
        self.fft = sfft if xp is np else xp.fft  # scipy's FFT is the faster on the CPU
        self.axes = (0, 1, 2)

    def spectrum(self, kernel: NDArray[Any]) -> Any:
        k = self.xp.asarray(kernel, dtype=self.xp.float32)
        return self.fft.rfftn(k, s=self.fshape, axes=self.axes)

    def __call__(self, vol: Any, spectrum: Any) -> Any:
        xp = self.xp
        pad = [(h, h) for h in self.half]
        padded = xp.pad(vol, pad, mode="reflect")  # no dark border from zero padding
        spec = self.fft.rfftn(padded, s=self.fshape, axes=self.axes) * spectrum
        full = self.fft.irfftn(spec, s=self.fshape, axes=self.axes)
        sl = tuple(slice(2 * h, 2 * h + n) for h, n in zip(self.half, self.shape, strict=True))
        return full[sl].astype(xp.float32, copy=False)


def deconvolve_views(
    views: Sequence[ArrayLike],
    weights: Sequence[ArrayLike],
    psfs: Sequence[ArrayLike],
    *,
    iterations: int = 10,
    psf_type: str = "optimization_i",
    lam: float = 0.006,
    osem: float = 1.0,
    min_intensity: float = 1e-4,
    init: ArrayLike | None = None,
    gpu: bool | None = False,
    block: int | None = None,
) -> F32:
    """Multi-view Richardson-Lucy deconvolution of views resampled onto one grid.

    Parameters
    ----------
    views : sequence of (z, y, x) array_like
        Each view on the output grid (0 where it has no data).
    weights : sequence of (z, y, x) array_like
        Blending weights of each view on the grid (normalised here).
    psfs : sequence of (z, y, x) array_like
        Each view's PSF on the grid (odd sizes, one shape).
    iterations : int
        Full passes over the views.
    psf_type : str
        See the module docstring.
    lam : float
        Tikhonov regularisation (0: none).
    osem : float
        OSEM speed-up factor of the weights (1 = none).
    min_intensity : float
        Floor of the estimate.
    init : (z, y, x) array_like, optional
        Start (default: the weighted average of the views).
    gpu : bool or None
        Use CuPy (True: required; None: when available; False: NumPy).
    block : int, optional
        Update block by block (cubes of this many voxels, each computed on a window two
        kernel radii larger): the FFTs then need memory for one window instead of the whole
        volume, and the result is the same as without blocks.

    Returns
    -------
    numpy.ndarray
        The deconvolved volume (float32, finite, ``>= min_intensity``).
    """
    if iterations < 0 or lam < 0 or osem <= 0:
        raise ConfigError(
            "deconvolution", [("iterations/lambda/osem", "must be >= 0 / >= 0 / > 0")]
        )
    xp = array_module(gpu)
    phi = [xp.asarray(np.asarray(v, dtype=np.float32)) for v in views]
    w_np = normalise_weights(weights, osem)
    w = [xp.asarray(x) for x in w_np]
    k1 = [_norm(np.asarray(p, dtype=np.float64)) for p in psfs]
    k2 = backprojection_kernels(psfs, psf_type)
    if init is None:
        total = sum(wi * p for wi, p in zip(w, phi, strict=True))
        wsum = sum(w)
        psi = xp.where(wsum > 0, total / xp.maximum(wsum, 1e-12), 0)
    else:
        psi = xp.asarray(np.asarray(init, dtype=np.float32))
    psi = xp.maximum(psi.astype(xp.float32), min_intensity)
    top = float(max(float(p.max()) for p in phi)) or 1.0
    shape = tuple(int(n) for n in phi[0].shape)
    halo = 2 * (max(k1[0].shape) // 2)  # psi within 2 kernel radii decides a voxel's update
    blocks = list(_blocks(shape, block, halo)) if block else [None]
    kernels: dict[tuple[int, ...], tuple[_Convolver, list[Any], list[Any]]] = {}

    def convolver(wshape: tuple[int, ...]) -> tuple[_Convolver, list[Any], list[Any]]:
        if wshape not in kernels:
            c = _Convolver(xp, wshape, k1[0].shape)
            kernels[wshape] = (c, [c.spectrum(k) for k in k1], [c.spectrum(k) for k in k2])
        return kernels[wshape]

    opts: dict[str, float] = {"lam": lam, "top": top, "min_intensity": min_intensity}
    for _ in range(iterations):
        for v in range(len(phi)):
            if blocks == [None]:
                c, f1, f2 = convolver(shape)
                psi = _update(psi, phi[v], w[v], conv=c, f1=f1[v], f2=f2[v], **opts)
                continue
            new_psi = psi.copy()
            for win, inner, dst in blocks:  # type: ignore[misc]
                c, f1, f2 = convolver(tuple(s.stop - s.start for s in win))
                part = _update(psi[win], phi[v][win], w[v][win], conv=c, f1=f1[v], f2=f2[v], **opts)
                new_psi[dst] = part[inner]
            psi = new_psi
    out = psi.get() if hasattr(psi, "get") else psi
    result: F32 = np.asarray(out, dtype=np.float32)
    return result


def _update(
    psi: Any,
    phi: Any,
    w: Any,
    *,
    conv: _Convolver,
    f1: Any,
    f2: Any,
    lam: float,
    top: float,
    min_intensity: float,
) -> Any:
    """One view's Richardson-Lucy update of ``psi`` (arrays of one window)."""
    xp = conv.xp
    blurred = conv(psi, f1)
    q = xp.where(phi > 0, phi / xp.maximum(blurred, 1e-12), 1.0)
    new = psi * conv(q.astype(xp.float32), f2)
    if lam > 0:
        new = (xp.sqrt(1.0 + 2.0 * lam * xp.maximum(new, 0) / top) - 1.0) / lam * top
    new = xp.where(xp.isfinite(new), xp.maximum(new, min_intensity), min_intensity)
    return (psi + w * (new - psi)).astype(xp.float32)


def _blocks(shape: tuple[int, ...], block: int, halo: int) -> Any:
    """``(window, inner, target)`` slices: blocks of ``block`` voxels, windows with ``halo``."""
    starts = [range(0, n, block) for n in shape]
    for z0 in starts[0]:
        for y0 in starts[1]:
            for x0 in starts[2]:
                win, inner, dst = [], [], []
                for a, n in zip((z0, y0, x0), shape, strict=True):
                    b = min(a + block, n)
                    lo, hi = max(0, a - halo), min(n, b + halo)
                    win.append(slice(lo, hi))
                    inner.append(slice(a - lo, b - lo))
                    dst.append(slice(a, b))
                yield tuple(win), tuple(inner), tuple(dst)


def fwhm(volume: ArrayLike, centre_zyx: Sequence[int], axis: int) -> float:
    """Full width at half maximum (voxels) of the profile through ``centre`` along ``axis``.

    Linear interpolation of the half-maximum crossings on both sides of the peak (background =
    the profile's minimum).
    """
    vol = np.asarray(volume, dtype=np.float64)
    idx: list[Any] = list(centre_zyx)
    idx[axis] = slice(None)
    prof = vol[tuple(idx)]
    c = int(centre_zyx[axis])
    base = float(prof.min())
    half = base + (float(prof[c]) - base) / 2.0

    def crossing(step: int) -> float:
        i = c
        while 0 <= i + step < len(prof) and prof[i + step] > half:
            i += step
        j = i + step
        if not 0 <= j < len(prof):
            return float(i)
        return float(i + step * (prof[i] - half) / (prof[i] - prof[j]))

    return float(crossing(1) - crossing(-1))
