"""Ground truth of the synthetic SPIM dataset (scopeflow.testing.make_spim_dataset)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from pylibCZIrw import czi as pyczi
from scipy import ndimage
from scipy.spatial import cKDTree

from scopeflow.core.errors import ConfigError
from scopeflow.testing import (
    SpimTruth,
    beads_in_view,
    beads_in_view_index,
    make_spim_dataset,
)

SHAPE = (32, 64, 64)


@pytest.fixture(scope="module")
def spim(tmp_path_factory: pytest.TempPathFactory) -> SpimTruth:
    out = tmp_path_factory.mktemp("spim")
    return make_spim_dataset(out, views=3, timepoints=2, shape=SHAPE, seed=7)


def _linear(a: np.ndarray) -> np.ndarray:
    return np.asarray(a)[:, :3]


def test_truth_json_round_trips(spim: SpimTruth) -> None:
    back = SpimTruth.from_json(spim.root / "truth.json")
    assert back.root == spim.root
    assert back.shape == SHAPE == spim.shape
    assert back.voxel_size == spim.voxel_size
    assert back.angles == pytest.approx((0.0, 120.0, 240.0))
    for name in ("nominal_affines", "true_affines", "drifts", "beads_world", "nuclei_world"):
        np.testing.assert_array_equal(getattr(back, name), getattr(spim, name))
    assert back.to_dict() == spim.to_dict()
    d = spim.to_dict()
    assert "p = A_v^-1 (w + d_t)" in d["convention"]
    assert len(d["views"][1]["true_affine"]) == 12
    assert d["files"]["tiff"][1][2] == "tiff/t001_v02.tif"


def test_nominal_affine_is_calibrated_rotation_about_y(spim: SpimTruth) -> None:
    vs = np.array(spim.voxel_size)
    centre = (np.array(SHAPE[::-1]) - 1) / 2 * vs
    for v, angle in enumerate(spim.angles):
        a = spim.nominal_affines[v]
        rot = _linear(a) / vs  # undo the calibration column by column
        th = np.deg2rad(angle)
        expected = [[np.cos(th), 0, np.sin(th)], [0, 1, 0], [-np.sin(th), 0, np.cos(th)]]
        np.testing.assert_allclose(rot, expected, atol=1e-12)
        # the volume centre is a fixed point of the nominal rotation
        np.testing.assert_allclose(_linear(a) @ (centre / vs) + a[:, 3], centre, atol=1e-9)


def test_true_affines_differ_from_nominal_by_small_errors(spim: SpimTruth) -> None:
    np.testing.assert_array_equal(spim.true_affines[0], spim.nominal_affines[0])
    centre = (np.array(SHAPE[::-1]) - 1) / 2 * np.array(spim.voxel_size)
    for v in range(1, spim.n_views):
        nom = np.vstack([spim.nominal_affines[v], [0, 0, 0, 1]])
        true = np.vstack([spim.true_affines[v], [0, 0, 0, 1]])
        err = true @ np.linalg.inv(nom)  # world-space error E = A_true . A_nominal^-1
        dev = err[:3, :3] - np.eye(3)
        assert np.all(np.abs(np.diag(dev)) <= 0.01 + 1e-12)
        assert np.all(np.abs(dev[~np.eye(3, dtype=bool)]) <= 0.01 + 1e-12)
        assert np.abs(dev).max() > 1e-4  # there is an error to find
        shift = err[:3, :3] @ centre + err[:3, 3] - centre  # E acts about the centre
        assert np.all(np.abs(shift) <= 3.0 + 1e-9)


def test_drift_and_coordinate_helpers(spim: SpimTruth) -> None:
    np.testing.assert_array_equal(spim.drifts[0], 0.0)
    assert 0 < np.abs(spim.drifts[1]).max() <= 2.5
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 60, (20, 3))
    for v in range(spim.n_views):
        for t in range(spim.n_timepoints):
            w = spim.view_to_world(v, t, p)
            np.testing.assert_allclose(spim.world_to_view(v, t, w), p, atol=1e-9)
            a = spim.view_affine(v, t)
            np.testing.assert_allclose(p @ a[:, :3].T + a[:, 3], w, atol=1e-9)
            # the convention in words: p = A_v^-1 (w + d_t)
            full = np.vstack([spim.true_affines[v], [0, 0, 0, 1]])
            hom = np.column_stack([w + spim.drifts[t], np.ones(len(w))])
            np.testing.assert_allclose((np.linalg.inv(full) @ hom.T).T[:, :3], p, atol=1e-9)


def test_beads_in_view_are_inside_and_correspond(spim: SpimTruth) -> None:
    idx = beads_in_view_index(spim, 1, 1)
    pts = beads_in_view(spim, 1, 1)
    assert len(idx) == len(pts) > 50
    np.testing.assert_allclose(pts, spim.world_to_view(1, 1, spim.beads_world[idx]))
    upper = np.array(SHAPE[::-1]) - 1
    assert np.all((pts >= 0) & (pts <= upper))
    inner = beads_in_view(spim, 1, 1, margin=3.0)
    assert 0 < len(inner) < len(pts)
    # beads are resolvable and outside the specimen
    assert cKDTree(spim.beads_world).query(spim.beads_world, k=2)[0][:, 1].min() >= 4.0
    rel = (spim.beads_world - spim.specimen_centre) / np.array(spim.specimen_semi_axes)
    assert np.all(np.sum(rel**2, axis=1) > 1.0)


def test_visible_beads_are_local_maxima_where_projected(spim: SpimTruth) -> None:
    """Project beads_world with the true affine and drift: the image peaks there."""
    vs = np.array(spim.voxel_size)
    for t in range(spim.n_timepoints):
        for v in range(spim.n_views):
            img = tifffile.imread(spim.path("tiff", t, v)).astype(np.float64)
            smooth = ndimage.gaussian_filter(img, 1.0)
            peaks = (smooth == ndimage.maximum_filter(smooth, size=3)) & (
                smooth > spim.camera_offset + spim.background + 30
            )
            peaks_xyz = np.argwhere(peaks)[:, ::-1].astype(np.float64)
            beads = beads_in_view(spim, v, t, margin=2.0)
            assert len(beads) > 50
            dist, _ = cKDTree(peaks_xyz).query(beads)
            # most beads; the misses are close pairs merged by the z-elongated PSF
            assert np.mean(dist <= 1.0) >= 0.85, (t, v)
            assert np.mean(dist <= 1.5) >= 0.9, (t, v)
            assert np.median(dist) <= 0.75
            # every isolated bead (no other bead within 8 µm) is found within ~1 px
            all_px = spim.world_to_view(v, t, spim.beads_world)
            nearest = cKDTree(all_px * vs).query(beads * vs, k=2)[0][:, 1]
            isolated = nearest >= 8.0
            assert isolated.sum() > 10
            assert dist[isolated].max() <= 1.25, (t, v)


def test_tiff_and_czi_hold_identical_pixels_and_voxel_size(spim: SpimTruth) -> None:
    assert spim.files["czi"] == ["czi/t000.czi", "czi/t001.czi"]
    for t in range(spim.n_timepoints):
        with pyczi.open_czi(str(spim.path("czi", t))) as czi:
            box = czi.total_bounding_box
            assert box["Z"] == (0, SHAPE[0])
            assert sorted(czi.scenes_bounding_rectangle) == list(range(spim.n_views))
            scaling = czi.metadata["ImageDocument"]["Metadata"]["Scaling"]["Items"]["Distance"]
            metres = {d["@Id"]: float(d["Value"]) for d in scaling}
            assert [metres[k] * 1e6 for k in "XYZ"] == pytest.approx(spim.voxel_size, rel=1e-9)
            custom = czi.custom_attributes_metadata or {}
            assert custom["ScopeflowAngles"] == "0,120,240"
            for v in range(spim.n_views):
                tif = tifffile.imread(spim.path("tiff", t, v))
                assert tif.dtype == np.uint16
                assert tif.shape == SHAPE
                czi_vol = np.stack(
                    [czi.read(plane={"T": 0, "Z": z, "C": 0}, scene=v)[..., 0] for z in range(32)]
                )
                np.testing.assert_array_equal(czi_vol, tif)


def test_tiff_metadata_matches_truth(spim: SpimTruth) -> None:
    with tifffile.TiffFile(spim.path("tiff", 0, 1)) as tif:
        ij = tif.imagej_metadata or {}
        assert ij["spacing"] == pytest.approx(spim.voxel_size[2])
        assert ij["unit"] == "um"
        assert tif.series[0].axes == "ZYX"
        xres, yres = tif.pages[0].resolution
        assert (1 / xres, 1 / yres) == pytest.approx(spim.voxel_size[:2])


def test_config_yaml_points_at_the_data(spim: SpimTruth) -> None:
    for name, fmt in (("config.yaml", "tiff"), ("config_czi.yaml", "czi")):
        cfg = yaml.safe_load((spim.root / name).read_text())
        assert cfg["input"]["format"] == fmt
        assert cfg["ntimepoints"] == spim.n_timepoints
        assert cfg["angles"] == pytest.approx(list(spim.angles))
        assert [cfg["voxel_size"][k] for k in "xyz"] == pytest.approx(spim.voxel_size)
        assert cfg["reference_timepoint"] == 0
        assert cfg["registration"]["transformation_model"] == "affine"
        assert cfg["detection"] == {"sigma": 1.8, "threshold": 0.008}
        for t in range(spim.n_timepoints):
            for v in range(spim.n_views):
                assert (spim.root / cfg["input"]["pattern"].format(t=t, v=v)).is_file()


def test_same_seed_same_data_other_seed_other_data(tmp_path: Path) -> None:
    kw = {"views": 2, "timepoints": 1, "shape": (16, 32, 32), "write_czi": False}
    a = make_spim_dataset(tmp_path / "a", seed=3, **kw)  # type: ignore[arg-type]
    b = make_spim_dataset(tmp_path / "b", seed=3, **kw)  # type: ignore[arg-type]
    c = make_spim_dataset(tmp_path / "c", seed=4, **kw)  # type: ignore[arg-type]
    assert a.to_dict()["beads_world"] == b.to_dict()["beads_world"]
    np.testing.assert_array_equal(a.true_affines, b.true_affines)
    np.testing.assert_array_equal(
        tifffile.imread(a.path("tiff", 0, 1)), tifffile.imread(b.path("tiff", 0, 1))
    )
    assert not np.array_equal(a.true_affines, c.true_affines)
    assert not (tmp_path / "a" / "czi").exists()
    assert a.files["czi"] == []


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"views": 0}, "views"), ({"timepoints": 0}, "timepoints"), ({"shape": (8, 64, 64)}, "shape")],
)
def test_invalid_arguments(tmp_path: Path, kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_spim_dataset(tmp_path, **kwargs)  # type: ignore[arg-type]
    assert info.value.problems[0][0] == key


def test_default_size_has_1000_to_2000_beads_per_view(tmp_path: Path) -> None:
    truth = make_spim_dataset(tmp_path, write_czi=False)
    assert truth.shape == (64, 128, 128)
    assert truth.voxel_size == (1.0, 1.0, 2.0)
    for t in range(truth.n_timepoints):
        for v in range(truth.n_views):
            assert 1000 <= len(beads_in_view(truth, v, t)) <= 2000


def test_public_names_of_scopeflow_testing() -> None:
    import scopeflow.testing as st

    assert sorted(st.__all__) == [
        "CytoKind",
        "CytoTruth",
        "Server",
        "SpimTruth",
        "beads_in_view",
        "beads_in_view_index",
        "clear_scene_cache",
        "free_port",
        "make_cyto_dataset",
        "make_spim_dataset",
        "read_truth_table",
        "registration_errors",
        "render_ground_truth",
    ]
    assert all(hasattr(st, name) for name in st.__all__)
