"""FFT convolutions of the blocks of a padded volume with fixed kernels (NumPy or CuPy).

The Richardson-Lucy steps of :mod:`scopeflow.ops.spim.deconvolution` convolve the whole volume,
or equal blocks of it, with one PSF per view, four times per view and iteration; these are
almost all of its time. :class:`Convolver` keeps the kernels' spectra and its buffers between
calls.

CPU transforms come from one of two libraries (``backend``):

``"ducc0"`` (default when installed: ``pip install scopeflow[fft]``)
    ducc0's ``fft``, the maintained successor of the pocketfft that SciPy bundles: about 1.3
    times as fast on these transforms, and it writes into given buffers, so a convolution
    allocates nothing. ducc0 is GPL-2.0-or-later, so it is an optional extra of this
    BSD-licensed package, not a requirement.
``"scipy"``
    ``scipy.fft`` (pocketfft, BSD), the same pruned steps with SciPy allocating the results.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import fft as sfft

from scopeflow.core.errors import ConfigError

try:  # optional (GPL-2.0-or-later): the `fft` extra
    import ducc0
except ImportError:  # pragma: no cover - depends on the installation
    ducc0 = None

__all__ = ["FFT_BACKENDS", "Convolver", "default_backend", "reflect_pad_arrays"]

FFT_BACKENDS = ("ducc0", "scipy")
F32 = NDArray[np.float32]
C64 = NDArray[np.complex64]
I3 = tuple[int, int, int]


def default_backend() -> str:
    """``"ducc0"`` when it is installed, else ``"scipy"``."""
    return "ducc0" if ducc0 is not None else "scipy"


class Convolver:
    """Same-size convolutions of blocks of at most ``block`` voxels with fixed kernels.

    The volumes live padded by the kernel radius ``half`` on each side (their borders mirrored
    by :func:`reflect_pad_arrays` or the compiled ``reflect_pad``); a block's window is the
    block and its ``half``-wide margins, and it is transformed at the ``next_fast_len`` size
    ``fshape`` of the largest window (the kernels' spectra are computed once at that size).
    The circular convolution of a window is exact on its block: a block voxel only reaches
    window voxels, never the wrapped-around ones, so the transform's extra planes may hold
    anything.

    On the CPU (:meth:`convolve`) the window is a view of the padded volume of the
    transform's size (it may hold more than the block's margins, which changes nothing) when
    the padded volume is that large, else a copy into a zero-padded buffer; the spectrum is
    multiplied in place, and the inverse transform, unnormalised (the kernel's spectrum
    carries the ``1 / size``), drops the planes and rows outside the block after the first
    and second axes; ``workers`` threads per transform. :meth:`convolve_plain` is the same
    with array-module operations (CuPy).

    Parameters
    ----------
    xp : module
        NumPy or CuPy.
    block : tuple of int
        The largest block, voxels.
    kshape : tuple of int
        The kernels' shape (odd sizes).
    workers : int
        Threads per CPU transform. ducc0 uses at most the threads of its pool, sized when
        the process starts by ``DUCC0_NUM_THREADS``, else ``OMP_NUM_THREADS``, else the cores.
    backend : {'ducc0', 'scipy'}, optional
        The CPU transforms (default :func:`default_backend`).
    """

    def __init__(
        self,
        xp: Any,
        block: tuple[int, ...],
        kshape: tuple[int, ...],
        workers: int = 1,
        backend: str | None = None,
    ) -> None:
        self.backend = default_backend() if backend is None else backend
        installed = tuple(b for b in FFT_BACKENDS if b != "ducc0" or ducc0 is not None)
        if xp is np and self.backend not in installed:  # CuPy uses cuFFT whatever is asked
            raise ConfigError(
                "deconvolution",
                [
                    (
                        "fft",
                        f"{self.backend!r}: expected one of the installed {installed} "
                        "(ducc0 comes with `pip install scopeflow[fft]`)",
                    )
                ],
            )
        self.xp = xp
        self.half: I3 = (kshape[0] // 2, kshape[1] // 2, kshape[2] // 2)
        self.fshape = tuple(
            sfft.next_fast_len(b + k - 1, real=True) for b, k in zip(block, kshape, strict=True)
        )
        self.fft = sfft if xp is np else xp.fft
        self.workers = max(1, int(workers))
        self.kw: dict[str, int] = {"workers": self.workers} if xp is np else {}
        self.buf: F32 | None = None  # a block's window
        self.spec: C64 | None = None  # its spectrum (ducc0)
        self.out: dict[tuple[int, int], F32] = {}  # results by block size (ducc0)
        #: threads for the point-wise product of the spectra (set by the caller)
        self.pool: ThreadPoolExecutor | None = None

    def spectrum(self, kernel: NDArray[Any], normalised: bool = False) -> Any:
        """The kernel's spectrum at the transform's size (its origin at voxel 0).

        ``normalised``: divided by the transform's size, as :meth:`convolve` expects (its
        inverse transform is not normalised); :meth:`convolve_plain` takes the plain one.
        """
        scale = np.float32(1.0 / float(np.prod(self.fshape)))
        if self.xp is not np:
            k = self.xp.asarray(kernel, dtype=self.xp.float32)
            spec = self.fft.rfftn(k, s=self.fshape, axes=(0, 1, 2))
            return spec * scale if normalised else spec
        # the kernel fills a corner of the transform: each axis transforms its nonzero lines
        (f0, f1, f2), kw = self.fshape, self.kw
        spec = sfft.rfft(np.asarray(kernel, dtype=np.float32), n=f2, axis=2, **kw)
        spec = sfft.fft(spec, n=f1, axis=1, overwrite_x=True, **kw)
        spec = sfft.fft(spec, n=f0, axis=0, overwrite_x=True, **kw)
        if normalised:
            spec *= scale
        out: C64 = spec.astype(np.complex64, copy=False)
        return out

    def window(self, lo: Sequence[int], ext: Sequence[int]) -> tuple[slice, ...]:
        """The window of the block at ``lo`` (volume voxels) with ``ext`` voxels, padded."""
        return tuple(slice(a, a + n + 2 * h) for a, n, h in zip(lo, ext, self.half, strict=True))

    def convolve(
        self, padded: F32, lo: Sequence[int], ext: Sequence[int], spectrum: C64
    ) -> tuple[F32, I3]:
        """The block at ``lo`` with ``ext`` voxels of the padded volume, convolved (CPU).

        ``spectrum`` is a ``normalised`` one (:meth:`spectrum`). Returns ``(full, offset)``:
        the result's voxel ``idx`` is ``full[offset + idx]``. With ducc0 ``full`` is a buffer
        of this object, overwritten by the next call for a block of the same size.
        """
        if all(p >= f for p, f in zip(padded.shape, self.fshape, strict=True)):
            # a window of the transform's size that holds the block and its margins: a view
            start = [min(a, p - f) for a, p, f in zip(lo, padded.shape, self.fshape, strict=True)]
            src = padded[tuple(slice(a, a + f) for a, f in zip(start, self.fshape, strict=True))]
        else:  # the padded volume is smaller than the transform: copied, zero-padded
            start = list(lo)
            if self.buf is None:
                self.buf = np.zeros(self.fshape, dtype=np.float32)
            win = padded[self.window(lo, ext)]
            np.copyto(self.buf[tuple(slice(0, n) for n in win.shape)], win)
            src = self.buf
        # block voxel t is window voxel lo - start + half + t: result voxel lo - start + 2 half + t
        off = tuple(a - s + 2 * h for a, s, h in zip(lo, start, self.half, strict=True))
        if self.backend == "ducc0":
            return self._ducc0(src, off, ext, spectrum)
        (o0, o1, o2), (n0, n1, _), kw = off, ext, self.kw
        spec = sfft.rfftn(src, **kw)
        self.multiply(spec, spectrum)
        t = sfft.ifft(spec, axis=0, norm="forward", overwrite_x=True, **kw)[o0 : o0 + n0]
        t = sfft.ifft(t, axis=1, norm="forward", overwrite_x=True, **kw)[:, o1 : o1 + n1]
        full: F32 = sfft.irfft(t, n=self.fshape[2], axis=2, norm="forward", **kw)
        return full, (0, 0, o2)

    def _ducc0(
        self, src: F32, off: tuple[int, ...], ext: Sequence[int], spectrum: C64
    ) -> tuple[F32, I3]:
        """:meth:`convolve`'s transforms with ducc0, into this object's buffers."""
        (o0, o1, o2), (n0, n1, _), nt = off, ext, self.workers
        if self.spec is None:
            self.spec = np.empty(spectrum.shape, dtype=np.complex64)
        spec = ducc0.fft.r2c(src, axes=(0, 1, 2), nthreads=nt, out=self.spec)
        self.multiply(spec, spectrum)
        ducc0.fft.c2c(spec, axes=(0,), forward=False, nthreads=nt, out=spec)
        planes = spec[o0 : o0 + n0]
        ducc0.fft.c2c(planes, axes=(1,), forward=False, nthreads=nt, out=planes)
        rows = planes[:, o1 : o1 + n1]
        full = self.out.get((n0, n1))
        if full is None:
            full = self.out[n0, n1] = np.empty((n0, n1, self.fshape[2]), dtype=np.float32)
        f2 = self.fshape[2]
        ducc0.fft.c2r(rows, axes=(2,), lastsize=f2, forward=False, nthreads=nt, out=full)
        return full, (0, 0, o2)

    def multiply(self, spec: C64, by: C64) -> None:
        """``spec *= by``, in slabs of planes on :attr:`pool`'s threads when it is set."""
        if self.pool is None:
            np.multiply(spec, by, out=spec)
            return
        cuts = np.linspace(0, spec.shape[0], self.workers + 1).round().astype(int).tolist()
        slabs = [slice(a, b) for a, b in itertools.pairwise(cuts)]
        list(self.pool.map(lambda s: np.multiply(spec[s], by[s], out=spec[s]), slabs))

    def convolve_plain(
        self, padded: Any, lo: Sequence[int], ext: Sequence[int], spectrum: Any
    ) -> Any:
        """:meth:`convolve` with array-module operations (CuPy); the block's result itself."""
        fft = self.fft
        whole = padded.shape == self.fshape and not any(lo)  # transformed where it is
        win = padded if whole else padded[self.window(lo, ext)]
        spec = fft.rfftn(win, s=self.fshape, axes=(0, 1, 2)) * spectrum
        full = fft.irfftn(spec, s=self.fshape, axes=(0, 1, 2))
        sl = tuple(slice(2 * h, 2 * h + n) for h, n in zip(self.half, ext, strict=True))
        return full[sl].astype(self.xp.float32, copy=False)


