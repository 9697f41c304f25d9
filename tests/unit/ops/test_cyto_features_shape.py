"""AreaShape_* features of measure_objects: equal to skimage's regionprops, or hand-computed."""

from __future__ import annotations

import itertools
from math import factorial

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import ConvexHull
from skimage.measure import label as cc_label
from skimage.measure import regionprops

from scopeflow.ops.cyto._zernike import ZERNIKE_INDEXES, minimum_enclosing_circle
from scopeflow.ops.cyto.features import measure_objects


def _random_labels(seed: int, n: int = 12, size: int = 36) -> np.ndarray:
    """Blobs of random shapes (holes, touching objects, objects on the border)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, size, size), dtype=np.int32)
    for i in range(n):
        smooth = ndimage.gaussian_filter(rng.random((size, size)), rng.uniform(1.2, 3.0))
        out[i] = cc_label(smooth > np.quantile(smooth, rng.uniform(0.4, 0.7)), connectivity=1)
        if i % 3 == 0:  # touching objects: split one blob by a line
            out[i] = np.where((out[i] > 0) & (np.arange(size)[None, :] > size // 2), 99, out[i])
    return out


def _shape(labels: np.ndarray) -> dict[str, np.ndarray]:
    return measure_objects(labels, families=("shape",))


def _regionprops_rows(labels: np.ndarray) -> list:
    return [p for image in labels for p in regionprops(image)]


@pytest.mark.parametrize("seed", [0, 1])
def test_shape_equals_regionprops(seed: int) -> None:
    labels = _random_labels(seed)
    f = _shape(labels)
    props = _regionprops_rows(labels)
    assert f["ObjectNumber"].tolist() == [p.label for p in props]
    assert f["image_index"].tolist() == [
        i for i, img in enumerate(labels) for _ in regionprops(img)
    ]
    ref = {
        "Area": [p.area for p in props],
        "Perimeter": [p.perimeter for p in props],
        "ConvexArea": [p.area_convex for p in props],
        "Solidity": [p.solidity for p in props],
        "Extent": [p.extent for p in props],
        "EulerNumber": [p.euler_number for p in props],
        "MajorAxisLength": [p.axis_major_length for p in props],
        "MinorAxisLength": [p.axis_minor_length for p in props],
        "MaxFeretDiameter": [p.feret_diameter_max for p in props],
        "EquivalentDiameter": [p.equivalent_diameter_area for p in props],
        "BoundingBoxArea": [p.area_bbox for p in props],
        "BoundingBoxMinimum_Y": [p.bbox[0] for p in props],
        "BoundingBoxMinimum_X": [p.bbox[1] for p in props],
        "BoundingBoxMaximum_Y": [p.bbox[2] for p in props],
        "BoundingBoxMaximum_X": [p.bbox[3] for p in props],
        "Center_Y": [p.centroid[0] for p in props],
        "Center_X": [p.centroid[1] for p in props],
        "InertiaTensorEigenvalues_0": [p.inertia_tensor_eigvals[0] for p in props],
        "InertiaTensorEigenvalues_1": [p.inertia_tensor_eigvals[1] for p in props],
    }
    for a, b in itertools.product(range(2), range(2)):
        ref[f"InertiaTensor_{a}_{b}"] = [p.inertia_tensor[a, b] for p in props]
    for a, b in itertools.product(range(3), range(4)):
        ref[f"SpatialMoment_{a}_{b}"] = [p.moments[a, b] for p in props]
        ref[f"CentralMoment_{a}_{b}"] = [p.moments_central[a, b] for p in props]
    for a, b in itertools.product(range(4), range(4)):
        ref[f"NormalizedMoment_{a}_{b}"] = [p.moments_normalized[a, b] for p in props]
    for k in range(7):
        ref[f"HuMoment_{k}"] = [p.moments_hu[k] for p in props]
    for name, expected in ref.items():
        np.testing.assert_allclose(
            f[f"AreaShape_{name}"], expected, rtol=1e-9, atol=1e-9, err_msg=name
        )
    for name in ("Area", "ConvexArea", "EulerNumber", "BoundingBoxArea", "BoundingBoxMinimum_X"):
        assert f[f"AreaShape_{name}"].dtype == np.int64
    # eccentricity of near-circles is sensitive to the last bits of the eigenvalues
    np.testing.assert_allclose(
        f["AreaShape_Eccentricity"], [p.eccentricity for p in props], atol=1e-6
    )
    # orientation in degrees; +90 and -90 are the same axis
    diff = f["AreaShape_Orientation"] - np.degrees([p.orientation for p in props])
    np.testing.assert_allclose((diff + 90) % 180 - 90, 0, atol=1e-6)
    assert np.all(np.abs(f["AreaShape_Orientation"]) <= 90)


def test_known_shapes() -> None:
    """A square, a disk and an axis-aligned ellipse with hand-computed values."""
    labels = np.zeros((3, 41, 41), dtype=np.uint8)
    labels[0, 10:20, 5:25] = 1  # 10 x 20 rectangle
    yy, xx = np.mgrid[:41, :41]
    labels[1] = (yy - 20) ** 2 + (xx - 20) ** 2 <= 15**2
    labels[2] = ((yy - 20) / 8.0) ** 2 + ((xx - 20) / 16.0) ** 2 <= 1
    f = _shape(labels)
    # rectangle: exact values
    assert f["AreaShape_Area"][0] == 200
    assert f["AreaShape_ConvexArea"][0] == 200
    assert f["AreaShape_Solidity"][0] == 1.0
    assert f["AreaShape_Extent"][0] == 1.0
    assert f["AreaShape_EulerNumber"][0] == 1
    assert f["AreaShape_Perimeter"][0] == pytest.approx(2 * (9 + 19))  # pixel-centre outline
    assert f["AreaShape_MinFeretDiameter"][0] == pytest.approx(10.0)
    assert f["AreaShape_MaxFeretDiameter"][0] == pytest.approx(np.hypot(20, 9))
    assert f["AreaShape_MaximumRadius"][0] == 5.0
    assert f["AreaShape_Center_X"][0] == 14.5
    assert f["AreaShape_Center_Y"][0] == 14.5
    assert (f["AreaShape_BoundingBoxMinimum_X"][0], f["AreaShape_BoundingBoxMaximum_X"][0]) == (
        5,
        25,
    )
    # axis lengths of a w x h rectangle: 4 sqrt(var) = 4 sqrt((n^2 - 1) / 12)
    assert f["AreaShape_MajorAxisLength"][0] == pytest.approx(4 * np.sqrt((20**2 - 1) / 12))
    assert f["AreaShape_MinorAxisLength"][0] == pytest.approx(4 * np.sqrt((10**2 - 1) / 12))
    assert abs(f["AreaShape_Orientation"][0]) == pytest.approx(90.0)  # long axis along x
    # disk of radius 15: area, perimeter, form factor close to the continuous values
    assert f["AreaShape_Area"][1] == pytest.approx(np.pi * 15**2, rel=0.01)
    # skimage's perimeter estimator (Benkrid & Crookes) overestimates a digital circle by ~5%
    assert f["AreaShape_Perimeter"][1] == pytest.approx(regionprops(labels[1])[0].perimeter)
    assert f["AreaShape_Perimeter"][1] == pytest.approx(2 * np.pi * 15, rel=0.06)
    assert f["AreaShape_FormFactor"][1] == pytest.approx(1.0, abs=0.12)
    assert f["AreaShape_Eccentricity"][1] == pytest.approx(0.0, abs=1e-6)
    assert f["AreaShape_MaxFeretDiameter"][1] == pytest.approx(31.0, abs=0.6)
    assert f["AreaShape_MinFeretDiameter"][1] == pytest.approx(31.0, abs=1.0)
    assert f["AreaShape_MaximumRadius"][1] == pytest.approx(np.sqrt(15**2 + 1))  # (15, 1) is out
    # ellipse with semi-axes 16 (x) and 8 (y)
    assert f["AreaShape_MajorAxisLength"][2] == pytest.approx(32.0, rel=0.03)
    assert f["AreaShape_MinorAxisLength"][2] == pytest.approx(16.0, rel=0.03)
    assert f["AreaShape_Eccentricity"][2] == pytest.approx(np.sqrt(1 - 0.25), abs=0.01)
    assert abs(f["AreaShape_Orientation"][2]) == pytest.approx(90.0)


def test_holes_single_pixels_and_lines() -> None:
    labels = np.zeros((1, 20, 20), dtype=np.int32)
    labels[0, 2:9, 2:9] = 1
    labels[0, 4, 4] = labels[0, 6, 6] = 0  # two holes
    labels[0, 15, 15] = 2  # single pixel
    labels[0, 12:19, 3] = 3  # vertical line
    labels[0, 0, 10:18] = 4  # horizontal line on the border
    f = _shape(labels)
    props = _regionprops_rows(labels)
    assert f["AreaShape_EulerNumber"].tolist() == [-1, 1, 1, 1]
    np.testing.assert_allclose(f["AreaShape_Perimeter"], [p.perimeter for p in props])
    np.testing.assert_allclose(f["AreaShape_ConvexArea"], [p.area_convex for p in props])
    np.testing.assert_allclose(
        f["AreaShape_MaxFeretDiameter"], [p.feret_diameter_max for p in props]
    )
    # single pixel: perimeter 0 -> form factor undefined; Zernike undefined (radius 0)
    assert f["AreaShape_Perimeter"][1] == 0
    assert np.isnan(f["AreaShape_FormFactor"][1])
    assert np.isnan(f["AreaShape_Zernike_0_0"][1])
    assert f["AreaShape_MaxFeretDiameter"][1] == 1.0
    assert f["AreaShape_MinFeretDiameter"][1] == pytest.approx(np.sqrt(0.5))
    assert f["AreaShape_MaximumRadius"][1] == 1.0
    # a 1-pixel-wide line: width 1, length 7
    assert f["AreaShape_MinFeretDiameter"][2] == pytest.approx(1.0)
    assert f["AreaShape_MaxFeretDiameter"][2] == pytest.approx(7.0)


def _cp_radii(mask: np.ndarray) -> tuple[float, float, float]:
    """CellProfiler: distance transform of the object's crop padded by one pixel."""
    rows, cols = np.nonzero(mask)
    crop = np.pad(mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1], 1)
    d = ndimage.distance_transform_edt(crop)[crop]
    return float(d.max()), float(d.mean()), float(np.median(d))


