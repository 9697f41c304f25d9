"""Per-object pixel tables for a whole batch, segment reductions, and image moments.

Every feature family works on one :class:`ObjectPixels` table built once per batch: the
pixels of all objects of all images, grouped by object (objects numbered ``0..n-1`` across the
batch, image-major, then by label), in raster order within each object. Per-object reductions
are then ``np.add.reduceat`` / ``np.bincount`` over that table, never one call per object.

The moments are those of :func:`skimage.measure.regionprops` (``moments``,
``moments_central``, ``moments_normalized``, ``moments_hu``, ``inertia_tensor``), computed for
all objects at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
Features = dict[str, NDArray[Any]]


@dataclass(frozen=True)
class ObjectPixels:
    """The pixels of every object of a batch of label images, grouped by object.

    Attributes
    ----------
    shape : tuple of int
        ``(n_images, height, width)`` of the label batch.
    pad : int
        Width of the zero border of :attr:`canvas` on each side of every image.
    canvas : numpy.ndarray
        ``(n_images * (height + 2 pad) * (width + 2 pad),)`` ``int32``: object index + 1 at
        every object pixel, 0 elsewhere (the padded label batch, flattened). Neighbours at an
        offset of up to ``pad`` pixels never wrap into another row or image.
    pix : numpy.ndarray
        ``(n_pixels,)`` flat :attr:`canvas` index of every object pixel.
    src : numpy.ndarray
        ``(n_pixels,)`` flat index into the ``(n_images, height, width)`` batch.
    obj : numpy.ndarray
        ``(n_pixels,)`` object index of every pixel (non-decreasing).
    row, col : numpy.ndarray
        ``(n_pixels,)`` pixel coordinates (row, column) in their image.
    starts, area : numpy.ndarray
        ``(n_objects,)`` first entry in the pixel arrays and pixel count of every object.
    image_index, label : numpy.ndarray
        ``(n_objects,)`` image (position in the batch) and label value of every object.
    """

    shape: tuple[int, int, int]
    pad: int
    canvas: NDArray[np.int32]
    pix: I64
    src: I64
    obj: I64
    row: I64
    col: I64
    starts: I64
    area: I64
    image_index: I64
    label: I64

    @property
    def n_objects(self) -> int:
        """Number of objects in the batch."""
        return int(self.area.size)

    @property
    def canvas_width(self) -> int:
        """Row stride of :attr:`canvas` (``width + 2 pad``)."""
        return self.shape[2] + 2 * self.pad

    def offset(self, drow: int, dcol: int) -> int:
        """Flat :attr:`canvas` offset of the neighbour at ``(drow, dcol)``."""
        return drow * self.canvas_width + dcol

    def neighbour_is_same(self, drow: int, dcol: int) -> NDArray[np.bool_]:
        """Whether the neighbour at ``(drow, dcol)`` of every pixel is in the same object."""
        same: NDArray[np.bool_] = self.canvas[self.pix + self.offset(drow, dcol)] == self.obj + 1
        return same

    def sum(self, values: NDArray[Any]) -> F64:
        """Per-object sums of ``(..., n_pixels)`` values: ``(..., n_objects)``."""
        return segment_reduce(np.add, values, self.starts, self.area)


def segment_reduce(ufunc: np.ufunc, values: NDArray[Any], starts: I64, counts: I64) -> F64:
    """Reduce ``values`` (last axis) over consecutive segments; empty segments give NaN."""
    n = counts.size
    out_shape = (*values.shape[:-1], n)
    if n == 0 or values.shape[-1] == 0:
        return np.full(out_shape, np.nan) if ufunc is not np.add else np.zeros(out_shape)
    nonempty = counts > 0
    if nonempty.all():
        return ufunc.reduceat(values, starts, axis=-1).astype(np.float64, copy=False)
    out = np.full(out_shape, 0.0 if ufunc is np.add else np.nan)
    out[..., nonempty] = ufunc.reduceat(values, starts[nonempty], axis=-1)
    return out


def object_pixels(labels: NDArray[np.integer[Any]], *, pad: int = 1) -> ObjectPixels:
    """Build the :class:`ObjectPixels` table of a ``(n_images, height, width)`` label batch.

    Parameters
    ----------
    labels
        ``(n_images, height, width)`` non-negative integer labels; 0 is background, each image
        numbers its own objects (values need not be consecutive).
    pad
        Zero border of the neighbour canvas (at least 1).

    Returns
    -------
    ObjectPixels
        Objects ordered by image, then label.
    """
    n_img, h, w = labels.shape
    flat = labels.reshape(-1)
    fg = np.flatnonzero(flat)
    lab = flat[fg].astype(np.int64)
    img = fg // (h * w)
    max_label = int(lab.max()) if lab.size else 0
    key = img * (max_label + 1) + lab
    if n_img * (max_label + 1) <= 4 * fg.size + 1024:
        present = np.bincount(key, minlength=n_img * (max_label + 1)) > 0
        dense = np.cumsum(present) - 1
        obj = dense[key]
        keys = np.flatnonzero(present)
    else:
        keys, obj = np.unique(key, return_inverse=True)
    if obj.size > 1 and np.any(obj[1:] < obj[:-1]):
        order = np.argsort(obj, kind="stable")
        fg, obj, img = fg[order], obj[order], img[order]
    rc = fg - img * (h * w)
    row, col = rc // w, rc % w
    n_obj = keys.size
    area = np.bincount(obj, minlength=n_obj).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(area)[:-1]]).astype(np.int64)
    hp, wp = h + 2 * pad, w + 2 * pad
    pix = (img * hp + row + pad) * wp + col + pad
    canvas = np.zeros(n_img * hp * wp, dtype=np.int32)
    canvas[pix] = obj + 1
    return ObjectPixels(
        shape=(n_img, h, w),
        pad=pad,
        canvas=canvas,
        pix=pix.astype(np.int64),
        src=fg.astype(np.int64),
        obj=obj.astype(np.int64),
        row=row.astype(np.int64),
        col=col.astype(np.int64),
        starts=starts,
        area=area,
        image_index=(keys // (max_label + 1)).astype(np.int64),
        label=(keys % (max_label + 1)).astype(np.int64),
    )


def power_sums(op: ObjectPixels, u: F64, v: F64, pairs: list[tuple[int, int]]) -> F64:
    """Per-object sums of ``u^a v^b`` over the pixels, for every ``(a, b)`` in ``pairs``.

    Returns ``(len(pairs), n_objects)``.
    """
    top_a = max(a for a, _ in pairs)
    top_b = max(b for _, b in pairs)
    upow = np.empty((top_a + 1, u.size))
    upow[0] = 1.0
    for a in range(1, top_a + 1):
        np.multiply(upow[a - 1], u, out=upow[a])
    out = np.empty((len(pairs), op.n_objects))
    vb = np.ones_like(v)
    for b in range(top_b + 1):
        rows = [k for k, (_, bb) in enumerate(pairs) if bb == b]
        a_s = [pairs[k][0] for k in rows]
        if a_s == list(range(len(a_s))):  # a contiguous run of powers: no copy
            out[rows] = op.sum(upow[: len(a_s)] * vb)
        elif rows:
            out[rows] = op.sum(upow[a_s] * vb)
        vb = vb * v
    return out


_ORDER3 = [(p, q) for p in range(4) for q in range(4)]


def raw_moments(op: ObjectPixels) -> tuple[F64, F64, F64]:
    """Spatial moments ``M[p, q] = sum r^p c^q`` (bounding-box coordinates) and centroid.

    Returns
    -------
    m : numpy.ndarray
        ``(4, 4, n_objects)`` moments up to order 3 in each axis, with ``r``, ``c`` relative to
        the object's bounding-box corner, as in ``regionprops(...).moments``.
    centroid_row, centroid_col : numpy.ndarray
        ``(n_objects,)`` centroids in image coordinates.
    """
    rmin = np.minimum.reduceat(op.row, op.starts)
    cmin = np.minimum.reduceat(op.col, op.starts)
    r = (op.row - rmin[op.obj]).astype(np.float64)
    c = (op.col - cmin[op.obj]).astype(np.float64)
    m = power_sums(op, r, c, _ORDER3).reshape(4, 4, -1)
    area = op.area.astype(np.float64)
    return m, rmin + m[1, 0] / area, cmin + m[0, 1] / area


def central_moments(op: ObjectPixels, centroid_row: F64, centroid_col: F64) -> F64:
    """Central moments ``mu[p, q]`` up to order 3: ``(4, 4, n_objects)``."""
    r = op.row - centroid_row[op.obj]
    c = op.col - centroid_col[op.obj]
    return power_sums(op, r, c, _ORDER3).reshape(4, 4, -1)


def normalized_moments(mu: F64) -> F64:
    """Scale-invariant moments ``nu[p, q] = mu[p, q] / mu[0, 0]^((p + q) / 2 + 1)``.

    NaN where ``p + q < 2``, as ``skimage.measure.moments_normalized``.
    """
    nu = np.full_like(mu, np.nan)
    for p in range(4):
        for q in range(4):
            if p + q >= 2:
                nu[p, q] = mu[p, q] / mu[0, 0] ** ((p + q) / 2 + 1)
    return nu


def hu_moments(nu: F64) -> F64:
    """Hu's seven rotation-invariant moments, ``(7, n_objects)`` (Hu 1962)."""
    n20, n02, n11 = nu[2, 0], nu[0, 2], nu[1, 1]
    n30, n03, n21, n12 = nu[3, 0], nu[0, 3], nu[2, 1], nu[1, 2]
    a, b = n30 + n12, n21 + n03
    t0, t1 = n30 - 3 * n12, 3 * n21 - n03
    return np.stack(
        [
            n20 + n02,
            (n20 - n02) ** 2 + 4 * n11**2,
            t0**2 + t1**2,
            a**2 + b**2,
            t0 * a * (a**2 - 3 * b**2) + t1 * b * (3 * a**2 - b**2),
            (n20 - n02) * (a**2 - b**2) + 4 * n11 * a * b,
            t1 * a * (a**2 - 3 * b**2) - t0 * b * (3 * a**2 - b**2),
        ]
    )


