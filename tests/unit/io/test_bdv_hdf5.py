"""BDV HDF5 writer: the layout BigDataViewer reads, pyramid values, partitions + master, pybdv."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import h5py
import numpy as np
import pybdv
import pytest
from pybdv import metadata as bdv_meta
from pybdv import util as bdv_util

from scopeflow.core import FormatError
from scopeflow.io import _pyramid
from scopeflow.io._bdv_hdf5 import (
    cells_path,
    partition_filename,
    stored_dtype,
    write_bdv_master,
    write_bdv_partition,
)
from scopeflow.io._bdv_xml import write_spimdata
from scopeflow.io._pyramid import Pyramid, block_mean
from scopeflow.io.spimdata import Partition, SpimData, ViewSetup

RNG = np.random.default_rng(11)
PYR = Pyramid(((1, 1, 1), (2, 2, 1), (4, 4, 2)), ((32, 32, 4), (16, 16, 16), (16, 16, 16)))


def _volume(shape: tuple[int, int, int], dtype: type = np.uint16) -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return RNG.random(shape).astype(dtype) * 100
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def _rounded(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.floor(values + 0.5), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def _expected_levels(vol: np.ndarray, pyr: Pyramid) -> list[np.ndarray]:
    """Each level = block mean of the full-resolution volume by its factor, rounded half up."""
    return [_rounded(block_mean(vol, r[::-1]), vol.dtype) for r in pyr.resolutions]


def test_partition_layout_as_bigdataviewer_writes_it(tmp_path: Path) -> None:
    vols = {0: _volume((21, 70, 90)), 3: _volume((9, 33, 40))}
    path = tmp_path / partition_filename("ds", 7)
    info = write_bdv_partition(path, 7, vols, pyramid=PYR)
    assert path.name == "ds-t00007.h5"
    assert info.partition == Partition(path, (7,), (0, 3))
    assert info.shapes == {0: (21, 70, 90), 3: (9, 33, 40)}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    with h5py.File(path, "r") as f:
        assert sorted(f) == ["s00", "s03", "t00007"]
        for sid, vol in vols.items():
            group = f[f"s{sid:02d}"]
            assert "dataType" not in group.attrs  # uint16: the classic layout
            assert group["resolutions"].dtype == np.float64
            assert group["subdivisions"].dtype == np.int32
            assert group["resolutions"][()].tolist() == [[1, 1, 1], [2, 2, 1], [4, 4, 2]]
            assert group["subdivisions"][()].tolist() == [[32, 32, 4], [16, 16, 16], [16, 16, 16]]
            for level, expected in enumerate(_expected_levels(vol, PYR)):
                dset = f[cells_path(7, sid, level)]
                assert dset.dtype == np.int16
                assert dset.compression == "gzip" and dset.shuffle
                sub = PYR.subdivisions[level][::-1]
                assert dset.chunks == tuple(min(c, n) for c, n in zip(sub, dset.shape, strict=True))
                np.testing.assert_array_equal(dset[()].view(np.uint16), expected)
        assert f[cells_path(7, 0, 2)].shape == (10, 17, 22)


def test_proposed_pyramid_and_dask_input(tmp_path: Path) -> None:
    vol = _volume((40, 300, 260))
    src = da.from_array(vol, chunks=(7, 100, 130))
    info = write_bdv_partition(tmp_path / "p.h5", 0, {0: src}, voxel_size=(0.5, 0.5, 1.5))
    pyr = info.pyramids[0]
    assert pyr.resolutions == ((1, 1, 1), (2, 2, 1)) and pyr.subdivisions[0] == (32, 32, 4)
    with h5py.File(tmp_path / "p.h5", "r") as f:
        for level, expected in enumerate(_expected_levels(vol, pyr)):
            np.testing.assert_array_equal(f[cells_path(0, 0, level)][()].view(np.uint16), expected)


def test_many_blocks_and_loopback_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small blocks and one pass per level (each read back from the file, as BDV's loopback)."""
    monkeypatch.setattr(_pyramid, "MAX_UNIT_BYTES", 1)
    pyr = Pyramid(((1, 1, 1), (2, 2, 2), (4, 4, 2), (8, 8, 8)), ((16, 16, 16),) * 4)
    vol = _volume((37, 75, 83))
    write_bdv_partition(tmp_path / "p.h5", 0, {0: vol}, pyramid=pyr, block_bytes=20_000)
    expected = vol
    with h5py.File(tmp_path / "p.h5", "r") as f:
        for level in range(pyr.levels):
            if level:
                rel = [
                    a // b
                    for a, b in zip(pyr.resolutions[level], pyr.resolutions[level - 1], strict=True)
                ]
                expected = _rounded(block_mean(expected, rel[::-1]), vol.dtype)
            got = f[cells_path(0, 0, level)][()].view(np.uint16)
            np.testing.assert_array_equal(got, expected)


