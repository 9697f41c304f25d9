"""Texture_* (Haralick) features: equal to skimage's graycoprops and to the formulas."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.feature import graycomatrix, graycoprops
from skimage.measure import regionprops

from scopeflow.ops.cyto._texture import HARALICK, haralick
from scopeflow.ops.cyto.features import measure_objects

ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)  # CellProfiler's directions 00..03


def _batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    labels = np.zeros((3, 40, 40), dtype=np.int32)
    yy, xx = np.mgrid[:40, :40]
    for i in range(3):
        labels[i][((yy - 17) / (8 + 2 * i)) ** 2 + ((xx - 19) / 13) ** 2 <= 1] = 1
        labels[i][30:39, 1:14] = 2
        labels[i][32:40, 26:40] = 4  # on the border
    images = ndimage.gaussian_filter(rng.random((3, 2, 40, 40)) * 1000, (0, 0, 1.2, 1.2))
    return labels, images


def _quantised_crop(image: np.ndarray, mask: np.ndarray, levels: int) -> np.ndarray:
    """Object crop with grey levels 1..levels (0 = outside), quantised per object."""
    rows, cols = np.nonzero(mask)
    v = image[mask]
    span = v.max() - v.min()
    q = np.minimum(np.floor((v - v.min()) * (levels / span)), levels - 1) if span else 0 * v
    crop = np.zeros((rows.max() - rows.min() + 1, cols.max() - cols.min() + 1), dtype=np.int64)
    crop[rows - rows.min(), cols - cols.min()] = q.astype(np.int64) + 1
    return crop


def _glcm(crop: np.ndarray, scale: int, angle: float, levels: int) -> np.ndarray:
    """Symmetric co-occurrence counts of the object pixels, offsets as CellProfiler/mahotas."""
    diagonal = angle not in (0.0, np.pi / 2)
    distance = scale * np.sqrt(2) if diagonal else scale  # skimage rounds sin/cos * distance
    p = graycomatrix(crop, [distance], [angle], levels=levels + 1, symmetric=True)
    return p[1:, 1:, 0, 0].astype(np.float64)  # drop pairs with the outside


def _haralick_reference(counts: np.ndarray) -> dict[str, float]:
    """Haralick (1973) features as mahotas / CellProfiler define them, from the matrix."""
    p = counts / counts.sum()
    n = len(p)
    i, j = np.mgrid[:n, :n]
    k = np.arange(n)
    px = p.sum(axis=0)
    mu = px @ k
    var = px @ (k * k) - mu**2
    p_sum = np.bincount((i + j).ravel(), p.ravel(), minlength=2 * n - 1)
    p_diff = np.bincount(np.abs(i - j).ravel(), p.ravel(), minlength=n)
    ks = np.arange(2 * n - 1)

    def entropy(v: np.ndarray) -> float:
        v = v[v > 0]
        return float(-np.sum(v * np.log2(v)))

    hxy, hx = entropy(p.ravel()), entropy(px)
    outer = np.outer(px, px)
    hxy1 = -np.sum(p[outer > 0] * np.log2(outer[outer > 0]))
    hxy2 = entropy(outer.ravel())
    return {
        "AngularSecondMoment": np.sum(p * p),
        "Contrast": p_diff @ (k * k),
        "Correlation": (np.sum(i * j * p) - mu * mu) / var if var > 0 else 1.0,
        "Variance": var,
        "InverseDifferenceMoment": np.sum(p / (1 + (i - j) ** 2)),
        "SumAverage": p_sum @ ks,
        "SumVariance": p_sum @ (ks * ks) - (p_sum @ ks) ** 2,
        "SumEntropy": entropy(p_sum),
        "Entropy": hxy,
        "DifferenceVariance": p_diff @ (k * k) - (p_diff @ k) ** 2,
        "DifferenceEntropy": entropy(p_diff),
        "InfoMeas1": (hxy - hxy1) / hx if hx > 0 else hxy - hxy1,
        "InfoMeas2": np.sqrt(max(0.0, 1 - np.exp(-2 * (hxy2 - hxy)))),
    }


@pytest.mark.parametrize("levels", [8, 32])
def test_haralick_equals_reference_and_graycoprops(levels: int) -> None:
    labels, images = _batch()
    f = measure_objects(
        labels,
        images,
        channel_names=["x", "y"],
        families=("texture",),
        texture_scales=(3, 5),
        texture_levels=levels,
        texture_per_angle=True,
    )
    row = 0
    for i in range(labels.shape[0]):
        for prop in regionprops(labels[i]):
            for c, ch in enumerate("xy"):
                crop = _quantised_crop(images[i, c], labels[i] == prop.label, levels)
                for scale in (3, 5):
                    per_angle = []
                    for d, angle in enumerate(ANGLES):
                        counts = _glcm(crop, scale, angle, levels)
                        ref = _haralick_reference(counts)
                        per_angle.append(ref)
                        for name in HARALICK:
                            got = f[f"Texture_{name}_{ch}_{scale}_{d:02d}_{levels}"][row]
                            assert got == pytest.approx(ref[name], rel=1e-9, abs=1e-12), name
                        # skimage's own properties on the same normalised matrix
                        norm = (counts / counts.sum())[:, :, None, None]
                        sk = {
                            p: graycoprops(norm, p)[0, 0]
                            for p in ("contrast", "homogeneity", "ASM", "correlation", "variance")
                        }
                        pre = f"_{ch}_{scale}_{d:02d}_{levels}"
                        assert f[f"Texture_Contrast{pre}"][row] == pytest.approx(sk["contrast"])
                        assert f[f"Texture_InverseDifferenceMoment{pre}"][row] == pytest.approx(
                            sk["homogeneity"]
                        )
                        assert f[f"Texture_AngularSecondMoment{pre}"][row] == pytest.approx(
                            sk["ASM"]
                        )
                        assert f[f"Texture_Correlation{pre}"][row] == pytest.approx(
                            sk["correlation"]
                        )
                        assert f[f"Texture_Variance{pre}"][row] == pytest.approx(sk["variance"])
                    for name in HARALICK:
                        avg = f[f"Texture_{name}_{ch}_{scale}_avg_{levels}"][row]
                        assert avg == pytest.approx(np.mean([r[name] for r in per_angle]), rel=1e-9)
            row += 1


def test_dissimilarity_and_energy_match_graycoprops() -> None:
    """The pair statistics behind the features, on one image with skimage's own matrix."""
    rng = np.random.default_rng(2)
    image = rng.integers(0, 6, size=(15, 17))
    levels = 6
    a = image[:, :-2].ravel()
    b = image[:, 2:].ravel()
    out = haralick(a, b, np.zeros(a.size, dtype=np.int64), 1, levels)
    glcm = graycomatrix(image, [2], [0], levels=levels, symmetric=True, normed=True)
    assert out["Dissimilarity"][0] == pytest.approx(graycoprops(glcm, "dissimilarity")[0, 0])
    assert np.sqrt(out["AngularSecondMoment"][0]) == pytest.approx(
        graycoprops(glcm, "energy")[0, 0]
    )
    # skimage's entropy is in nats
    assert out["Entropy"][0] == pytest.approx(graycoprops(glcm, "entropy")[0, 0] / np.log(2))


