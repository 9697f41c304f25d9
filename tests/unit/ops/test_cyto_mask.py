"""Per-channel masks thresholded per cell (SCIP-style) and the combined mask."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from scopeflow.core.errors import ConfigError, UnknownNameError
from scopeflow.ops.cyto.mask import channel_masks, combined_mask, compute_masks
from scopeflow.ops.cyto.segment import segment_single_cell
from tests.unit.ops import ifc_arrays


@pytest.fixture(scope="session")
def ifc(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    return ifc_arrays(tmp_path_factory)


def _two_cells() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A field with two cells 10x apart in brightness, each with a bright 'nucleus' disc.

    Returns the image ``(2, 60, 120)``, the cell labels and the true nucleus mask.
    """
    yy, xx = np.mgrid[0:60, 0:120]
    labels = np.zeros((60, 120), dtype=np.int32)
    nuclei = np.zeros((60, 120), dtype=bool)
    image = np.full((2, 60, 120), 10.0, dtype=np.float32)
    for k, (cx, gain) in enumerate(((30, 1.0), (90, 10.0)), start=1):
        cell = (yy - 30) ** 2 + (xx - cx) ** 2 < 20**2
        nuc = (yy - 30) ** 2 + (xx - cx - 4) ** 2 < 8**2
        labels[cell] = k
        nuclei |= nuc
        image[0][cell] += 20 * gain  # channel 0: bright nucleus in a faint cell body
        image[0][nuc] += 80 * gain
        image[1][cell] += 50 * gain  # channel 1: the whole cell
    return image, labels, nuclei


@pytest.mark.parametrize("method", ["li", "otsu"])
def test_each_cell_is_thresholded_on_its_own(method: str) -> None:
    image, labels, nuclei = _two_cells()
    masks = channel_masks(image, labels, method=method, smooth=0)
    assert masks.shape == image.shape and masks.dtype == bool
    np.testing.assert_array_equal(masks[0], nuclei)  # despite the 10x brightness difference
    np.testing.assert_array_equal(masks[1], labels > 0)
    # one threshold for the whole image (SCIP's way for single-cell images) cannot serve both
    # cells: it either loses the dim nucleus or takes the bright cell's body for a nucleus
    whole = channel_masks(image, labels, method=method, smooth=0, region="image")
    assert np.mean(whole[0] != nuclei) > 0.02


def test_outside_the_cell_and_layouts() -> None:
    image, labels, _ = _two_cells()
    image[1, 8:12, 12:16] = 5000  # bright debris outside the cells, 25 px from cell 1's centre
    outside = channel_masks(image, labels, smooth=0, inside=False, margin=25)
    inside = channel_masks(image, labels, smooth=0, margin=25)
    assert not inside[:, labels == 0].any()
    assert outside[1, 8:12, 12:16].all()  # inside the 25 px territory of cell 1
    single = channel_masks(image, labels, smooth=0)
    batch = channel_masks(np.stack([image, image]), np.stack([labels, labels]), smooth=0)
    np.testing.assert_array_equal(batch[0], single)
    np.testing.assert_array_equal(batch[1], single)
    last = channel_masks(np.moveaxis(image, 0, -1), labels, smooth=0, channel_axis=-1)
    np.testing.assert_array_equal(last, batch[0])


def test_min_size_and_fill_holes() -> None:
    image, labels, _ = _two_cells()
    image[0, 30, 34] = 10.0  # a one-pixel hole in the first nucleus
    image[0, 20, 22] = 5000.0  # a one-pixel speck in cell 1 outside its nucleus
    plain = channel_masks(image, labels, smooth=0)
    assert not plain[0, 30, 34] and plain[0, 20, 22]
    cleaned = channel_masks(image, labels, smooth=0, min_size=4, fill_holes=True)
    assert cleaned[0, 30, 34] and not cleaned[0, 20, 22]


def test_ifc_masks(ifc: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = ifc
    cells = segment_single_cell(images, channel=2)
    options: dict[str, Any] = {"combined_channels": [1, 2, 3]}
    masks, combined = compute_masks(images, cells, **options)
    assert masks.shape == images.shape and combined.shape == cells.shape
    assert not masks[np.broadcast_to(cells[:, None] == 0, masks.shape)].any()
    area = cells.sum(axis=(1, 2)).astype(float)
    frac = masks.sum(axis=(2, 3)) / area[:, None]  # (N, C) fraction of the cell per channel
    assert np.median(frac[:, 2]) > 0.9  # cytoplasm: the cell segmented from it
    assert 0.15 < np.median(frac[:, 1]) < 0.6  # nucleus: a part of the cell
    np.testing.assert_array_equal(combined, masks[:, [1, 2, 3]].any(axis=1))
    _, by_labels = compute_masks(images[:5], cells[:5], combine="labels")
    np.testing.assert_array_equal(by_labels, cells[:5] > 0)
    edge_masks = channel_masks(images[:5], cells[:5], edges=True, region="image")
    assert edge_masks.shape == images[:5].shape


def test_combined_mask_and_errors() -> None:
    image, labels, _ = _two_cells()
    masks = channel_masks(image, labels, smooth=0)
    np.testing.assert_array_equal(combined_mask(masks), masks.any(axis=0))
    np.testing.assert_array_equal(combined_mask(masks, channels=[0]), masks[0])
    with pytest.raises(ConfigError, match="labels"):
        combined_mask(masks, how="labels")
    with pytest.raises(UnknownNameError):
        combined_mask(masks, how="intersection")
    with pytest.raises(ConfigError, match="does not match"):
        channel_masks(image, labels[:10])
    with pytest.raises(ConfigError, match="integer"):
        channel_masks(image, labels.astype(float))
    with pytest.raises(UnknownNameError):
        channel_masks(image, labels, region="bbox")
    with pytest.raises(UnknownNameError):
        channel_masks(image, labels, method="local")
