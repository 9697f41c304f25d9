"""3x4 affine transforms in the BigDataViewer convention, shared by io, ops and testing.

An affine is a row-major ``(3, 4)`` array ``[M | t]`` acting on column vectors of ``(x, y, z)``
coordinates: ``q = M @ p + t``. Point arrays are ``(N, 3)`` with columns ``x, y, z``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

Float64Array = NDArray[np.float64]


def as_affine(a: ArrayLike) -> Float64Array:
    """Return ``a`` as a ``(3, 4)`` float64 affine (accepts 12 values or a 3x4 / 4x4 matrix)."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.shape == (12,):
        arr = arr.reshape(3, 4)
    elif arr.shape == (4, 4):
        arr = arr[:3]
    if arr.shape != (3, 4):
        raise ValueError(
            f"an affine needs 12 finite values (3 x 4 row-major); got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("an affine needs 12 finite values (3 x 4 row-major)")
    return arr.copy()


def to_homogeneous(a: ArrayLike) -> Float64Array:
    """Return the ``(4, 4)`` homogeneous matrix of the affine ``a``."""
    h = np.eye(4)
    h[:3] = as_affine(a)
    return h


def compose(*affines: ArrayLike) -> Float64Array:
    """Compose affines right to left: ``compose(A, B)(p) == A(B(p))``."""
    out = np.eye(4)
    for a in affines:
        out = out @ to_homogeneous(a)
    return out[:3].copy()


def invert(a: ArrayLike) -> Float64Array:
    """Return the inverse of the affine ``a`` as ``(3, 4)``."""
    inv: Float64Array = np.linalg.inv(to_homogeneous(a)).astype(np.float64)
    return inv[:3].copy()


def apply(a: ArrayLike, pts_xyz: ArrayLike) -> Float64Array:
    """Apply the affine ``a`` to points.

    Parameters
    ----------
    a
        ``(3, 4)`` affine.
    pts_xyz
        ``(N, 3)`` (or ``(3,)``) points, columns ``x, y, z``.

    Returns
    -------
    numpy.ndarray
        Transformed points, same shape as ``pts_xyz``, float64.
    """
    m = as_affine(a)
    p = np.asarray(pts_xyz, dtype=np.float64)
    return p @ m[:, :3].T + m[:, 3]


def translation(t_xyz: ArrayLike) -> Float64Array:
    """Return the affine of a pure translation by ``t_xyz``."""
    a = np.zeros((3, 4))
    a[:, :3] = np.eye(3)
    a[:, 3] = np.asarray(t_xyz, dtype=np.float64)
    return a


def scaling(s_xyz: ArrayLike) -> Float64Array:
    """Return the affine of an axis-aligned scaling by ``s_xyz``."""
    a = np.zeros((3, 4))
    a[:, :3] = np.diag(np.asarray(s_xyz, dtype=np.float64))
    return a


def rotation_y(angle_deg: float) -> Float64Array:
    """Return the affine of a rotation by ``angle_deg`` about the y axis (through the origin).

    Right-handed: ``x → x cos θ + z sin θ``, ``z → -x sin θ + z cos θ``.
    """
    th = np.deg2rad(angle_deg)
    # snap the rounding noise of multiples of 90 degrees (cos 90 = 6e-17) to exact values
    c, s = (float(np.round(v, 15)) for v in (np.cos(th), np.sin(th)))
    a = np.zeros((3, 4))
    a[:, :3] = [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
    return a


def about_point(a: ArrayLike, centre_xyz: ArrayLike) -> Float64Array:
    """Return ``a`` conjugated so that it acts about ``centre_xyz``: ``T(c) · a · T(-c)``."""
    c = np.asarray(centre_xyz, dtype=np.float64)
    return compose(translation(c), a, translation(-c))


def volume_centre(shape_zyx: Sequence[int], voxel_size: ArrayLike) -> Float64Array:
    """World centre ``(x, y, z)`` of a volume of ``shape_zyx`` voxels: ``size · (n - 1) / 2``."""
    n_xyz = np.array([shape_zyx[2], shape_zyx[1], shape_zyx[0]], dtype=np.float64)
    out: Float64Array = (n_xyz - 1.0) / 2.0 * np.asarray(voxel_size, dtype=np.float64)
    return out


def nominal_view_transforms(
    angle_deg: float, shape_zyx: Sequence[int], voxel_size: ArrayLike
) -> tuple[Float64Array, Float64Array]:
    """A multiview light-sheet view's nominal ``(rotation, calibration)`` affines.

    Calibration scales voxels to µm; the rotation turns by ``angle_deg`` about the y axis through
    the volume's centre. The view's pixel → world model is ``rotation · calibration``.
    """
    centre = volume_centre(shape_zyx, voxel_size)
    return about_point(rotation_y(angle_deg), centre), scaling(voxel_size)
