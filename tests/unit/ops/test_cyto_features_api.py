"""measure_objects: batch layout, columns, dtypes, empty inputs, chunking and option errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from scopeflow.core.errors import ConfigError
from scopeflow.ops.cyto import features
from scopeflow.ops.cyto.features import INT_COLUMNS, feature_columns, measure_objects
from tests.unit.ops import synthetic_cyto


def _batch(n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    labels = np.zeros((n, 24, 26), dtype=np.uint16)
    yy, xx = np.mgrid[:24, :26]
    for i in range(n):
        labels[i][((yy - 9) / 6) ** 2 + ((xx - 10 - i) / 7) ** 2 <= 1] = 2 + i
        labels[i][18:24, 0:5] = 40
    labels[min(2, n - 1)] = 0 if n > 2 else labels[min(2, n - 1)]  # one image without objects
    images = ndimage.gaussian_filter(rng.random((n, 3, 24, 26)) * 900, (0, 0, 1, 1))
    return labels, images.astype(np.float32)


def _small() -> dict:
    return {"granularity_spectrum": 4, "texture_scales": (1, 2)}


def test_columns_dtypes_and_rows() -> None:
    labels, images = _batch()
    f = measure_objects(labels, images, channel_names=["dna", "er", "mito"], **_small())
    expected = feature_columns(["dna", "er", "mito"], granularity_spectrum=4, texture_scales=(1, 2))
    assert list(f) == expected
    assert len(expected) == 2 + 108 + 2 + 3 * (4 + 17 + 2 * 13 + 4)
    assert f["image_index"].tolist() == [0, 0, 1, 1, 3, 3, 4, 4]
    assert f["ObjectNumber"].tolist() == [2, 40, 3, 40, 5, 40, 6, 40]
    for name, values in f.items():
        assert values.shape == (8,)
        assert values.dtype == (np.int64 if name in INT_COLUMNS else np.float64), name
    assert "Texture_Entropy_mito_2_avg_16" in f
    assert "Granularity_4_er" in f and "Intensity_MADIntensity_dna" in f


def test_per_image_calls_equal_one_batch_call() -> None:
    labels, images = _batch()
    batch = measure_objects(labels, images, **_small())
    rows = [measure_objects(labels[i], images[i], **_small()) for i in range(labels.shape[0])]
    for name, values in batch.items():
        if name == "image_index":
            continue
        single = np.concatenate([r[name] for r in rows])
        np.testing.assert_allclose(values, single, rtol=1e-6, atol=1e-9, err_msg=name)


def test_chunked_batch_equals_unchunked(monkeypatch: pytest.MonkeyPatch) -> None:
    labels, images = _batch()
    whole = measure_objects(labels, images, **_small())
    monkeypatch.setattr(features, "_CHUNK_PIXELS", 2 * 24 * 26)
    chunked = measure_objects(labels, images, **_small())
    assert list(whole) == list(chunked)
    for name in whole:
        np.testing.assert_allclose(whole[name], chunked[name], rtol=1e-6, err_msg=name)


def test_empty_inputs_give_zero_rows() -> None:
    f = measure_objects(np.zeros((3, 10, 10), dtype=np.int32), np.zeros((3, 2, 10, 10)))
    assert list(f) == feature_columns(["ch0", "ch1"])
    assert all(v.shape == (0,) for v in f.values())
    assert f["AreaShape_Area"].dtype == np.int64
    g = measure_objects(np.zeros((0, 10, 10), dtype=np.int32), np.zeros((0, 1, 10, 10)))
    assert g["ObjectNumber"].size == 0


def test_layouts_without_images_and_single_channel() -> None:
    labels, images = _batch(2)
    shape_only = measure_objects(labels, families=("shape", "location"))
    assert list(shape_only) == feature_columns([], families=("shape", "location"))
    np.testing.assert_allclose(shape_only["Location_Center_X"], shape_only["AreaShape_Center_X"])
    one = measure_objects(labels, images[:, 0], families=("intensity",))  # (N, H, W) images
    three = measure_objects(labels, images, families=("intensity",))
    np.testing.assert_array_equal(
        one["Intensity_MeanIntensity_ch0"], three["Intensity_MeanIntensity_ch0"]
    )
    mask = measure_objects(labels[0] > 0, families="shape")  # boolean: one object
    assert mask["ObjectNumber"].tolist() == [1]
    assert mask["AreaShape_Area"][0] == np.count_nonzero(labels[0])


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"families": ("shape", "colour")}, "families"),
        ({"channel_names": ["a"]}, "channel_names"),
        ({"channel_names": ["a", "a", "b"]}, "channel_names"),
        ({"texture_scales": (0,)}, "texture_scales"),
        ({"texture_scales": (3, 3)}, "texture_scales"),
        ({"texture_levels": 1}, "texture_levels"),
        ({"granularity_spectrum": 0}, "granularity_spectrum"),
        ({"granularity_subsample": 1.5}, "granularity_subsample"),
        ({"granularity_background_radius": -1}, "granularity_background_radius"),
        ({"background": "mean"}, "background"),
        ({"background": np.zeros((4, 4))}, "background"),
    ],
)
def test_bad_options_raise_config_error(kwargs: dict, key: str) -> None:
    labels, images = _batch(2)
    with pytest.raises(ConfigError) as info:
        measure_objects(labels, images, **kwargs)
    assert info.value.problems[0][0] == key
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("labels", "images"),
    [
        (np.zeros((2, 8, 8), dtype=float), None),
        (-np.ones((2, 8, 8), dtype=int), None),
        (np.zeros((2, 2, 8, 8), dtype=int), None),
        (np.zeros((2, 8, 8), dtype=int), np.zeros((3, 1, 8, 8))),
        (np.zeros((2, 8, 8), dtype=int), np.zeros((2, 1, 8, 9))),
        (np.zeros((8, 8), dtype=int), np.zeros((2, 1, 8, 8))),
    ],
)
def test_bad_arrays_raise_config_error(labels: np.ndarray, images: np.ndarray | None) -> None:
    with pytest.raises(ConfigError):
        measure_objects(labels, images)


def test_families_need_images() -> None:
    with pytest.raises(ConfigError, match="need images"):
        measure_objects(np.ones((1, 5, 5), dtype=int), families=("texture",))


@pytest.mark.parametrize(("kind", "n"), [("ifc", 200), ("confocal", 2)])
def test_ground_truth_of_synthetic_datasets(
    tmp_path_factory: pytest.TempPathFactory, kind: str, n: int
) -> None:
    """Area, centroid and intensities equal the truth table of scopeflow.testing's datasets."""
    truth = synthetic_cyto(tmp_path_factory, kind, n, 7)
    table = truth.read_table()
    labels = np.stack([truth.read_labels(i) for i in range(n)])
    images = np.stack([truth.read_image(i) for i in range(n)])
    f = measure_objects(
        labels, images, channel_names=truth.channels, families=("shape", "intensity", "location")
    )
    np.testing.assert_array_equal(f["image_index"], table["image_id"])
    np.testing.assert_array_equal(f["ObjectNumber"], table["object"])
    np.testing.assert_array_equal(f["AreaShape_Area"], table["area"])
    np.testing.assert_allclose(f["Location_Center_X"], table["centroid_x"], atol=1e-6)
    np.testing.assert_allclose(f["Location_Center_Y"], table["centroid_y"], atol=1e-6)
    for ch in truth.channels:
        np.testing.assert_allclose(
            f[f"Intensity_MeanIntensity_{ch}"], table[f"mean_intensity_{ch}"], rtol=1e-6
        )
        np.testing.assert_array_equal(
            f[f"Intensity_IntegratedIntensity_{ch}"], table[f"integrated_intensity_{ch}"]
        )


def test_non_finite_pixels_are_rejected() -> None:
    images = np.zeros((1, 1, 6, 6))
    images[0, 0, 2, 2] = np.nan
    with pytest.raises(ConfigError, match="finite"):
        measure_objects(np.ones((1, 6, 6), dtype=int), images)


def test_large_and_sparse_label_values() -> None:
    """Label values far apart (uint16 65535) are kept as ObjectNumber, in label order."""
    labels = np.zeros((2, 10, 10), dtype=np.uint16)
    labels[0, 1:4, 1:4] = 65535
    labels[0, 6:9, 6:9] = 17
    labels[1, 2:5, 2:7] = 40000
    f = measure_objects(labels, families=("shape",))
    assert f["ObjectNumber"].tolist() == [17, 65535, 40000]
    assert f["image_index"].tolist() == [0, 0, 1]
    assert f["AreaShape_Area"].tolist() == [9, 9, 15]