def test_levels_beyond_dense_limit_use_the_sparse_path() -> None:
    """256 levels on many objects: same values as the dense computation of the same pairs."""
    rng = np.random.default_rng(5)
    n, pairs = 200, 150
    g = np.repeat(np.arange(n), pairs)
    a = rng.integers(0, 256, g.size)
    b = rng.integers(0, 256, g.size)
    from scopeflow.ops.cyto import _texture

    sparse = haralick(a, b, g, n, 256)  # n * 256^2 > dense limit -> sorted keys
    limit = _texture._DENSE_JOINT_BINS
    try:
        _texture._DENSE_JOINT_BINS = n * 256 * 256
        dense = haralick(a, b, g, n, 256)
    finally:
        _texture._DENSE_JOINT_BINS = limit
    for name in HARALICK:
        np.testing.assert_allclose(sparse[name], dense[name], rtol=1e-12, err_msg=name)


def test_undefined_texture_is_nan_and_constant_objects() -> None:
    labels = np.zeros((1, 12, 12), dtype=np.uint8)
    labels[0, 1, 1] = 1  # no pairs at any scale
    labels[0, 4:11, 4:11] = 2  # constant intensity
    images = np.full((1, 1, 12, 12), 3.0)
    f = measure_objects(labels, images, families=("texture",), texture_scales=(1,))
    for name in HARALICK:
        assert np.isnan(f[f"Texture_{name}_ch0_1_avg_16"][0]), name
    row = {name: f[f"Texture_{name}_ch0_1_avg_16"][1] for name in HARALICK}
    assert row["AngularSecondMoment"] == 1.0
    assert row["Contrast"] == 0.0
    assert row["Correlation"] == 1.0  # mahotas / CellProfiler / skimage convention
    assert row["Entropy"] == 0.0
    assert row["InfoMeas1"] == 0.0
    assert row["InfoMeas2"] == 0.0