def test_axis_shorter_than_its_factor_is_border_extended(tmp_path: Path) -> None:
    pyr = Pyramid(((1, 1, 1), (4, 4, 8)), ((16, 16, 16),) * 2)
    vol = _volume((3, 20, 18))
    write_bdv_partition(tmp_path / "p.h5", 0, {0: vol}, pyramid=pyr)
    with h5py.File(tmp_path / "p.h5", "r") as f:
        level = f[cells_path(0, 0, 1)][()].view(np.uint16)
    assert level.shape == (1, 5, 4)
    padded = np.concatenate([vol, np.repeat(vol[-1:], 5, axis=0)])  # z extended to 8
    np.testing.assert_array_equal(level, _expected_levels(padded, pyr)[1])


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.uint32])
def test_other_pixel_types_carry_a_data_type(tmp_path: Path, dtype: type) -> None:
    vol = _volume((10, 40, 36), dtype)
    write_bdv_partition(tmp_path / "p.h5", 0, {2: vol}, pyramid=PYR)
    with h5py.File(tmp_path / "p.h5", "r") as f:
        assert f["s02"].attrs["dataType"] == np.dtype(dtype).name
        for level, expected in enumerate(_expected_levels(vol, PYR)):
            dset = f[cells_path(0, 2, level)]
            assert dset.dtype == dtype
            np.testing.assert_allclose(dset[()], expected, rtol=1e-6)


def test_stored_dtype() -> None:
    assert stored_dtype(np.uint16) == (np.dtype(np.int16), None)
    assert stored_dtype(np.float64) == (np.dtype(np.float64), "float64")
    with pytest.raises(ValueError, match="cannot store"):
        stored_dtype(np.bool_)
    with pytest.raises(ValueError, match="cannot store"):
        stored_dtype(np.complex64)


def test_uncompressed_and_bad_arguments(tmp_path: Path) -> None:
    vol = _volume((8, 20, 20))
    write_bdv_partition(tmp_path / "raw.h5", 0, {0: vol}, compression=None)
    with h5py.File(tmp_path / "raw.h5", "r") as f:
        dset = f[cells_path(0, 0, 0)]
        assert dset.compression is None and not dset.shuffle
        np.testing.assert_array_equal(dset[()].view(np.uint16), vol)
    write_bdv_partition(tmp_path / "noshuffle.h5", 0, {0: vol}, shuffle=False, compression_level=6)
    with h5py.File(tmp_path / "noshuffle.h5", "r") as f:
        assert f[cells_path(0, 0, 0)].compression_opts == 6
        np.testing.assert_array_equal(f[cells_path(0, 0, 0)][()].view(np.uint16), vol)
    with pytest.raises(ValueError, match="compression"):
        write_bdv_partition(tmp_path / "x.h5", 0, {0: vol}, compression="lzf")
    with pytest.raises(ValueError, match="3-D"):
        write_bdv_partition(tmp_path / "y.h5", 0, {0: vol[0]})
    assert not (tmp_path / "y.h5").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _two_partitions(tmp_path: Path) -> tuple[list[Path], dict[int, dict[int, np.ndarray]]]:
    vols = {t: {s: _volume((12, 40 + s, 48)) for s in (0, 1)} for t in (0, 1)}
    parts = [
        write_bdv_partition(
            tmp_path / "parts" / partition_filename("ds", t), t, vols[t], pyramid=PYR
        ).path
        for t in (0, 1)
    ]
    return parts, vols


def test_master_links_partitions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts, vols = _two_partitions(tmp_path)
    master = write_bdv_master(tmp_path / "ds.h5", parts)
    monkeypatch.chdir("/")  # links are relative to the master's folder, not the working directory
    with h5py.File(master, "r") as f:
        link = f["t00001/s01/2"].get("cells", getlink=True)
        assert isinstance(link, h5py.ExternalLink)
        assert link.filename == "parts/ds-t00001.h5"
        assert link.path == "t00001/s01/2/cells"
        assert f["s01/resolutions"][()].tolist() == [list(r) for r in PYR.resolutions]
        for t in (0, 1):
            for s in (0, 1):
                got = f[cells_path(t, s, 0)][()].view(np.uint16)
                np.testing.assert_array_equal(got, vols[t][s])


