"""Bead-based registration of the views of one time point (or of time points to a reference).

:func:`register_points` chains the three stages of the multiview-reconstruction methods:
descriptor matching of every pair of bead sets (:mod:`.descriptors`), RANSAC per pair
(:mod:`.ransac`), global optimisation of all models (:mod:`.optimize`). Input points are in a
common, roughly aligned, isotropic space (each view's beads mapped by its current transforms);
the result is one model per set that is to be prepended to that view's transforms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from scopeflow.ops.spim.descriptors import match_descriptors
from scopeflow.ops.spim.models import MIN_POINTS, apply_model, fit_model
from scopeflow.ops.spim.optimize import GlobalFit, optimize_views
from scopeflow.ops.spim.ransac import RansacResult, ransac

__all__ = ["MatchOptions", "PairMatch", "Registration", "match_pair", "register_points"]

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class PairMatch:
    """Correspondences of two bead sets.

    Attributes
    ----------
    candidates : (m, 2) int array
        Descriptor matches ``(index in a, index in b)``.
    ransac : RansacResult
        RANSAC over the candidates, after the residual trim: ``inliers`` (indexing
        ``candidates``), ``model`` and ``error`` are those of the trimmed set.
    """

    candidates: NDArray[np.intp]
    ransac: RansacResult

    @property
    def inliers(self) -> NDArray[np.intp]:
        """``(k, 2)`` index pairs of the accepted matches (empty if no model)."""
        if self.ransac.model is None:
            return np.zeros((0, 2), dtype=np.intp)
        return self.candidates[self.ransac.inliers]


@dataclass(frozen=True)
class Registration:
    """Outcome of :func:`register_points`: per-set models and the evidence behind them."""

    models: F64
    pairs: dict[tuple[int, int], PairMatch]
    fit: GlobalFit


@dataclass(frozen=True)
class MatchOptions:
    """How two bead sets are matched (defaults of the multiview-reconstruction methods).

    Attributes
    ----------
    descriptor, redundancy, ratio
        Of :func:`scopeflow.ops.spim.descriptors.match_descriptors`.
    model, regularize
        Transformation model (``translation``, ``rigid``, ``affine``) and, for ``affine``, the
        ``lambda`` of its regularisation by a rigid model.
    epsilon, min_inlier_ratio, min_inliers, iterations
        Of :func:`scopeflow.ops.spim.ransac.ransac`.
    trim
        Keep RANSAC inliers within ``trim`` times their median residual (0: keep all).
    """

    descriptor: str = "rotation_invariant"
    redundancy: int = 1
    ratio: float | None = None
    model: str = "affine"
    regularize: float = 0.0
    epsilon: float = 5.0
    min_inlier_ratio: float = 0.1
    min_inliers: int = 12
    iterations: int = 10_000
    trim: float = 4.0


def match_pair(
    a: ArrayLike, b: ArrayLike, options: MatchOptions = MatchOptions(), *, seed: int = 0
) -> PairMatch:
    """Descriptor matching, RANSAC and the residual trim of two bead sets ``(n, 3)`` (x, y, z)."""
    o = options
    pa = np.asarray(a, dtype=np.float64).reshape(-1, 3)
    pb = np.asarray(b, dtype=np.float64).reshape(-1, 3)
    cand = match_descriptors(pa, pb, kind=o.descriptor, redundancy=o.redundancy, ratio=o.ratio)
    p, q = pa[cand[:, 0]], pb[cand[:, 1]]
    result = ransac(
        p,
        q,
        model=o.model,
        epsilon=o.epsilon,
        min_inlier_ratio=o.min_inlier_ratio,
        min_inliers=o.min_inliers,
        iterations=o.iterations,
        regularize=o.regularize,
        seed=seed,
    )
    if result.model is not None and o.trim > 0:
        result = _trim(
            p, q, result, model=o.model, regularize=o.regularize, factor=o.trim, least=o.min_inliers
        )
    return PairMatch(cand, result)


def _trim(
    p: F64,
    q: F64,
    result: RansacResult,
    *,
    model: str,
    regularize: float,
    factor: float,
    least: int = 0,
) -> RansacResult:
    """RANSAC's result with only inliers whose residual is at most ``factor`` times the median.

    RANSAC's epsilon (5 px) is wide enough to let in a neighbouring bead's match a few pixels
    off; a handful of those bias the least-squares fits. The residuals of true matches are
    localisation noise (~0.1 px), so a bound relative to their median removes the others.
    Starts from RANSAC's model and refits until the set is stable; the model and error
    returned are those of the kept set. A trim that would keep fewer than ``least`` matches (the
    RANSAC acceptance rule) or than the model needs is not made.
    """
    assert result.model is not None
    fewest = max(least, MIN_POINTS[model])
    keep, fitted = result.inliers, result.model
    for _ in range(10):
        dist = np.linalg.norm(apply_model(fitted, p) - q, axis=1)
        bound = factor * float(np.median(dist[keep]))
        again = result.inliers & (dist <= max(bound, 1e-9))
        if np.array_equal(again, keep) or again.sum() < fewest:
            break
        keep = again
        fitted = fit_model(model, p[keep], q[keep], regularize=regularize)
    error = float(np.linalg.norm(apply_model(fitted, p[keep]) - q[keep], axis=1).mean())
    return RansacResult(fitted, keep, error)


def register_points(
    points: Sequence[ArrayLike],
    options: MatchOptions = MatchOptions(),
    *,
    fixed: Sequence[int] = (0,),
    pairs: Sequence[tuple[int, int]] | None = None,
    relative_threshold: float = 5.0,
    absolute_threshold: float = 7.0,
    seed: int = 0,
) -> Registration:
    """Register bead sets to each other; the sets in ``fixed`` stay put.

    Parameters
    ----------
    points : sequence of (n_v, 3) array_like
        Beads of each view in a common roughly aligned space (x, y, z).
    options : MatchOptions
        Matching of each pair; its model (and regularisation) is also the global fit's.
    fixed : sequence of int
        Sets that keep the identity.
    pairs : sequence of (int, int), optional
        Pairs to match (default: every pair).
    relative_threshold, absolute_threshold
        Dropping of inconsistent links in the global fit.
    seed : int
        Of RANSAC's samples (pair ``k`` uses ``seed + k``).

    Returns
    -------
    Registration
        ``models[v]`` maps set ``v``'s points onto the common frame of the fixed sets.
    """
    pts = [np.asarray(p, dtype=np.float64).reshape(-1, 3) for p in points]
    todo = list(pairs) if pairs is not None else list(combinations(range(len(pts)), 2))
    found: dict[tuple[int, int], PairMatch] = {}
    links: dict[tuple[int, int], tuple[F64, F64]] = {}
    for k, (i, j) in enumerate(todo):
        match = match_pair(pts[i], pts[j], options, seed=seed + k)
        found[(i, j)] = match
        if match.ransac.model is not None:
            idx = match.inliers
            links[(i, j)] = (pts[i][idx[:, 0]], pts[j][idx[:, 1]])
    fit = optimize_views(
        len(pts),
        links,
        fixed=fixed,
        model=options.model,
        regularize=options.regularize,
        relative_threshold=relative_threshold,
        absolute_threshold=absolute_threshold,
    )
    return Registration(fit.models, found, fit)
