"""Point-set transformation models in 3-D: least-squares fits, batched over many point sets.

A model maps points ``p`` (``(n, 3)``, x y z) to ``p @ A.T + t`` and is stored as a ``3 x 4``
affine matrix ``[A | t]`` (the BigDataViewer / mpicbg convention). Each fit minimises the sum of
(weighted) squared distances between the mapped ``p`` and the targets ``q``:

``translation`` (1 correspondence minimum)
    ``A = I``, ``t`` = weighted mean of ``q - p``.
``rigid`` (3)
    Rotation + translation, the closed-form SVD solution (Kabsch / Umeyama, no reflection).
``affine`` (4)
    General ``A`` and ``t`` by linear least squares.
``interpolated`` / regularised affine
    ``(1 - lambda) * affine + lambda * rigid`` (mpicbg's InterpolatedAffineModel3D): an affine
    fit kept close to a rigid one, ``lambda = 0.1`` by default.

Every function accepts a leading batch axis (``(b, n, 3)`` point sets, ``(b, n)`` weights) so
that RANSAC fits thousands of minimal samples in one call.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from scopeflow.core.errors import UnknownNameError

__all__ = ["MIN_POINTS", "MODELS", "apply_model", "fit_model", "fit_models"]

F64 = NDArray[np.float64]
MODELS = ("translation", "rigid", "affine")
MIN_POINTS = {"translation": 1, "rigid": 3, "affine": 4}


def apply_model(model: ArrayLike, points: ArrayLike) -> F64:
    """Map ``(..., n, 3)`` points by ``(..., 3, 4)`` models."""
    m = np.asarray(model, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64)
    out: F64 = p @ np.swapaxes(m[..., :3], -1, -2) + m[..., None, :, 3]
    return out


def _weights(p: F64, w: ArrayLike | None) -> F64:
    if w is None:
        return np.ones(p.shape[:-1])
    return np.broadcast_to(np.asarray(w, dtype=np.float64), p.shape[:-1])


def _translation(p: F64, q: F64, w: F64) -> F64:
    wsum = w.sum(axis=-1)[..., None]
    t = ((q - p) * w[..., None]).sum(axis=-2) / np.where(wsum > 0, wsum, 1.0)
    out = np.zeros((*p.shape[:-2], 3, 4))
    out[..., :3, :3] = np.eye(3)
    out[..., :, 3] = t
    return out


def _rigid(p: F64, q: F64, w: F64) -> F64:
    wsum = np.where(w.sum(axis=-1) > 0, w.sum(axis=-1), 1.0)[..., None]
    pc = (p * w[..., None]).sum(axis=-2) / wsum
    qc = (q * w[..., None]).sum(axis=-2) / wsum
    cov = np.swapaxes((p - pc[..., None, :]) * w[..., None], -1, -2) @ (q - qc[..., None, :])
    u, _, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(np.swapaxes(vt, -1, -2) @ np.swapaxes(u, -1, -2)))
    d = np.where(d == 0, 1.0, d)
    fix = np.zeros(cov.shape)
    fix[..., 0, 0] = 1.0
    fix[..., 1, 1] = 1.0
    fix[..., 2, 2] = d
    rot = np.swapaxes(vt, -1, -2) @ fix @ np.swapaxes(u, -1, -2)
    out = np.zeros((*p.shape[:-2], 3, 4))
    out[..., :3, :3] = rot
    out[..., :, 3] = qc - (rot @ pc[..., None])[..., 0]
    return out


def _affine(p: F64, q: F64, w: F64) -> F64:
    wsum = np.where(w.sum(axis=-1) > 0, w.sum(axis=-1), 1.0)[..., None]
    pc = (p * w[..., None]).sum(axis=-2) / wsum
    qc = (q * w[..., None]).sum(axis=-2) / wsum
    dp = (p - pc[..., None, :]) * np.sqrt(w)[..., None]
    dq = (q - qc[..., None, :]) * np.sqrt(w)[..., None]
    ptp = np.swapaxes(dp, -1, -2) @ dp
    ptq = np.swapaxes(dp, -1, -2) @ dq
    det = np.linalg.det(ptp)
    ok = np.abs(det) > 1e-9 * np.maximum(1.0, np.abs(ptp).max(axis=(-1, -2)) ** 3)
    a_t = np.full(ptp.shape, np.nan)
    if np.any(ok):
        a_t[ok] = np.linalg.solve(ptp[ok], ptq[ok])
    a = np.swapaxes(a_t, -1, -2)
    out = np.zeros((*p.shape[:-2], 3, 4))
    out[..., :3, :3] = a
    out[..., :, 3] = qc - (a @ pc[..., None])[..., 0]
    return out


def fit_models(
    model: str,
    p: ArrayLike,
    q: ArrayLike,
    w: ArrayLike | None = None,
    *,
    regularize: float = 0.0,
) -> F64:
    """Least-squares models mapping ``p`` onto ``q`` for a batch of point sets.

    Parameters
    ----------
    model : {'translation', 'rigid', 'affine'}
        The model type.
    p, q : (..., n, 3) array_like
        Corresponding points (x, y, z).
    w : (..., n) array_like, optional
        Non-negative weights (default 1).
    regularize : float
        For ``affine``: ``lambda`` of the interpolation with the rigid fit, in ``[0, 1]``.

    Returns
    -------
    (..., 3, 4) numpy.ndarray
        One model per point set; NaN where the points do not determine an affine model (e.g.
        coplanar).

    Raises
    ------
    UnknownNameError
        ``model`` is not a model type.
    """
    pp = np.asarray(p, dtype=np.float64)
    qq = np.asarray(q, dtype=np.float64)
    ww = _weights(pp, w)
    if model == "translation":
        return _translation(pp, qq, ww)
    if model == "rigid":
        return _rigid(pp, qq, ww)
    if model == "affine":
        out = _affine(pp, qq, ww)
        if regularize > 0:
            out = (1.0 - regularize) * out + regularize * _rigid(pp, qq, ww)
        return out
    raise UnknownNameError("transformation model", model, list(MODELS))


def fit_model(
    model: str,
    p: ArrayLike,
    q: ArrayLike,
    w: ArrayLike | None = None,
    *,
    regularize: float = 0.0,
) -> F64:
    """One model mapping ``(n, 3)`` points ``p`` onto ``q`` (see :func:`fit_models`)."""
    return fit_models(model, p, q, w, regularize=regularize)
