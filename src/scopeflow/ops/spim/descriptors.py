"""Local geometric descriptors of bead constellations, and their matching between two views.

Each bead is described by the positions of its nearest neighbours relative to it [1]_:

``rotation_invariant`` (BigStitcher's "fast descriptor-based, rotation invariant")
    For a bead ``p`` and three neighbours ``n1, n2, n3`` (ordered by distance), a frame with
    ``e1`` along ``n1 - p``, ``e2`` in the plane of ``n2``, ``e3 = e1 x e2``; the descriptor is
    ``|n1 - p|`` and the coordinates of ``n2 - p`` (2) and ``n3 - p`` (3) in that frame: six
    numbers, unchanged by any rotation and translation of the whole view.
``translation_invariant`` (BigStitcher's "precise descriptor-based, translation invariant")
    ``n1 - p, n2 - p, n3 - p`` (nine numbers): for views whose rotation is already about right.

With ``redundancy`` r, every 3 of the ``3 + r`` nearest neighbours (in distance order) make a
descriptor, so that one missing or extra neighbour still leaves descriptors that agree.

Matching takes, for each descriptor of view A, the two nearest descriptors of view B (kd-tree)
and keeps the pair when the second is at least ``ratio`` times farther than the first (the ratio
test, default 10 for the rotation-invariant and 3 for the translation-invariant descriptor).

References
----------
.. [1] Preibisch S, Saalfeld S, Schindelin J, Tomancak P (2010) "Software for bead-based
   registration of selective plane illumination microscopy data", Nat. Methods 7: 418-419.
   :DOI:`10.1038/nmeth0610-418`
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import cKDTree

from scopeflow.core.errors import UnknownNameError

__all__ = ["DESCRIPTORS", "describe", "match_descriptors"]

F64 = NDArray[np.float64]
DESCRIPTORS = ("rotation_invariant", "translation_invariant")


def _frame_coordinates(rel: F64) -> F64:
    """Rotation-invariant coordinates of ``(m, 3, 3)`` neighbour offsets (n1, n2, n3)."""
    v1, v2, v3 = rel[:, 0], rel[:, 1], rel[:, 2]
    len1 = np.linalg.norm(v1, axis=1)
    e1 = v1 / np.where(len1 > 0, len1, 1.0)[:, None]
    v2o = v2 - np.einsum("ij,ij->i", v2, e1)[:, None] * e1
    len2 = np.linalg.norm(v2o, axis=1)
    e2 = v2o / np.where(len2 > 0, len2, 1.0)[:, None]
    e3 = np.cross(e1, e2)
    return np.stack(
        [
            len1,
            np.einsum("ij,ij->i", v2, e1),
            len2,
            np.einsum("ij,ij->i", v3, e1),
            np.einsum("ij,ij->i", v3, e2),
            np.einsum("ij,ij->i", v3, e3),
        ],
        axis=1,
    )


def describe(
    points: ArrayLike, *, kind: str = "rotation_invariant", redundancy: int = 1
) -> tuple[F64, NDArray[np.intp]]:
    """Descriptors of every point's neighbourhood.

    Parameters
    ----------
    points : (n, 3) array_like
        Bead positions (x, y, z) in an isotropic space (e.g. after the nominal calibration).
    kind : {'rotation_invariant', 'translation_invariant'}
        See the module docstring.
    redundancy : int
        Extra neighbours considered; each bead gets ``C(3 + redundancy, 3)`` descriptors.

    Returns
    -------
    descriptors : (m, 6 or 9) numpy.ndarray
        One row per descriptor.
    owner : (m,) numpy.ndarray of int
        Index of the bead each descriptor describes.

    Raises
    ------
    UnknownNameError
        ``kind`` is not a descriptor type.
    """
    if kind not in DESCRIPTORS:
        raise UnknownNameError("descriptor", kind, list(DESCRIPTORS))
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    width = 6 if kind == "rotation_invariant" else 9
    k = 3 + max(0, int(redundancy))
    if len(pts) < k + 1:
        return np.zeros((0, width)), np.zeros(0, dtype=np.intp)
    _, nn = cKDTree(pts).query(pts, k=k + 1)
    nn = nn[:, 1:]  # (n, k), nearest first; column 0 of the query is the point itself
    rel = pts[nn] - pts[:, None, :]  # (n, k, 3)
    descs, owners = [], []
    for combo in combinations(range(k), 3):
        sub = rel[:, list(combo)]
        if kind == "rotation_invariant":
            descs.append(_frame_coordinates(sub))
        else:
            descs.append(sub.reshape(len(pts), 9))
        owners.append(np.arange(len(pts)))
    return np.concatenate(descs), np.concatenate(owners)


def match_descriptors(
    points_a: ArrayLike,
    points_b: ArrayLike,
    *,
    kind: str = "rotation_invariant",
    redundancy: int = 1,
    ratio: float | None = None,
) -> NDArray[np.intp]:
    """Candidate correspondences between two bead sets by descriptor similarity.

    Parameters
    ----------
    points_a, points_b : (n, 3) array_like
        Beads of two views (x, y, z), in a common isotropic space.
    kind, redundancy
        Descriptor (see :func:`describe`).
    ratio : float, optional
        Ratio test: second-nearest over nearest descriptor distance must be at least this
        (default 10 for ``rotation_invariant``, 3 for ``translation_invariant``).

    Returns
    -------
    (m, 2) numpy.ndarray of int
        Unique pairs ``(index in a, index in b)``; many are wrong (RANSAC sorts them out).
    """
    if ratio is None:
        ratio = 10.0 if kind == "rotation_invariant" else 3.0
    da, oa = describe(points_a, kind=kind, redundancy=redundancy)
    db, ob = describe(points_b, kind=kind, redundancy=redundancy)
    if len(da) == 0 or len(db) < 2:
        return np.zeros((0, 2), dtype=np.intp)
    dist, idx = cKDTree(db).query(da, k=2)
    good = dist[:, 1] >= ratio * dist[:, 0]
    pairs = np.stack([oa[good], ob[idx[good, 0]]], axis=1)
    if not len(pairs):
        return np.zeros((0, 2), dtype=np.intp)
    out: NDArray[np.intp] = np.unique(pairs, axis=0)
    return out