def test_radii_equal_cellprofiler_definition() -> None:
    labels = _random_labels(3, n=6)
    f = _shape(labels)
    expected = [_cp_radii(img == p.label) for img in labels for p in regionprops(img)]
    np.testing.assert_allclose(f["AreaShape_MaximumRadius"], [e[0] for e in expected])
    np.testing.assert_allclose(f["AreaShape_MeanRadius"], [e[1] for e in expected])
    np.testing.assert_allclose(f["AreaShape_MedianRadius"], [e[2] for e in expected])


def test_min_feret_is_minimum_caliper_width() -> None:
    """Brute force: the width of the convex-hull contour over 3,600 directions."""
    labels = _random_labels(4, n=4)
    f = _shape(labels)
    angles = np.linspace(0, np.pi, 3600, endpoint=False)
    directions = np.stack([np.cos(angles), np.sin(angles)])
    widths = []
    for img in labels:
        for p in regionprops(img):
            from skimage.measure import find_contours

            pts = np.vstack(find_contours(np.pad(p.image_convex, 2), 0.5, fully_connected="high"))
            proj = pts @ directions
            widths.append((proj.max(0) - proj.min(0)).min())
    np.testing.assert_allclose(f["AreaShape_MinFeretDiameter"], widths, rtol=1e-4)


