"""Intensity_* and Location_* features of measure_objects, against per-object numpy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import regionprops
from skimage.segmentation import find_boundaries

from scopeflow.ops.cyto.features import INTENSITY_FEATURES, measure_objects


def _batch(seed: int, dtype: type = np.uint16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.zeros((4, 30, 32), dtype=np.int32)
    yy, xx = np.mgrid[:30, :32]
    for i in range(4):
        labels[i][((yy - 12) / 7.0) ** 2 + ((xx - 14) / 9.0) ** 2 <= 1] = 3
        labels[i][20:30, 22:32] = 5  # on the border
        labels[i][20:30, 18:22] = 6  # touching object 5
    labels[3, 0, 0] = 9  # one-pixel object in a corner
    images = rng.integers(0, 4000, size=(4, 2, 30, 32)).astype(dtype)
    return labels, images


def _reference(values: np.ndarray, edge: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> dict:
    mean = values.mean()
    dev = values - mean
    m2 = np.mean(dev**2)
    med = np.median(values)
    ev = values[edge]
    with np.errstate(invalid="ignore", divide="ignore"):
        cm_r, cm_c = np.sum(values * rows) / values.sum(), np.sum(values * cols) / values.sum()
        skew = np.mean(dev**3) / m2**1.5 if m2 > 0 else np.nan
        kurt = np.mean(dev**4) / m2**2 - 3 if m2 > 0 else np.nan
    return {
        "IntegratedIntensity": values.sum(),
        "MeanIntensity": mean,
        "StdIntensity": values.std(),
        "MinIntensity": values.min(),
        "MaxIntensity": values.max(),
        "LowerQuartileIntensity": np.percentile(values, 25),
        "MedianIntensity": med,
        "UpperQuartileIntensity": np.percentile(values, 75),
        "MADIntensity": np.median(np.abs(values - med)),
        "Skewness": skew,
        "Kurtosis": kurt,
        "MassDisplacement": np.hypot(cm_r - rows.mean(), cm_c - cols.mean()),
        "IntegratedIntensityEdge": ev.sum(),
        "MeanIntensityEdge": ev.mean() if ev.size else np.nan,
        "StdIntensityEdge": ev.std() if ev.size else np.nan,
        "MinIntensityEdge": ev.min() if ev.size else np.nan,
        "MaxIntensityEdge": ev.max() if ev.size else np.nan,
        "CenterMassIntensity_X": cm_c,
        "CenterMassIntensity_Y": cm_r,
    }


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_intensity_equals_numpy_per_object(dtype: type) -> None:
    labels, images = _batch(0, dtype)
    if dtype is np.float32:
        images = images * np.float32(0.37) + np.float32(0.1)  # non-integer values
    f = measure_objects(
        labels, images, channel_names=["a", "b"], families=("intensity", "location")
    )
    row = 0
    for i in range(labels.shape[0]):
        edges = find_boundaries(labels[i], mode="inner")
        for p in regionprops(labels[i]):
            mask = labels[i] == p.label
            rows, cols = np.nonzero(mask)
            for c, ch in enumerate("ab"):
                values = images[i, c][mask].astype(np.float64)
                ref = _reference(values, edges[mask], rows, cols)
                for name, expected in ref.items():
                    family = "Location" if name.startswith("CenterMass") else "Intensity"
                    got = f[f"{family}_{name}_{ch}"][row]
                    np.testing.assert_allclose(
                        got, expected, rtol=1e-9, atol=1e-9, err_msg=f"{name} {ch} {p.label}"
                    )
                # brightest pixel, first in raster order
                r, cc = np.unravel_index(
                    np.argmax(np.where(mask, images[i, c], -np.inf)), mask.shape
                )
                assert (
                    f[f"Location_MaxIntensity_X_{ch}"][row],
                    f[f"Location_MaxIntensity_Y_{ch}"][row],
                ) == (cc, r)
            row += 1
    np.testing.assert_allclose(
        f["Location_Center_X"], [p.centroid[1] for im in labels for p in regionprops(im)]
    )
    assert row == f["ObjectNumber"].size


def test_edges_ignore_the_image_border() -> None:
    """An object covering the whole image has no edge pixels (CellProfiler / find_boundaries)."""
    labels = np.ones((1, 8, 8), dtype=np.uint8)
    images = np.arange(64, dtype=np.float64).reshape(1, 1, 8, 8)
    f = measure_objects(labels, images, families=("intensity",))
    assert f["Intensity_IntegratedIntensityEdge_ch0"][0] == 0.0
    assert np.isnan(f["Intensity_MeanIntensityEdge_ch0"][0])
    assert f["Intensity_MeanIntensity_ch0"][0] == 31.5
    v = np.arange(64.0).reshape(8, 8)
    rows, cols = np.mgrid[:8, :8]
    expected = np.hypot((v * rows).sum() / v.sum() - 3.5, (v * cols).sum() / v.sum() - 3.5)
    assert f["Intensity_MassDisplacement_ch0"][0] == pytest.approx(expected)


def test_constant_and_single_pixel_objects() -> None:
    labels = np.zeros((1, 10, 10), dtype=np.uint8)
    labels[0, 2:5, 2:5] = 1
    labels[0, 8, 8] = 2
    images = np.full((1, 1, 10, 10), 7.0)
    f = measure_objects(labels, images, families=("intensity",))
    assert f["Intensity_StdIntensity_ch0"].tolist() == [0.0, 0.0]
    assert np.isnan(f["Intensity_Skewness_ch0"]).all()
    assert np.isnan(f["Intensity_Kurtosis_ch0"]).all()
    assert f["Intensity_MedianIntensity_ch0"].tolist() == [7.0, 7.0]
    assert f["Intensity_MADIntensity_ch0"].tolist() == [0.0, 0.0]
    assert f["Intensity_MassDisplacement_ch0"].tolist() == [0.0, 0.0]


def test_background_median_outside_and_explicit() -> None:
    labels, images = _batch(1)
    f0 = measure_objects(labels, images, families=("intensity", "location"))
    f1 = measure_objects(
        labels, images, families=("intensity", "location"), background="median_outside"
    )
    bg = np.array([[np.median(images[i, c][labels[i] == 0]) for c in range(2)] for i in range(4)])
    img = f0["image_index"]
    for c in range(2):
        shift = bg[img, c]
        np.testing.assert_allclose(
            f1[f"Intensity_MeanIntensity_ch{c}"], f0[f"Intensity_MeanIntensity_ch{c}"] - shift
        )
        np.testing.assert_allclose(
            f1[f"Intensity_UpperQuartileIntensity_ch{c}"],
            f0[f"Intensity_UpperQuartileIntensity_ch{c}"] - shift,
        )
        np.testing.assert_allclose(
            f1[f"Intensity_IntegratedIntensity_ch{c}"],
            f0[f"Intensity_IntegratedIntensity_ch{c}"]
            - shift * measure_objects(labels, families=("shape",))["AreaShape_Area"],
        )
        # spread measures do not change
        np.testing.assert_allclose(
            f1[f"Intensity_StdIntensity_ch{c}"], f0[f"Intensity_StdIntensity_ch{c}"]
        )
    f2 = measure_objects(labels, images, families=("intensity",), background=[100.0, 200.0])
    np.testing.assert_allclose(
        f2["Intensity_MinIntensity_ch1"], f0["Intensity_MinIntensity_ch1"] - 200.0
    )
    # an image without background pixels has an undefined background
    full = np.ones((1, 6, 6), dtype=np.uint8)
    f3 = measure_objects(
        full, np.ones((1, 1, 6, 6)), families=("intensity",), background="median_outside"
    )
    assert np.isnan(f3["Intensity_MeanIntensity_ch0"][0])


def test_quantiles_of_small_objects() -> None:
    """Quantile interpolation on 1, 2, 3 and 4 pixel objects (numpy's linear definition)."""
    labels = np.zeros((1, 4, 6), dtype=np.int32)
    labels[0, 0, 0] = 1
    labels[0, 1, 0:2] = 2
    labels[0, 2, 0:3] = 3
    labels[0, 3, 0:4] = 4
    images = ndimage.gaussian_filter(np.arange(24.0).reshape(1, 1, 4, 6) ** 1.5, 0.3)
    f = measure_objects(labels, images, families=("intensity",))
    for k, obj in enumerate(range(1, 5)):
        v = images[0, 0][labels[0] == obj]
        for q, name in ((25, "LowerQuartile"), (50, "Median"), (75, "UpperQuartile")):
            assert f[f"Intensity_{name}Intensity_ch0"][k] == pytest.approx(np.percentile(v, q))
    assert set(INTENSITY_FEATURES) >= {"Skewness", "Kurtosis", "MADIntensity"}
