"""RANSAC over candidate correspondences, vectorised: thousands of hypotheses per array call.

Minimal samples for all iterations are drawn at once and fitted as one batch
(:func:`scopeflow.ops.spim.models.fit_models`); each hypothesis is scored by the number of
correspondences it maps within ``epsilon`` of their partner. The best hypothesis (most inliers,
then smallest error) is refitted on its inliers until the inlier set no longer changes. It is
accepted when it has at least ``min_inliers`` inliers and at least ``min_inlier_ratio`` of the
candidates, the defaults of the multiview-reconstruction methods (epsilon 5 px, ratio 0.1,
12 inliers, 10,000 iterations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from scopeflow.core.errors import UnknownNameError
from scopeflow.ops.spim.models import MIN_POINTS, apply_model, fit_model, fit_models

__all__ = ["RansacResult", "ransac"]

F64 = NDArray[np.float64]
CHUNK = 1024  # hypotheses scored per array call (memory: CHUNK x n x 3 doubles)


@dataclass(frozen=True)
class RansacResult:
    """Outcome of :func:`ransac`.

    Attributes
    ----------
    model : (3, 4) numpy.ndarray or None
        The model refitted on the inliers; None when no hypothesis was good enough.
    inliers : (n,) bool array
        Which candidates agree with the model.
    error : float
        Mean distance of the inliers after the refit (NaN without a model).
    """

    model: F64 | None
    inliers: NDArray[np.bool_]
    error: float

    @property
    def n_inliers(self) -> int:
        """Number of inliers."""
        return int(self.inliers.sum())


def ransac(
    p: ArrayLike,
    q: ArrayLike,
    *,
    model: str = "affine",
    epsilon: float = 5.0,
    min_inlier_ratio: float = 0.1,
    min_inliers: int = 12,
    iterations: int = 10_000,
    regularize: float = 0.0,
    seed: int = 0,
) -> RansacResult:
    """Robust model ``p -> q`` from candidate correspondences, most of them possibly wrong.

    Parameters
    ----------
    p, q : (n, 3) array_like
        Candidate corresponding points (x, y, z).
    model : {'translation', 'rigid', 'affine'}
        Model type.
    epsilon : float
        Largest distance of an inlier, in the units of ``q``.
    min_inlier_ratio, min_inliers
        Acceptance: inliers at least this fraction of the candidates, and this many.
    iterations : int
        Hypotheses drawn.
    regularize : float
        ``lambda`` of an affine model regularised by a rigid one.
    seed : int
        Of the random samples (same seed, same result).

    Returns
    -------
    RansacResult
        The model, inlier mask and mean inlier error.
    """
    pp = np.asarray(p, dtype=np.float64).reshape(-1, 3)
    qq = np.asarray(q, dtype=np.float64).reshape(-1, 3)
    n = len(pp)
    if model not in MIN_POINTS:
        raise UnknownNameError("transformation model", model, list(MIN_POINTS))
    m = MIN_POINTS[model]
    nothing = RansacResult(None, np.zeros(n, dtype=bool), float("nan"))
    if n < max(m, min_inliers):
        return nothing
    rng = np.random.default_rng(seed)
    best_count, best_err, best_model = -1, np.inf, None
    for start in range(0, iterations, CHUNK):
        size = min(CHUNK, iterations - start)
        # m distinct indices per hypothesis: argsort of random keys, first m columns
        if n <= 64:
            samples = np.argsort(rng.random((size, n)), axis=1)[:, :m]
        else:
            samples = rng.integers(0, n, (size, m))
        models = fit_models(model, pp[samples], qq[samples], regularize=regularize)
        valid = np.isfinite(models).all(axis=(1, 2))
        if not valid.any():
            continue
        models = models[valid]
        dist = np.linalg.norm(apply_model(models, pp) - qq, axis=-1)  # (h, n)
        inside = dist <= epsilon
        counts = inside.sum(axis=1)
        errs = np.where(inside, dist, 0.0).sum(axis=1) / np.maximum(counts, 1)
        order = np.lexsort((errs, -counts))
        top = order[0]
        if counts[top] > best_count or (counts[top] == best_count and errs[top] < best_err):
            best_count, best_err, best_model = int(counts[top]), float(errs[top]), models[top]
    if best_model is None:
        return nothing
    inliers = np.linalg.norm(apply_model(best_model, pp) - qq, axis=-1) <= epsilon
    fitted = best_model
    for _ in range(20):  # refit on the inliers until the set is stable
        if inliers.sum() < m:
            return nothing
        fitted = fit_model(model, pp[inliers], qq[inliers], regularize=regularize)
        if not np.isfinite(fitted).all():
            return nothing
        again = np.linalg.norm(apply_model(fitted, pp) - qq, axis=-1) <= epsilon
        if np.array_equal(again, inliers):
            break
        inliers = again
    count = int(inliers.sum())
    if count < min_inliers or count < min_inlier_ratio * n:
        return nothing
    error = float(np.linalg.norm(apply_model(fitted, pp[inliers]) - qq[inliers], axis=-1).mean())
    return RansacResult(fitted, inliers, error)
