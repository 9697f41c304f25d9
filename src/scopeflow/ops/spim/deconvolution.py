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

The volume may be split into blocks (``block``): each convolution then transforms one block
with one kernel radius of margin, and the result is the same as for the whole volume (see
``_Step``). On the CPU the point-wise steps run as two compiled loops (Numba, one pass each:
the ratio ``q_v`` written into the padded input of the second convolution, then the update of
``psi`` in place), the FFTs (ducc0's or SciPy's, :mod:`~scopeflow.ops.spim.block_convolution`)
use ``threads`` workers and the loops run in ``threads`` slabs of planes; with CuPy, array
operations and cuFFT do the same steps.

References
----------
.. [1] Preibisch S, Amat F, Stamataki E, Sarov M, Singer RH, Myers E, Tomancak P (2014)
   "Efficient Bayesian-based multiview deconvolution", Nat. Methods 11: 645-648.
   :DOI:`10.1038/nmeth.2929`
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import fft as sfft

from scopeflow.core.errors import ConfigError
from scopeflow.ops.spim.block_convolution import Convolver, reflect_pad_arrays

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
I3 = tuple[int, int, int]


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
    threads: int = 1,
    fft: str | None = None,
    on_iteration: Callable[[int], None] | None = None,
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
        Convolve block by block, blocks of at most this many voxels per side (the volume
        split evenly), each transformed with its margins of one kernel radius: the FFTs then
        need memory for one block's window instead of the whole volume, and the result is the
        same as without blocks (see :class:`_Step`).
    threads : int
        CPU threads of the FFTs and the point-wise steps (NumPy only); 1 inside a Dask worker
        whose cores are already used by the other units. ducc0's FFTs use at most the threads
        of its pool, sized when the process starts by ``DUCC0_NUM_THREADS``, else
        ``OMP_NUM_THREADS``, else the number of cores.
    fft : {'ducc0', 'scipy'}, optional
        The CPU transforms (:mod:`scopeflow.ops.spim.block_convolution`); default ducc0 when
        it is installed (the ``fft`` extra), else SciPy.
    on_iteration : callable, optional
        Called with the number of full passes done (1, 2, ...) after each, for progress
        reports and timings (with CuPy, after the GPU has finished the pass).

    Returns
    -------
    numpy.ndarray
        The deconvolved volume (float32, finite, ``>= min_intensity``).
    """
    if iterations < 0 or lam < 0 or osem <= 0:
        raise ConfigError(
            "deconvolution", [("iterations/lambda/osem", "must be >= 0 / >= 0 / > 0")]
        )
    shapes = {np.shape(a) for a in (*views, *weights, *([] if init is None else [init]))}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3 or len(views) != len(weights):
        raise ConfigError(
            "deconvolution",
            [("views/weights/init", f"one (z, y, x) shape and a weight per view, got {shapes}")],
        )
    xp = array_module(gpu)
    phi = [xp.asarray(np.ascontiguousarray(v, dtype=np.float32)) for v in views]
    w = [xp.asarray(x) for x in normalise_weights(weights, osem)]
    k1 = [_norm(np.asarray(p, dtype=np.float64)) for p in psfs]
    k2 = backprojection_kernels(psfs, psf_type)
    start = _start(xp, phi, w, init, min_intensity)
    top = float(max(float(p.max()) for p in phi)) or 1.0
    step = _Step(
        xp,
        k1,
        k2,
        _split(tuple(int(n) for n in start.shape), block),
        lam=lam,
        top=top,
        min_intensity=min_intensity,
        threads=threads,
        fft=fft,
    )
    with step:
        psi = step.padded(start)
        del start
        for it in range(iterations):
            for v in range(len(phi)):
                step.view(psi, phi[v], w[v], v)
            if on_iteration is not None:
                if xp is not np:
                    xp.cuda.get_current_stream().synchronize()
                on_iteration(it + 1)
        out = psi[step.interior]
    out = out.get() if hasattr(out, "get") else out
    result: F32 = np.ascontiguousarray(out, dtype=np.float32)
    return result


def _start(xp: Any, phi: list[Any], w: list[Any], init: ArrayLike | None, floor: float) -> Any:
    """The first estimate: ``init``, or the weighted average of the views (float32)."""
    if init is None:
        total = sum(wi * p for wi, p in zip(w, phi, strict=True))
        wsum = sum(w)
        start = xp.where(wsum > 0, total / xp.maximum(wsum, 1e-12), 0)
    else:
        start = xp.asarray(np.asarray(init, dtype=np.float32))
    return xp.maximum(start.astype(xp.float32), floor)


def _split(shape: tuple[int, ...], block: int | None) -> list[list[int]]:
    """Block edges per axis: ``shape`` cut into equal parts of at most ``block`` voxels."""
    edges = []
    for n in shape:
        parts = 1 if not block else -(-n // int(block))
        edges.append(np.linspace(0, n, parts + 1).round().astype(int).tolist())
    return edges


class _Step:
    """One view's update of the estimate, block by block, with cached kernel spectra.

    The estimate ``psi`` and the ratio ``q`` live padded by the kernel radius (borders
    mirrored). A view's update is two passes over the blocks: ``q = phi / (psi * P_v)`` for
    every block, then ``u = q * K_v`` and ``psi``'s update for every block, in place (the second
    pass no longer reads ``psi`` outside the block it updates). Each convolution needs only its
    block's one-radius margins, so blocks cost little more than the whole volume and give the
    same result.
    """

    def __init__(
        self,
        xp: Any,
        k1: list[F32],
        k2: list[F32],
        edges: list[list[int]],
        *,
        lam: float,
        top: float,
        min_intensity: float,
        threads: int,
        compiled: bool | None = None,
        fft: str | None = None,
    ) -> None:
        self.xp, self.edges = xp, edges
        self.lam, self.top, self.floor = float(lam), float(top), float(min_intensity)
        self.threads = max(1, int(threads)) if xp is np else 1
        #: the Numba loops (NumPy only); False: array-module operations as with CuPy
        self.compiled = xp is np if compiled is None else compiled
        self.shape: I3 = (edges[0][-1], edges[1][-1], edges[2][-1])
        largest = tuple(int(np.diff(e).max()) for e in edges)
        self.conv = Convolver(xp, largest, k1[0].shape, self.threads, backend=fft)
        self.f1 = [self.conv.spectrum(k, normalised=self.compiled) for k in k1]
        self.f2 = [self.conv.spectrum(k, normalised=self.compiled) for k in k2]
        half = self.conv.half
        self.interior = tuple(slice(h, h + n) for h, n in zip(half, self.shape, strict=True))
        # padded by ``half``, and at least the transform's size: every block's window is then
        # a view of it, transformed where it is (:meth:`Convolver.convolve`)
        self.pshape = tuple(
            max(n + 2 * h, f) for n, h, f in zip(self.shape, half, self.conv.fshape, strict=True)
        )
        self.q = xp.zeros(self.pshape, dtype=xp.float32)
        self.pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> _Step:
        if self.threads > 1:
            self.pool = self.conv.pool = ThreadPoolExecutor(self.threads)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = self.conv.pool = None

    def padded(self, vol: Any) -> Any:
        """A padded estimate holding ``vol``."""
        psi = self.xp.zeros(self.pshape, dtype=self.xp.float32)
        psi[self.interior] = vol
        return psi

    def blocks(self) -> Iterator[tuple[I3, I3, I3]]:
        """``(lo, ext, inner)`` of each block: first voxel, size, first voxel when padded."""
        h = self.conv.half
        spans = [list(itertools.pairwise(e)) for e in self.edges]
        for parts in itertools.product(*spans):
            (z0, z1), (y0, y1), (x0, x1) = parts
            yield (z0, y0, x0), (z1 - z0, y1 - y0, x1 - x0), (z0 + h[0], y0 + h[1], x0 + h[2])

    def view(self, psi: Any, phi: Any, w: Any, v: int) -> None:
        """The padded estimate ``psi`` updated in place with view ``v``."""
        self.pad(psi)
        for block in self.blocks():
            self.ratio(psi, phi, block, v)
        self.pad(self.q)
        for block in self.blocks():
            self.update(psi, w, block, v)

    def pad(self, vol: Any) -> None:
        """Fill the padded volume's borders (``np.pad`` 'reflect').

        Compiled, in ``threads`` slabs of planes, unless the array module's operations are
        asked for or a border is as wide as the volume (reflected more than once).
        """
        half, shape = self.conv.half, self.shape
        if not self.compiled or any(h >= n for h, n in zip(half, shape, strict=True)):
            reflect_pad_arrays(vol, half, shape, self.xp)
            return
        from scopeflow.ops.spim._kernels import reflect_pad  # Numba when needed

        self.planes(lambda a, b: reflect_pad(vol, half, shape, a, b), shape[0] + 2 * half[0])

    def ratio(self, psi: Any, phi: Any, block: tuple[I3, I3, I3], v: int) -> None:
        """``q = phi / (psi * P_v)`` (1 where ``phi`` is 0) on one block."""
        lo, ext, inner = block
        if not self.compiled:
            blurred = self.conv.convolve_plain(psi, lo, ext, self.f1[v])
            p = phi[tuple(slice(a, a + n) for a, n in zip(lo, ext, strict=True))]
            q = self.xp.where(p > 0, p / self.xp.maximum(blurred, 1e-12), 1.0)
            self.q[tuple(slice(a, a + n) for a, n in zip(inner, ext, strict=True))] = q
            return
        from scopeflow.ops.spim._kernels import rl_ratio  # Numba when needed

        blurred, boff = self.conv.convolve(psi, lo, ext, self.f1[v])
        self.planes(lambda a, b: rl_ratio(phi, lo, ext, blurred, boff, self.q, inner, a, b), ext[0])

    def update(self, psi: Any, w: Any, block: tuple[I3, I3, I3], v: int) -> None:
        """``psi`` updated from ``u = q * K_v`` on one block (see the module docstring)."""
        lo, ext, inner = block
        lam, top, floor = self.lam, self.top, self.floor
        if not self.compiled:
            u = self.conv.convolve_plain(self.q, lo, ext, self.f2[v])
            target = tuple(slice(a, a + n) for a, n in zip(inner, ext, strict=True))
            wb = w[tuple(slice(a, a + n) for a, n in zip(lo, ext, strict=True))]
            psi[target] = _updated(self.xp, psi[target], u, wb, lam=lam, top=top, floor=floor)
            return
        from scopeflow.ops.spim._kernels import rl_update  # Numba when needed

        u, uoff = self.conv.convolve(self.q, lo, ext, self.f2[v])
        self.planes(
            lambda a, b: rl_update(psi, inner, ext, u, uoff, w, lo, lam, top, floor, a, b), ext[0]
        )

    def planes(self, func: Any, n: int) -> None:
        """``func(z0, z1)`` over ``0..n``, in ``threads`` slabs of planes."""
        if self.pool is None:
            func(0, n)
            return
        cuts = np.linspace(0, n, self.threads + 1).round().astype(int)
        list(self.pool.map(func, cuts[:-1].tolist(), cuts[1:].tolist()))


def _updated(xp: Any, psi: Any, u: Any, w: Any, *, lam: float, top: float, floor: float) -> Any:
    """``psi + w (new - psi)`` with ``new = psi * u`` regularised (array-module operations)."""
    new = psi * u
    if lam > 0:
        n = xp.maximum(new, 0)  # (sqrt(1 + 2 lam n / top) - 1) / lam * top, without cancellation
        new = 2.0 * n / (1.0 + xp.sqrt(1.0 + 2.0 * lam * n / top))
    new = xp.where(xp.isfinite(new), xp.maximum(new, floor), floor)
    return (psi + w * (new - psi)).astype(xp.float32)


def fwhm(volume: ArrayLike, centre_zyx: Sequence[int], axis: int) -> float:
    """Full width at half maximum (voxels) of the profile through ``centre`` along ``axis``.

    Linear interpolation of the half-maximum crossings on both sides of the peak (background =
    the profile's minimum).
    """
    idx: list[Any] = list(centre_zyx)
    idx[axis] = slice(None)
    prof = np.asarray(np.asarray(volume)[tuple(idx)], dtype=np.float64)  # one line, not all
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