def _brute_force_circle(points: np.ndarray) -> tuple[float, float, float]:
    best = (0.0, 0.0, np.inf)
    for i, j in itertools.combinations(range(len(points)), 2):
        c = (points[i] + points[j]) / 2
        r = np.hypot(*(points[i] - points[j])) / 2
        if r < best[2] and np.all(np.hypot(*(points - c).T) <= r + 1e-9):
            best = (c[0], c[1], r)
    for i, j, k in itertools.combinations(range(len(points)), 3):
        (ax, ay), (bx, by), (cx, cy) = points[i], points[j], points[k]
        d = 2 * (ax * (by - cy) + bx * (cy - ay) + cx * (ay - by))
        if abs(d) < 1e-12:
            continue
        ux = (
            (ax**2 + ay**2) * (by - cy) + (bx**2 + by**2) * (cy - ay) + (cx**2 + cy**2) * (ay - by)
        ) / d
        uy = (
            (ax**2 + ay**2) * (cx - bx) + (bx**2 + by**2) * (ax - cx) + (cx**2 + cy**2) * (bx - ax)
        ) / d
        r = np.hypot(ax - ux, ay - uy)
        if r < best[2] and np.all(np.hypot(points[:, 0] - ux, points[:, 1] - uy) <= r + 1e-9):
            best = (ux, uy, r)
    return best


