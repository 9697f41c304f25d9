"""Ground truth of the synthetic cytometry datasets (scopeflow.testing.make_cyto_dataset)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
import zarr
from scipy import ndimage
from skimage.measure import label as cc_label
from skimage.measure import regionprops

from scopeflow.core.errors import ConfigError, UnknownNameError
from scopeflow.testing import CytoKind, CytoTruth, make_cyto_dataset, read_truth_table

N_IFC = 300  # more than one render batch of 256


@pytest.fixture(scope="module")
def ifc(tmp_path_factory: pytest.TempPathFactory) -> CytoTruth:
    return make_cyto_dataset(tmp_path_factory.mktemp("ifc"), kind="ifc", n=N_IFC, seed=5)


@pytest.fixture(scope="module")
def confocal(tmp_path_factory: pytest.TempPathFactory) -> CytoTruth:
    return make_cyto_dataset(tmp_path_factory.mktemp("confocal"), kind="confocal", n=2, seed=5)


def _check_against_regionprops(
    truth: CytoTruth, image_id: int, labels: np.ndarray, image: np.ndarray, table: dict
) -> None:
    rows = np.flatnonzero(table["image_id"] == image_id)
    props = regionprops(labels, intensity_image=np.moveaxis(image, 0, -1))
    assert [p.label for p in props] == table["object"][rows].tolist()
    for p, r in zip(props, rows, strict=True):
        assert p.area == table["area"][r]
        cy, cx = p.centroid
        assert cx == pytest.approx(table["centroid_x"][r], abs=1e-9)
        assert cy == pytest.approx(table["centroid_y"][r], abs=1e-9)
        for c, ch in enumerate(truth.channels):
            pixels = image[c][labels == p.label]
            assert int(pixels.sum(dtype=np.int64)) == table[f"integrated_intensity_{ch}"][r]
            assert p.intensity_mean[c] == pytest.approx(table[f"mean_intensity_{ch}"][r], rel=1e-12)


def test_ifc_layout_and_description(ifc: CytoTruth) -> None:
    d = json.loads((ifc.root / "dataset.json").read_text())
    assert d["kind"] == "ifc"
    assert d["n"] == N_IFC
    assert d["shape"] == [6, 90, 90]
    assert d["channels"] == list(ifc.channels)
    assert len(set(ifc.channels)) == 6
    assert d["seed"] == 5
    assert CytoTruth.from_json(ifc.root / "dataset.json") == ifc
    for c in range(6):
        stack = tifffile.imread(ifc.root / f"ifc/ch{c}.tif")
        assert stack.shape == (N_IFC, 90, 90)
        assert stack.dtype == np.uint16
    labels = tifffile.imread(ifc.root / "labels.tif")
    assert labels.shape == (N_IFC, 90, 90)
    assert set(np.unique(labels).tolist()) == {0, 1}


def test_ifc_zarr_and_tiff_hold_identical_pixels(ifc: CytoTruth) -> None:
    arr = zarr.open_array(str(ifc.root / "images.zarr"), mode="r")
    assert arr.shape == (N_IFC, 6, 90, 90)
    assert arr.chunks == (256, 6, 90, 90)
    assert arr.dtype == np.uint16
    assert arr.attrs["channels"] == list(ifc.channels)
    data = arr[:]
    for c in range(6):
        np.testing.assert_array_equal(data[:, c], tifffile.imread(ifc.root / f"ifc/ch{c}.tif"))
    np.testing.assert_array_equal(ifc.read_image(7), data[7])


def test_ifc_one_roughly_centred_cell_per_image(ifc: CytoTruth) -> None:
    labels = tifffile.imread(ifc.root / "labels.tif")
    table = ifc.read_table()
    np.testing.assert_array_equal(table["image_id"], np.arange(N_IFC))
    np.testing.assert_array_equal(table["object"], 1)
    for lab in labels[:50]:
        assert cc_label(lab, connectivity=1).max() == 1
    assert not labels[:, [0, -1], :].any()
    assert not labels[:, :, [0, -1]].any()
    assert np.all(np.abs(table["centroid_x"] - 44.5) < 8)
    assert np.all(np.abs(table["centroid_y"] - 44.5) < 8)
    assert table["area"].min() > 200
    assert table["area"].max() < 1500
    # cells vary in size and the channels carry distinct signals
    assert table["area"].std() > 50
    assert np.median(table["mean_intensity_brightfield"]) > np.median(
        table["mean_intensity_darkfield"]
    )


def test_ifc_truth_matches_regionprops(ifc: CytoTruth) -> None:
    table = ifc.read_table()
    labels = tifffile.imread(ifc.root / "labels.tif")
    stacks = np.stack([tifffile.imread(ifc.root / f"ifc/ch{c}.tif") for c in range(6)], axis=1)
    for i in (0, 1, 2, 255, 256, N_IFC - 1):
        _check_against_regionprops(ifc, i, labels[i], stacks[i], table)
    # vectorised check of every image: areas and integrated intensities are exact
    np.testing.assert_array_equal(table["area"], labels.reshape(N_IFC, -1).sum(axis=1))
    for c, ch in enumerate(ifc.channels):
        sums = (stacks[:, c].astype(np.int64) * labels).reshape(N_IFC, -1).sum(axis=1)
        np.testing.assert_array_equal(table[f"integrated_intensity_{ch}"], sums)


def test_confocal_fields_labels_and_truth(confocal: CytoTruth) -> None:
    assert confocal.kind is CytoKind.CONFOCAL
    assert confocal.shape == (5, 900, 1600)
    table = confocal.read_table()
    for i in range(confocal.n):
        image = tifffile.imread(confocal.root / f"fields/field{i:03d}.tif")
        labels = tifffile.imread(confocal.root / f"labels/field{i:03d}.tif")
        assert image.shape == (5, 900, 1600)
        assert image.dtype == np.uint16
        np.testing.assert_array_equal(labels, confocal.read_labels(i))
        n_cells = int(labels.max())
        assert 85 <= n_cells <= 115
        assert np.array_equal(np.unique(labels), np.arange(n_cells + 1))
        _check_against_regionprops(confocal, i, labels, image, table)


def test_confocal_touching_flags_are_true_adjacency(confocal: CytoTruth) -> None:
    table = confocal.read_table()
    for i in range(confocal.n):
        labels = confocal.read_labels(i)
        rows = np.flatnonzero(table["image_id"] == i)
        padded = np.pad(labels, 1)
        boxes = ndimage.find_objects(padded)
        expected = []
        for obj in table["object"][rows]:
            sy, sx = boxes[obj - 1]
            win = padded[sy.start - 1 : sy.stop + 1, sx.start - 1 : sx.stop + 1]
            grown = ndimage.binary_dilation(win == obj, structure=np.ones((3, 3), bool))
            neighbours = set(np.unique(win[grown]).tolist()) - {0, int(obj)}
            expected.append(int(bool(neighbours)))
        np.testing.assert_array_equal(table["touching"][rows], expected)
        frac = float(np.mean(expected))
        assert 0.2 <= frac <= 0.8, frac  # some touching, most cells not in big clumps
        # every object is one connected piece: overlaps were resolved cleanly
        for obj in table["object"][rows][:30]:
            assert cc_label(labels == obj).max() == 1


def test_confocal_marker_positive_cells_are_brighter(confocal: CytoTruth) -> None:
    table = confocal.read_table()
    pos = table["marker_positive"] == 1
    assert 0.2 < pos.mean() < 0.6
    marker = table["mean_intensity_marker"]
    threshold = np.sqrt(np.median(marker[pos]) * np.median(marker[~pos]))
    assert np.mean((marker > threshold) == pos) >= 0.95


def test_config_yaml_points_at_the_data(ifc: CytoTruth, confocal: CytoTruth) -> None:
    for truth in (ifc, confocal):
        cfg = yaml.safe_load((truth.root / "config.yaml").read_text())
        assert cfg["channels"] == list(truth.channels)
        assert cfg["pixel_size"] == pytest.approx(truth.pixel_size)
    # IFC: one stack per channel; confocal: a glob of one file per field
    pattern = yaml.safe_load((ifc.root / "config.yaml").read_text())["input"]["pattern"]
    for c in range(len(ifc.channels)):
        assert (ifc.root / pattern.format(c=c)).is_file()
    pattern = yaml.safe_load((confocal.root / "config.yaml").read_text())["input"]["pattern"]
    assert len(list(confocal.root.glob(pattern))) == confocal.n


def test_same_seed_same_data_other_seed_other_data(tmp_path: Path) -> None:
    a = make_cyto_dataset(tmp_path / "a", kind="ifc", n=20, seed=1)
    b = make_cyto_dataset(tmp_path / "b", kind="ifc", n=20, seed=1)
    c = make_cyto_dataset(tmp_path / "c", kind="ifc", n=20, seed=2)
    assert a.table_path.read_bytes() == b.table_path.read_bytes()
    assert a.table_path.read_bytes() != c.table_path.read_bytes()
    for name in ("ifc/ch1.tif", "labels.tif"):
        np.testing.assert_array_equal(
            tifffile.imread(tmp_path / "a" / name), tifffile.imread(tmp_path / "b" / name)
        )
    t = read_truth_table(a.table_path)
    assert t["area"].dtype == np.int64
    assert t["centroid_x"].dtype == np.float64


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError):
        make_cyto_dataset(tmp_path, kind="widefield", n=2)
    with pytest.raises(ConfigError):
        make_cyto_dataset(tmp_path, kind="ifc", n=0)
