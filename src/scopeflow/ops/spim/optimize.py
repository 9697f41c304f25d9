"""Global optimisation of all views' models from their pairwise correspondences.

Given, for linked pairs of views ``(i, j)``, corresponding points ``p_i`` and ``p_j`` (each in its
view's current world coordinates), find one model ``M_v`` per view so that ``M_i(p_i)`` and
``M_j(p_j)`` coincide as well as possible, with the views in ``fixed`` held at the identity.

As in mpicbg's TileConfiguration (used by the multiview-reconstruction methods [1]_), each view's
model is refitted in turn to the current world positions of its partners' points (Gauss-Seidel
sweeps) until the models stop changing. After convergence the worst link is dropped and the
optimisation repeated while that link's mean error exceeds ``absolute_threshold`` or
``relative_threshold`` times the mean error of all links (defaults 7 px and 5x), as long as every
view stays linked to a fixed view.

References
----------
.. [1] Preibisch S, Saalfeld S, Schindelin J, Tomancak P (2010) "Software for bead-based
   registration of selective plane illumination microscopy data", Nat. Methods 7: 418-419.
   :DOI:`10.1038/nmeth0610-418`
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from scopeflow.core.errors import ConfigError
from scopeflow.ops.spim.models import apply_model, fit_model

__all__ = ["GlobalFit", "optimize_views"]

F64 = NDArray[np.float64]
Link = tuple[int, int]


@dataclass(frozen=True)
class GlobalFit:
    """Outcome of :func:`optimize_views`.

    Attributes
    ----------
    models : (V, 3, 4) numpy.ndarray
        Model of each view (identity for fixed and unlinked views).
    link_errors : dict
        Mean distance of the corresponding points of each kept link after the fit.
    dropped : list of (int, int)
        Links removed as inconsistent, in the order they were dropped.
    unlinked : list of int
        Views without a path of links to a fixed view (left at the identity).
    iterations : int
        Sweeps of the last optimisation.
    """

    models: F64
    link_errors: dict[Link, float]
    dropped: list[Link] = field(default_factory=list)
    unlinked: list[int] = field(default_factory=list)
    iterations: int = 0

    @property
    def mean_error(self) -> float:
        """Mean of the links' errors (NaN without links)."""
        return float(np.mean(list(self.link_errors.values()))) if self.link_errors else np.nan


def _connected(n_views: int, links: Sequence[Link], fixed: Sequence[int]) -> set[int]:
    reached = set(fixed)
    frontier = list(fixed)
    while frontier:
        v = frontier.pop()
        for i, j in links:
            for a, b in ((i, j), (j, i)):
                if a == v and b not in reached:
                    reached.add(b)
                    frontier.append(b)
    return reached


def _sweeps(
    n_views: int,
    links: Mapping[Link, tuple[F64, F64]],
    fixed: Sequence[int],
    *,
    model: str,
    regularize: float,
    max_iterations: int,
    tolerance: float,
) -> tuple[F64, int]:
    models = np.tile(np.hstack([np.eye(3), np.zeros((3, 1))]), (n_views, 1, 1))
    movable = [v for v in sorted(_connected(n_views, list(links), fixed)) if v not in fixed]
    # for each view: (its points, partner view, partner's points) of every link it is in
    own: dict[int, list[tuple[F64, int, F64]]] = {v: [] for v in range(n_views)}
    for (i, j), (pi, pj) in links.items():
        own[i].append((pi, j, pj))
        own[j].append((pj, i, pi))
    sweeps = 0
    while sweeps < max_iterations:
        sweeps += 1
        change = 0.0
        for v in movable:
            src = np.concatenate([p for p, _, _ in own[v]])
            dst = np.concatenate([apply_model(models[u], q) for _, u, q in own[v]])
            new = fit_model(model, src, dst, regularize=regularize)
            change = max(
                change, float(np.abs(apply_model(new, src) - apply_model(models[v], src)).max())
            )
            models[v] = new
        if change < tolerance:
            break
    return models, sweeps


def _link_errors(models: F64, links: Mapping[Link, tuple[F64, F64]]) -> dict[Link, float]:
    return {
        (i, j): float(
            np.linalg.norm(apply_model(models[i], pi) - apply_model(models[j], pj), axis=1).mean()
        )
        for (i, j), (pi, pj) in links.items()
    }


def optimize_views(
    n_views: int,
    links: Mapping[Link, tuple[F64, F64]],
    *,
    fixed: Sequence[int] = (0,),
    model: str = "affine",
    regularize: float = 0.0,
    max_iterations: int = 5000,
    tolerance: float = 1e-7,
    relative_threshold: float = 5.0,
    absolute_threshold: float = 7.0,
) -> GlobalFit:
    """Models of all views that bring their corresponding points together.

    Parameters
    ----------
    n_views : int
        Number of views.
    links : mapping (i, j) -> (p_i, p_j)
        Corresponding points, ``(n, 3)`` each, in the views' current world coordinates.
    fixed : sequence of int
        Views that keep the identity (at least one).
    model : {'translation', 'rigid', 'affine'}
        Model of each view.
    regularize : float
        ``lambda`` of affine models regularised by rigid ones (ignored for other models).
    max_iterations, tolerance
        Sweeps at most, and the largest point movement (px) of a sweep that counts as converged.
    relative_threshold, absolute_threshold
        Dropping of inconsistent links (see the module docstring).

    Returns
    -------
    GlobalFit
        Models, errors, dropped links, unlinked views.

    Raises
    ------
    ConfigError
        No fixed view, or a fixed view or link outside ``range(n_views)``.
    """
    problems = []
    if not fixed:
        problems.append(("fixed", "at least one view must be fixed"))
    if any(not 0 <= v < n_views for v in fixed):
        problems.append(("fixed", f"views must be in 0..{n_views - 1}, got {list(fixed)}"))
    if any(not (0 <= i < n_views and 0 <= j < n_views and i != j) for i, j in links):
        problems.append(("links", f"pairs of distinct views in 0..{n_views - 1} expected"))
    if problems:
        raise ConfigError("optimize_views", problems)
    active = {k: (np.asarray(a, float), np.asarray(b, float)) for k, (a, b) in links.items()}
    dropped: list[Link] = []
    while True:
        models, sweeps = _sweeps(
            n_views,
            active,
            fixed,
            model=model,
            regularize=regularize,
            max_iterations=max_iterations,
            tolerance=tolerance,
        )
        errors = _link_errors(models, active)
        if len(errors) < 2:
            break
        worst = max(errors, key=lambda k: errors[k])
        mean = float(np.mean(list(errors.values())))
        if not (errors[worst] > absolute_threshold or errors[worst] > relative_threshold * mean):
            break
        rest = [k for k in active if k != worst]
        if _connected(n_views, rest, fixed) != _connected(n_views, list(active), fixed):
            break  # dropping it would cut a view off
        dropped.append(worst)
        del active[worst]
    unlinked = sorted(set(range(n_views)) - _connected(n_views, list(active), fixed))
    return GlobalFit(models, errors, dropped, unlinked, sweeps)
