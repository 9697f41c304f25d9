"""Bead (interest point) detection: Difference-of-Gaussian with quadratic sub-pixel localisation.

Follows the detection of the multiview-reconstruction / BigStitcher methods [1]_ [2]_:

1. intensities are normalised to ``[0, 1]`` (the volume's minimum and maximum, or a given range);
2. optionally the volume is downsampled by block averaging (``downsample_xy``, ``downsample_z``);
3. two Gaussians of sigma ``s1 = sigma`` and ``s2 = k * sigma`` (``k = 2 ** (1/4)``), each
   reduced for the blur the image already has (``image_sigma = 0.5``: ``sqrt(s^2 - 0.5^2)``),
   are subtracted: ``DoG = G(s1) - G(s2)``, positive on bright spots of about the bead size;
4. candidates are voxels that are the strict maximum (or minimum) of their 3 x 3 x 3
   neighbourhood with ``|DoG| / (k - 1) >= threshold`` (dividing by ``k - 1`` makes the response
   independent of ``k``: it approximates the scale-normalised Laplacian ``sigma^2 * LoG``);
5. each candidate is localised to sub-pixel precision by fitting a quadratic (gradient and
   Hessian from central differences): the offset ``-H^-1 g``; when an offset exceeds half a
   voxel along an axis the fit moves to that neighbour and is repeated, at most ``max_moves``
   times. A fit that does not converge keeps the voxel position and is flagged.

All candidates are processed together (array operations, no Python loop per bead).

References
----------
.. [1] Preibisch S, Saalfeld S, Schindelin J, Tomancak P (2010) "Software for bead-based
   registration of selective plane illumination microscopy data", Nat. Methods 7: 418-419.
   :DOI:`10.1038/nmeth0610-418`
.. [2] Brown M, Lowe D (2002) "Invariant features from interest point groups", BMVC
   (quadratic sub-pixel localisation of DoG extrema).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from scopeflow.core.errors import ConfigError
from scopeflow.ops.spim._arrays import block_mean

__all__ = ["BeadDetections", "detect_beads", "difference_of_gaussian", "refine_gaussian"]

F64 = NDArray[np.float64]
K_DEFAULT = 2.0**0.25


@dataclass(frozen=True)
class BeadDetections:
    """Detected beads of one volume.

    Attributes
    ----------
    xyz : (n, 3) float64 array
        Sub-pixel positions ``(x, y, z)`` in voxels of the input volume (not downsampled).
    response : (n,) float64 array
        ``DoG / (k - 1)`` at the detection (positive for maxima).
    converged : (n,) bool array
        False where the quadratic fit did not converge (the position is the voxel's).
    """

    xyz: F64
    response: F64
    converged: NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.xyz.shape[0])


def _check(sigma: float, k: float, image_sigma: float, threshold: float) -> None:
    problems = []
    if not sigma > image_sigma:
        problems.append(("sigma", f"must exceed image_sigma ({image_sigma}), got {sigma}"))
    if not k > 1.0:
        problems.append(("k", f"must be > 1, got {k}"))
    if not threshold >= 0:
        problems.append(("threshold", f"must be >= 0, got {threshold}"))
    if problems:
        raise ConfigError("detect_beads", problems)


def difference_of_gaussian(
    volume: ArrayLike,
    *,
    sigma: float = 1.8,
    k: float = K_DEFAULT,
    image_sigma: float = 0.5,
    anisotropy: float = 1.0,
) -> NDArray[np.float32]:
    """``(G(s1) - G(s2)) / (k - 1)`` of a ``(z, y, x)`` volume (float32).

    Parameters
    ----------
    volume : (Z, Y, X) array_like
        Intensities (normalise them first for a threshold that means the same everywhere).
    sigma, k, image_sigma
        See the module docstring.
    anisotropy : float
        Ratio of z spacing to xy spacing; the z sigmas are divided by it (beads are round in
        space, so they span fewer z planes).
    """
    _check(sigma, k, image_sigma, 0.0)
    vol = np.asarray(volume, dtype=np.float32)
    out = np.empty_like(vol)
    for scale, sign in ((sigma, 1.0), (k * sigma, -1.0)):
        s = float(np.sqrt(scale**2 - image_sigma**2))
        blurred = ndimage.gaussian_filter(vol, (s / anisotropy, s, s), mode="reflect")
        if sign > 0:
            out[...] = blurred
        else:
            out -= blurred
    out /= np.float32(k - 1.0)
    return out


def _normalise(vol: NDArray[np.float32], value_range: tuple[float, float] | None) -> None:
    lo, hi = value_range if value_range is not None else (float(vol.min()), float(vol.max()))
    scale = 1.0 / (hi - lo) if hi > lo else 1.0
    vol -= np.float32(lo)
    vol *= np.float32(scale)


def _candidates(dog: NDArray[np.float32], threshold: float, find: str) -> NDArray[np.intp]:
    """``(n, 3)`` voxel indices of strict 3x3x3 extrema beyond ``threshold`` (no border voxels)."""
    signs = {"max": (1.0,), "min": (-1.0,), "both": (1.0, -1.0)}[find]
    found = []
    inner = (slice(1, -1),) * 3
    for sign in signs:
        d = dog * np.float32(sign)
        peak = d >= np.float32(threshold)
        # strict maximum: equal to the 3x3x3 maximum, and no neighbour equal to it
        peak &= d == ndimage.maximum_filter(d, size=3, mode="nearest")
        mask = np.zeros_like(peak)
        mask[inner] = peak[inner]
        idx = np.argwhere(mask)
        if len(idx):
            z, y, x = idx.T
            block = np.stack(
                [
                    d[z + dz, y + dy, x + dx]
                    for dz in (-1, 0, 1)
                    for dy in (-1, 0, 1)
                    for dx in (-1, 0, 1)
                    if (dz, dy, dx) != (0, 0, 0)
                ]
            )
            idx = idx[(block < d[z, y, x]).all(axis=0)]
        found.append(idx)
    return np.concatenate(found) if found else np.zeros((0, 3), dtype=np.intp)


def _quadratic_fit(dog: NDArray[np.float32], idx: NDArray[np.intp]) -> tuple[F64, F64, F64]:
    """Offsets ``-H^-1 g``, value at the fitted point, and det(H) at voxels ``idx`` (z, y, x)."""
    d = dog.astype(np.float64, copy=False)
    z, y, x = idx.T
    c = d[z, y, x]
    unit = np.eye(3, dtype=np.intp)
    grad = np.empty((len(idx), 3))
    hess = np.empty((len(idx), 3, 3))
    for a in range(3):
        p, m = idx + unit[a], idx - unit[a]
        fp, fm = d[p[:, 0], p[:, 1], p[:, 2]], d[m[:, 0], m[:, 1], m[:, 2]]
        grad[:, a] = 0.5 * (fp - fm)
        hess[:, a, a] = fp - 2.0 * c + fm
        for b in range(a + 1, 3):
            pp = idx + unit[a] + unit[b]
            pm = idx + unit[a] - unit[b]
            mp = idx - unit[a] + unit[b]
            mm = idx - unit[a] - unit[b]
            v = 0.25 * (
                d[pp[:, 0], pp[:, 1], pp[:, 2]]
                - d[pm[:, 0], pm[:, 1], pm[:, 2]]
                - d[mp[:, 0], mp[:, 1], mp[:, 2]]
                + d[mm[:, 0], mm[:, 1], mm[:, 2]]
            )
            hess[:, a, b] = hess[:, b, a] = v
    det = np.linalg.det(hess)
    ok = np.abs(det) > 1e-12
    offset = np.zeros((len(idx), 3))
    if ok.any():
        offset[ok] = -np.linalg.solve(hess[ok], grad[ok][..., None])[..., 0]
    offset[~ok] = np.inf
    value = c + 0.5 * np.einsum("ni,ni->n", grad, np.where(np.isfinite(offset), offset, 0.0))
    return offset, value, det


def _localise(
    dog: NDArray[np.float32], idx: NDArray[np.intp], max_moves: int
) -> tuple[F64, F64, NDArray[np.bool_]]:
    """Iterated quadratic sub-pixel fit of every candidate; positions ``(z, y, x)``.

    Candidates whose fits move onto the same voxel are kept once.
    """
    n = len(idx)
    pos = idx.astype(np.float64)
    value = dog[tuple(idx.T)].astype(np.float64)
    converged = np.zeros(n, dtype=bool)
    cur = idx.copy()
    prev = idx.copy()
    todo = np.arange(n)
    upper = np.asarray(dog.shape) - 2
    for _ in range(max_moves + 1):
        if not len(todo):
            break
        offset, val, _ = _quadratic_fit(dog, cur[todo])
        finite = np.isfinite(offset).all(axis=1)
        step = np.where(np.abs(offset) > 0.5, np.sign(offset), 0.0).astype(np.intp)
        step[~finite] = 0
        nxt = cur[todo] + step
        # a fit that sends it back where it came from: the peak lies between the two voxels
        back = (nxt == prev[todo]).all(axis=1) & (np.abs(offset) <= 1.0).all(axis=1)
        inside = finite & ((np.abs(offset) <= 0.5).all(axis=1) | back)
        done = todo[inside]
        pos[done] = cur[done] + offset[inside]
        value[done] = val[inside]
        converged[done] = True
        in_bounds = ((nxt >= 1) & (nxt <= upper)).all(axis=1)
        keep = finite & ~inside & in_bounds
        prev[todo[keep]] = cur[todo[keep]]
        cur[todo[keep]] = nxt[keep]
        todo = todo[keep]
    _, first = np.unique(cur, axis=0, return_index=True)
    first.sort()
    return pos[first], value[first], converged[first]


def _gauss_model(theta: F64, off: F64) -> tuple[F64, F64]:
    """Values ``(n, K)`` and Jacobian ``(n, K, 8)`` of ``b + A exp(-|(x - mu) / s|^2 / 2)``.

    ``theta``: ``(n, 8)`` = background, amplitude, mu (z, y, x), s (z, y, x); ``off``: ``(K, 3)``
    window offsets (z, y, x) relative to each window's centre voxel.
    """
    b, a = theta[:, 0:1], theta[:, 1:2]
    mu, sd = theta[:, None, 2:5], theta[:, None, 5:8]
    u = (off[None] - mu) / sd  # (n, K, 3)
    g = np.exp(-0.5 * (u * u).sum(axis=2))  # (n, K)
    f = b + a * g
    jac = np.empty((*g.shape, 8))
    jac[..., 0] = 1.0
    jac[..., 1] = g
    ag = (a * g)[..., None]
    jac[..., 2:5] = ag * u / sd
    jac[..., 5:8] = ag * u * u / sd
    return f, jac


def refine_gaussian(
    volume: ArrayLike,
    xyz: ArrayLike,
    *,
    radius: tuple[int, int, int] = (2, 3, 3),
    sigma: tuple[float, float, float] = (1.0, 1.0, 1.0),
    iterations: int = 30,
) -> tuple[F64, NDArray[np.bool_]]:
    """Refine bead positions by least-squares fits of a 3-D Gaussian plus background.

    Each bead's window (``2 * radius + 1`` voxels per axis, z y x, around its nearest voxel) is
    fitted with ``b + A exp(-sum_d (x_d - mu_d)^2 / (2 s_d^2))`` by Levenberg-Marquardt, all
    beads at once. A fit counts only when it converges inside the window with a positive
    amplitude and sigmas between 0.3 and 3 times ``sigma``; other beads keep their positions.

    Parameters
    ----------
    volume : (Z, Y, X) array_like
        The image (any real dtype).
    xyz : (n, 3) array_like
        Starting positions ``(x, y, z)`` in voxels.
    radius : (int, int, int)
        Half window, z y x.
    sigma : (float, float, float)
        Expected bead sigma (z, y, x), voxels: the start of the fit.
    iterations : int
        Levenberg-Marquardt steps.

    Returns
    -------
    xyz : (n, 3) numpy.ndarray
        Refined positions ``(x, y, z)``.
    fitted : (n,) bool array
        Which beads were refined.
    """
    vol = np.asarray(volume, dtype=np.float64)
    start = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    zyx = start[:, ::-1]
    centre = np.rint(zyx).astype(np.intp)
    rad = np.asarray(radius)
    inside = ((centre - rad) >= 0).all(axis=1) & ((centre + rad) < np.asarray(vol.shape)).all(1)
    out = start.copy()
    fitted = np.zeros(len(start), dtype=bool)
    if not inside.any():
        return out, fitted
    grids = np.meshgrid(*[np.arange(-r, r + 1) for r in radius], indexing="ij")
    off = np.stack([g.ravel() for g in grids], axis=1).astype(np.float64)  # (K, 3)
    idx = np.flatnonzero(inside)
    c = centre[idx]
    pos = c[:, None, :] + off.astype(np.intp)[None]
    values = vol[pos[..., 0], pos[..., 1], pos[..., 2]]  # (n, K)
    theta = np.empty((len(idx), 8))
    theta[:, 0] = values.min(axis=1)
    theta[:, 1] = values.max(axis=1) - theta[:, 0]
    theta[:, 2:5] = zyx[idx] - c
    theta[:, 5:8] = np.asarray(sigma, dtype=np.float64)
    lam = np.full(len(idx), 1e-3)
    f, jac = _gauss_model(theta, off)
    cost = ((values - f) ** 2).sum(axis=1)
    for _ in range(iterations):
        r = values - f
        jtj = np.einsum("nki,nkj->nij", jac, jac)
        jtr = np.einsum("nki,nk->ni", jac, r)
        damp = jtj + lam[:, None, None] * np.einsum("nii->ni", jtj)[:, :, None] * np.eye(8)
        try:
            step = np.linalg.solve(damp, jtr[..., None])[..., 0]
        except np.linalg.LinAlgError:
            break
        trial = theta + step
        f_new, jac_new = _gauss_model(trial, off)
        new_cost = ((values - f_new) ** 2).sum(axis=1)
        better = np.isfinite(new_cost) & (new_cost < cost)
        theta[better], f[better], jac[better], cost[better] = (
            trial[better],
            f_new[better],
            jac_new[better],
            new_cost[better],
        )
        lam = np.where(better, lam * 0.3, lam * 10.0)
    s = np.abs(theta[:, 5:8])
    expect = np.asarray(sigma, dtype=np.float64)
    good = (
        (theta[:, 1] > 0)
        & (np.abs(theta[:, 2:5]) <= rad).all(axis=1)
        & (s > 0.3 * expect).all(axis=1)
        & (s < 3.0 * expect).all(axis=1)
    )
    refined = (c + theta[:, 2:5])[:, ::-1]
    out[idx[good]] = refined[good]
    fitted[idx[good]] = True
    return out, fitted


def detect_beads(
    volume: ArrayLike,
    *,
    sigma: float = 1.8,
    threshold: float = 0.008,
    k: float = K_DEFAULT,
    image_sigma: float = 0.5,
    find: str = "max",
    anisotropy: float = 1.0,
    downsample_xy: int = 1,
    downsample_z: int = 1,
    value_range: tuple[float, float] | None = None,
    max_moves: int = 10,
    max_detections: int | None = None,
    localization: str = "quadratic",
    border: float | None = None,
) -> BeadDetections:
    """Find beads (bright spots about ``sigma`` voxels wide) in a ``(z, y, x)`` volume.

    Parameters
    ----------
    volume : (Z, Y, X) array_like
        One view, any real dtype.
    sigma : float
        Gaussian sigma of the smaller kernel, voxels (of the downsampled volume).
    threshold : float
        Minimal ``|DoG| / (k - 1)`` on intensities normalised to ``[0, 1]``.
    k : float
        Ratio of the two sigmas.
    image_sigma : float
        Blur the image already has, voxels.
    find : {'max', 'min', 'both'}
        Bright spots, dark spots, or both.
    anisotropy : float
        z spacing over xy spacing (after downsampling).
    downsample_xy, downsample_z : int
        Block-average the volume by these factors first (faster; positions are returned in
        the input's voxels).
    value_range : (float, float), optional
        Intensities mapped to 0 and 1 (default: the volume's minimum and maximum).
    max_moves : int
        Moves of the quadratic fit to a neighbouring voxel.
    max_detections : int, optional
        Keep only this many, the strongest.
    border : float, optional
        Drop detections closer than this many voxels (xy; z divided by ``anisotropy``) to a
        face of the volume: a bead cut by the face is localised too far inside, which biases
        registration (measured: 0.065 → 0.14 px). Default ``2 * sigma`` (input voxels).
    localization : {'quadratic', 'gaussian'}
        ``gaussian``: refine the quadratic positions with :func:`refine_gaussian` on the
        full-resolution volume (less biased; recovers precision lost to downsampling).

    Returns
    -------
    BeadDetections
        Positions ``(x, y, z)`` in input voxels, responses, convergence flags.

    Raises
    ------
    ConfigError
        Invalid parameters (all listed).
    """
    _check(sigma, k, image_sigma, threshold)
    if localization not in ("quadratic", "gaussian"):
        raise ConfigError(
            "detect_beads",
            [("localization", f"expected quadratic or gaussian, got {localization!r}")],
        )
    if find not in ("max", "min", "both"):
        raise ConfigError("detect_beads", [("find", f"expected max, min or both, got {find!r}")])
    if downsample_xy < 1 or downsample_z < 1:
        raise ConfigError("detect_beads", [("downsample", "factors must be >= 1")])
    vol = np.array(volume, dtype=np.float32, copy=True)
    if vol.ndim != 3:
        raise ConfigError("detect_beads", [("volume", f"expected (z, y, x), got {vol.shape}")])
    _normalise(vol, value_range)
    vol = block_mean(vol, downsample_z, downsample_xy, partial=False)
    if min(vol.shape) < 3:
        empty = np.zeros((0, 3))
        return BeadDetections(empty, np.zeros(0), np.zeros(0, dtype=bool))
    dog = difference_of_gaussian(
        vol, sigma=sigma, k=k, image_sigma=image_sigma, anisotropy=anisotropy
    )
    idx = _candidates(dog, threshold, find)
    pos, value, converged = _localise(dog, idx, max_moves)
    if max_detections is not None and len(pos) > max_detections:
        keep = np.argsort(-np.abs(value), kind="stable")[:max_detections]
        pos, value, converged = pos[keep], value[keep], converged[keep]
    factor = np.array([downsample_z, downsample_xy, downsample_xy], dtype=np.float64)
    zyx = (pos + 0.5) * factor - 0.5  # centre of a block of voxels
    xyz = np.ascontiguousarray(zyx[:, ::-1])
    if localization == "gaussian" and len(xyz):
        full = np.asarray(volume, dtype=np.float32)
        if find == "min":
            full = -full
        s_xy = float(np.sqrt(max(sigma**2 - image_sigma**2, 0.25))) * downsample_xy / 1.3
        s_z = s_xy / anisotropy * downsample_z / downsample_xy
        rz = max(1, int(np.ceil(2 * s_z)))
        rxy = max(2, int(np.ceil(2 * s_xy)))
        xyz, _ = refine_gaussian(full, xyz, radius=(rz, rxy, rxy), sigma=(s_z, s_xy, s_xy))
    margin = 2.0 * sigma * downsample_xy if border is None else float(border)
    if margin > 0 and len(xyz):
        lim = np.array([margin, margin, margin / anisotropy * downsample_z / downsample_xy])
        upper = np.array(np.asarray(volume).shape[::-1], dtype=np.float64) - 1.0 - lim
        keep = ((xyz >= lim) & (xyz <= upper)).all(axis=1)
        xyz, value, converged = xyz[keep], value[keep], converged[keep]
    return BeadDetections(xyz, value, converged)