def test_master_maps_partition_ids(tmp_path: Path) -> None:
    vol = _volume((8, 20, 20))
    part = write_bdv_partition(tmp_path / "p.h5", 0, {0: vol}).path
    master = write_bdv_master(tmp_path / "m.h5", [Partition(part, (5,), (2,), (0,), (0,))])
    with h5py.File(master, "r") as f:
        assert sorted(f) == ["s02", "t00005"]
        np.testing.assert_array_equal(f[cells_path(5, 2, 0)][()].view(np.uint16), vol)


def test_master_rejects_inconsistent_partitions(tmp_path: Path) -> None:
    vol = _volume((8, 40, 40))
    a = write_bdv_partition(tmp_path / "a.h5", 0, {0: vol}, pyramid=PYR).path
    b = write_bdv_partition(tmp_path / "b.h5", 1, {0: vol}).path
    with pytest.raises(FormatError, match="setup 0") as info:
        write_bdv_master(tmp_path / "m.h5", [a, b])
    assert str(b) in str(info.value)
    (tmp_path / "junk.h5").write_text("junk")
    with pytest.raises(FormatError, match=r"junk\.h5"):
        write_bdv_master(tmp_path / "m.h5", [tmp_path / "junk.h5"])
    assert not (tmp_path / "m.h5").exists()


def test_pybdv_reads_scopeflow_files(tmp_path: Path) -> None:
    parts, vols = _two_partitions(tmp_path)
    master = write_bdv_master(tmp_path / "ds.h5", parts)
    sd = SpimData(timepoints=[0, 1], hdf5=master)
    for s in (0, 1):
        sd.add_setup(ViewSetup(s, f"view{s}", (48, 40 + s, 12), (0.5, 0.5, 2.0)))
        for t in (0, 1):
            sd.prepend_transform(t, s, np.diag([0.5, 0.5, 2.0, 1.0])[:3], "calibration")
    xml = str(write_spimdata(sd, tmp_path / "ds.xml"))
    assert bdv_meta.get_setup_ids(xml) == [0, 1]
    assert bdv_meta.get_timepoints(xml, 1) == [0, 1]
    assert bdv_meta.get_resolution(xml, 1) == [2.0, 0.5, 0.5]  # pybdv answers z, y, x
    assert bdv_meta.get_size(xml, 1) == (12, 41, 48)
    assert bdv_meta.get_unit(xml, 0) == "micrometer"
    assert bdv_meta.get_data_path(xml, return_absolute_path=True) == str(master)
    assert bdv_meta.get_affine(xml, 1, timepoint=1) == {
        "affine0": [0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0]
    }
    assert bdv_util.get_scale_factors(str(master), 1) == [[1, 1, 1], [1, 2, 2], [2, 4, 4]]
    assert bdv_util.get_number_of_scales(str(master), 1, 0) == 3
    with bdv_util.open_file(str(master), "r") as f:
        key = bdv_util.get_key(True, timepoint=1, setup_id=0, scale=0)
        assert f[key].dtype == np.int16
        np.testing.assert_array_equal(f[key][()].view(np.uint16), vols[1][0])


def test_scopeflow_pyramid_matches_pybdv_mean_downsampling(tmp_path: Path) -> None:
    vol = _volume((16, 32, 48), np.uint8)  # pybdv keeps uint8; its "mean" mode averages blocks
    pybdv.make_bdv(
        vol,
        str(tmp_path / "ref.h5"),
        downscale_factors=[[2, 2, 2]],
        downscale_mode="mean",
        setup_id=0,
    )
    pyr = Pyramid(((1, 1, 1), (2, 2, 2)), ((16, 16, 16),) * 2)
    write_bdv_partition(tmp_path / "ours.h5", 0, {0: vol}, pyramid=pyr)
    with h5py.File(tmp_path / "ref.h5", "r") as ref, h5py.File(tmp_path / "ours.h5", "r") as ours:
        a, b = ref[cells_path(0, 0, 1)][()], ours[cells_path(0, 0, 1)][()]
    assert a.shape == b.shape
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # rounding of .5 may differ


def test_write_replaces_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "p.h5"
    path.write_bytes(b"old")
    write_bdv_partition(path, 0, {0: _volume((4, 8, 8))})
    assert h5py.is_hdf5(path)
    assert [p.name for p in tmp_path.iterdir()] == ["p.h5"]