def test_minimum_enclosing_circle_matches_brute_force() -> None:
    rng = np.random.default_rng(7)
    polys = []
    for _ in range(40):
        pts = rng.integers(0, 30, size=(rng.integers(3, 25), 2))
        hull = ConvexHull(pts) if len(np.unique(pts, axis=0)) >= 3 else None
        polys.append(pts[hull.vertices] if hull is not None else pts)
    m = max(len(p) for p in polys)
    x = np.array([np.r_[p[:, 0], [p[-1, 0]] * (m - len(p))] for p in polys])
    y = np.array([np.r_[p[:, 1], [p[-1, 1]] * (m - len(p))] for p in polys])
    cx, cy, r = minimum_enclosing_circle(x, y, np.array([len(p) for p in polys]))
    for k, p in enumerate(polys):
        *_, er = _brute_force_circle(p.astype(float))
        assert r[k] == pytest.approx(er, rel=1e-9)
        assert np.all(np.hypot(p[:, 0] - cx[k], p[:, 1] - cy[k]) <= r[k] + 1e-9)


def _zernike_reference(mask: np.ndarray) -> np.ndarray:
    """centrosome.zernike on one object: |sum V_nm| / (pi R^2) within the enclosing circle."""
    rows, cols = np.nonzero(mask)
    pts = np.c_[cols, rows].astype(float)
    cx, cy, r = _brute_force_circle(pts[ConvexHull(pts).vertices])
    x, y = (cols - cx) / r, (rows - cy) / r
    rho, theta = np.hypot(x, y), np.arctan2(y, x)
    out = []
    for n, m in ZERNIKE_INDEXES:
        radial = sum(
            (-1) ** k
            * factorial(n - k)
            / (factorial(k) * factorial((n + m) // 2 - k) * factorial((n - m) // 2 - k))
            * rho ** (n - 2 * k)
            for k in range((n - m) // 2 + 1)
        )
        out.append(abs(np.sum(radial * np.exp(1j * m * theta))) / (np.pi * r * r))
    return np.array(out)


def test_zernike_equals_reference() -> None:
    labels = _random_labels(5, n=3, size=28)
    f = _shape(labels)
    assert len(ZERNIKE_INDEXES) == 30
    k = 0
    for img in labels:
        for p in regionprops(img):
            if p.area >= 3 and np.linalg.matrix_rank(p.coords - p.coords[0]) == 2:
                got = [f[f"AreaShape_Zernike_{n}_{m}"][k] for n, m in ZERNIKE_INDEXES]
                np.testing.assert_allclose(got, _zernike_reference(img == p.label), atol=1e-10)
            k += 1
    # a disk: Zernike_0_0 = area / (pi R^2), odd/non-zero m vanish by symmetry
    yy, xx = np.mgrid[:31, :31]
    disk = ((yy - 15) ** 2 + (xx - 15) ** 2 <= 100).astype(np.uint8)
    d = _shape(disk)
    assert d["AreaShape_Zernike_0_0"][0] == pytest.approx(disk.sum() / (np.pi * 100))
    assert d["AreaShape_Zernike_1_1"][0] == pytest.approx(0.0, abs=1e-12)
    assert d["AreaShape_Zernike_2_2"][0] == pytest.approx(0.0, abs=1e-12)


def test_objects_touching_the_border_and_each_other() -> None:
    labels = np.zeros((2, 12, 12), dtype=np.int32)
    labels[0, :6, :] = 1
    labels[0, 6:, :] = 2  # whole image covered by two touching objects
    labels[1, 0:3, 0:3] = 7
    f = _shape(labels)
    props = _regionprops_rows(labels)
    np.testing.assert_allclose(f["AreaShape_Perimeter"], [p.perimeter for p in props])
    np.testing.assert_allclose(f["AreaShape_EulerNumber"], [p.euler_number for p in props])
    assert f["ObjectNumber"].tolist() == [1, 2, 7]
    # radii: the image border and the other object count as outside (CellProfiler)
    assert f["AreaShape_MaximumRadius"].tolist() == [3.0, 3.0, 2.0]


def test_hull_blocks_give_the_same_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """Objects split into small blocks for the hull arrays (one tall object among small ones)."""
    from scopeflow.ops.cyto import _shape as shape_module

    labels = _random_labels(6, n=4)
    labels[1, :, 0] = 500  # a tall thin object
    whole = _shape(labels)
    monkeypatch.setattr(shape_module, "_HULL_CELLS", 60)
    split = _shape(labels)
    for name in ("ConvexArea", "MaxFeretDiameter", "MinFeretDiameter", "Zernike_4_2"):
        np.testing.assert_array_equal(split[f"AreaShape_{name}"], whole[f"AreaShape_{name}"])