def reflect_pad_arrays(
    buf: Any, half: tuple[int, ...], shape: tuple[int, ...], xp: Any = np
) -> None:
    """Fill the ``half``-wide borders of ``buf[half : half + shape]`` as ``np.pad`` 'reflect'.

    Array-module operations (NumPy or CuPy); borders as wide as the volume (reflected more
    than once) too.
    """
    if any(h >= n for h, n in zip(half, shape, strict=True)):  # reflected more than once
        sl = tuple(slice(h, h + n) for h, n in zip(half, shape, strict=True))
        padded = xp.pad(buf[sl], [(h, h) for h in half], mode="reflect")
        buf[tuple(slice(0, n) for n in padded.shape)] = padded
        return
    for ax, (h, n) in enumerate(zip(half, shape, strict=True)):
        if h == 0:
            continue
        # axes before ``ax`` are padded already (corners as np.pad), later ones not yet
        idx: list[slice] = [
            slice(0, m + 2 * g) if a < ax else slice(g, g + m)
            for a, (g, m) in enumerate(zip(half, shape, strict=True))
        ]

        def at(s: slice, ax: int = ax, idx: list[slice] = idx) -> tuple[slice, ...]:
            return tuple(s if a == ax else idx[a] for a in range(3))

        buf[at(slice(0, h))] = buf[at(slice(2 * h, h, -1))]
        buf[at(slice(h + n, 2 * h + n))] = buf[at(slice(h + n - 2, n - 2, -1))]