def moment_features(op: ObjectPixels) -> tuple[Features, F64, F64]:
    """Moment-based ``AreaShape_*`` columns (without the prefix) and intermediate values.

    Returns
    -------
    features : dict
        ``Center_X/Y``, ``SpatialMoment_p_q`` (p <= 2), ``CentralMoment_p_q`` (p <= 2),
        ``NormalizedMoment_p_q``, ``HuMoment_k``, ``InertiaTensor_i_j``,
        ``InertiaTensorEigenvalues_k``, ``MajorAxisLength``, ``MinorAxisLength``,
        ``Eccentricity``, ``Orientation`` (degrees).
    centroid_row, centroid_col : numpy.ndarray
        ``(n_objects,)`` centroids in image coordinates.
    """
    m, cr, cc = raw_moments(op)
    mu = central_moments(op, cr, cc)
    nu = normalized_moments(mu)
    hu = hu_moments(nu)
    with np.errstate(divide="ignore", invalid="ignore"):
        # inertia tensor as skimage: [[mu02, -mu11], [-mu11, mu20]] / mu00
        t00, t01, t11 = mu[0, 2] / mu[0, 0], -mu[1, 1] / mu[0, 0], mu[2, 0] / mu[0, 0]
        half_tr = (t00 + t11) / 2
        disc = np.sqrt(((t00 - t11) / 2) ** 2 + t01**2)
        l1 = np.maximum(half_tr + disc, 0.0)
        l2 = np.maximum(half_tr - disc, 0.0)
        ecc = np.where(l1 == 0, 0.0, np.sqrt(np.maximum(1 - l2 / l1, 0.0)))
    diff = t00 - t11
    orient = np.where(
        diff == 0,
        np.where(t01 < 0, np.pi / 4, -np.pi / 4),
        0.5 * np.arctan2(-2 * t01, t11 - t00),
    )
    f: Features = {"Center_X": cc, "Center_Y": cr}
    for p in range(3):
        for q in range(4):
            f[f"SpatialMoment_{p}_{q}"] = m[p, q]
    for p in range(3):
        for q in range(4):
            f[f"CentralMoment_{p}_{q}"] = mu[p, q]
    for p in range(4):
        for q in range(4):
            f[f"NormalizedMoment_{p}_{q}"] = nu[p, q]
    for k in range(7):
        f[f"HuMoment_{k}"] = hu[k]
    f.update(
        {
            "InertiaTensor_0_0": t00,
            "InertiaTensor_0_1": t01,
            "InertiaTensor_1_0": t01,
            "InertiaTensor_1_1": t11,
            "InertiaTensorEigenvalues_0": l1,
            "InertiaTensorEigenvalues_1": l2,
            "MajorAxisLength": 4 * np.sqrt(l1),
            "MinorAxisLength": 4 * np.sqrt(l2),
            "Eccentricity": ecc,
            "Orientation": np.degrees(orient),
        }
    )
    return f, cr, cc
