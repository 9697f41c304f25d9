"""Granularity_* features: a hand-computed spectrum and a per-image reference implementation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import dilation, disk, erosion

from scopeflow.ops.cyto.features import measure_objects


def test_square_spectrum_by_hand() -> None:
    """A 3x3 bright square: the first opening keeps a 5-pixel cross, the second nothing."""
    labels = np.ones((1, 11, 11), dtype=np.uint8)
    image = np.zeros((1, 1, 11, 11))
    image[0, 0, 4:7, 4:7] = 10.0
    f = measure_objects(
        labels,
        image,
        families=("granularity",),
        granularity_spectrum=3,
        granularity_subsample=1.0,
        granularity_background_radius=0,
    )
    assert f["Granularity_1_ch0"][0] == pytest.approx(100 * 4 / 9, rel=1e-6)
    assert f["Granularity_2_ch0"][0] == pytest.approx(100 * 5 / 9, rel=1e-6)
    assert f["Granularity_3_ch0"][0] == pytest.approx(0.0, abs=1e-9)


def _disk_op(image: np.ndarray, radius: int, ufunc: np.ufunc) -> np.ndarray:
    """Grey erosion/dilation by disk(radius), mirrored borders (ndimage's "reflect", repeated:
    scipy.ndimage reads out of bounds when the disk is larger than the image)."""
    h, w = image.shape
    padded = np.pad(image, radius, mode="symmetric")
    out = image.copy()
    for dy, dx in zip(*np.nonzero(disk(radius)), strict=True):
        out = ufunc(out, padded[dy : dy + h, dx : dx + w])
    return out


def _reference(
    image: np.ndarray,
    labels: np.ndarray,
    *,
    spectrum: int,
    subsample: float,
    back_sub: float,
    radius: int,
) -> np.ndarray:
    """CellProfiler's MeasureGranularity for one image, with plain openings (scipy/skimage)."""
    h, w = image.shape
    new_shape = np.array([h, w]) * subsample
    i, j = np.mgrid[0 : new_shape[0], 0 : new_shape[1]].astype(float) / subsample
    pixels = ndimage.map_coordinates(image, (i, j), order=1) if subsample < 1 else image.copy()
    if radius > 0:
        back_shape = new_shape * back_sub
        i, j = np.mgrid[0 : back_shape[0], 0 : back_shape[1]].astype(float) / back_sub
        back = ndimage.map_coordinates(pixels, (i, j), order=1)
        back = _disk_op(_disk_op(back, radius, np.minimum), radius, np.maximum)
        i, j = np.mgrid[0 : new_shape[0], 0 : new_shape[1]].astype(float)
        i *= (back_shape[0] - 1) / (new_shape[0] - 1)
        j *= (back_shape[1] - 1) / (new_shape[1] - 1)
        pixels = np.maximum(pixels - ndimage.map_coordinates(back, (i, j), order=1), 0)
    index = np.unique(labels[labels > 0])

    def object_means(x: np.ndarray) -> np.ndarray:
        i, j = np.mgrid[0:h, 0:w].astype(float)
        i *= (new_shape[0] - 1) / (h - 1)
        j *= (new_shape[1] - 1) / (w - 1)
        return np.asarray(ndimage.mean(ndimage.map_coordinates(x, (i, j), order=1), labels, index))

    start = object_means(pixels)
    previous = start
    eroded = pixels
    out = []
    for k in range(1, spectrum + 1):
        eroded = erosion(eroded, disk(1))
        opened = eroded
        for _ in range(k):
            opened = dilation(opened, disk(1))
        current = object_means(opened)
        out.append((previous - current) * 100 / np.maximum(start, np.finfo(float).eps))
        previous = current
    return np.array(out)


@pytest.mark.parametrize(
    ("subsample", "back_sub", "radius", "spectrum"),
    [(0.25, 0.25, 10, 16), (0.5, 0.25, 10, 6), (0.6, 0.5, 3, 5), (1.0, 0.5, 0, 4)],
)
def test_granularity_equals_reference(
    subsample: float, back_sub: float, radius: int, spectrum: int
) -> None:
    rng = np.random.default_rng(4)
    labels = np.zeros((3, 45, 50), dtype=np.int32)
    yy, xx = np.mgrid[:45, :50]
    for i in range(3):
        labels[i][((yy - 20) / 12) ** 2 + ((xx - 22) / 15) ** 2 <= 1] = 1
        labels[i][36:45, 38:50] = 2
    labels[1] = 0  # an image without objects is skipped
    spots = ndimage.gaussian_filter((rng.random((3, 2, 45, 50)) > 0.97) * 500.0, (0, 0, 1, 1))
    images = 100 + spots + rng.random((3, 2, 45, 50)) * 20 + xx / 5
    f = measure_objects(
        labels,
        images,
        families=("granularity",),
        granularity_spectrum=spectrum,
        granularity_subsample=subsample,
        granularity_background_subsample=back_sub,
        granularity_background_radius=radius,
    )
    assert f["image_index"].tolist() == [0, 0, 2, 2]
    for c in range(2):
        expected = np.concatenate(
            [
                _reference(
                    images[i, c],
                    labels[i],
                    spectrum=spectrum,
                    subsample=subsample,
                    back_sub=back_sub,
                    radius=radius,
                )
                for i in (0, 2)
            ],
            axis=1,
        )
        got = np.array([f[f"Granularity_{k}_ch{c}"] for k in range(1, spectrum + 1)])
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
