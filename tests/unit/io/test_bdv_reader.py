"""BDV HDF5 + XML reader: the shared suite, partitions and links, metadata, pybdv's files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pybdv
import pytest
from distributed import Client

from scopeflow.core import FormatError, InputNotFoundError
from scopeflow.io._bdv_hdf5 import partition_filename, write_bdv_master, write_bdv_partition
from scopeflow.io._bdv_reader import BdvReader
from scopeflow.io._bdv_xml import read_spimdata, write_spimdata
from scopeflow.io._pyramid import Pyramid
from scopeflow.io.spimdata import AttributeValue, SpimData, ViewSetup, merge_spimdata

from .reader_suite import ReaderSample, ReaderSuite

RNG = np.random.default_rng(5)
VOXEL = {0: (0.5, 0.5, 2.0), 1: (0.25, 0.25, 1.0)}
SIZES = {0: (10, 30, 40), 1: (14, 20, 24)}  # z, y, x: setups differ in size
PYR = Pyramid(((1, 1, 1), (2, 2, 1)), ((32, 32, 4), (16, 16, 16)))


def _setups(sd: SpimData) -> None:
    for sid, (z, y, x) in SIZES.items():
        setup = ViewSetup(sid, f"view {sid}", (x, y, z), VOXEL[sid], "µm", {"channel": sid})
        sd.add_setup(setup, channel=("GFP", "RFP")[sid])


def write_dataset(folder: Path, timepoints: tuple[int, ...] = (0, 1)) -> tuple[Path, dict]:
    """Per-time-point partitions and XMLs, merged as the pipeline does; returns the XML."""
    vols = {
        (t, s): RNG.integers(0, 65535, SIZES[s], dtype=np.uint16, endpoint=True)
        for t in timepoints
        for s in SIZES
    }
    xmls = []
    for t in timepoints:
        part = folder / partition_filename("ds", t)
        write_bdv_partition(part, t, {s: vols[(t, s)] for s in SIZES}, pyramid=PYR)
        sd = SpimData(timepoints=[t], hdf5=part)
        _setups(sd)
        for s in SIZES:
            sd.prepend_transform(t, s, np.diag([*VOXEL[s], 1.0])[:3], "calibration")
            sd.prepend_transform(t, s, np.c_[np.eye(3), [t, 2.0, 0]], "drift")
        xmls.append(write_spimdata(sd, folder / f"ds-t{t:05d}.xml"))
    merged = merge_spimdata(xmls, hdf5=folder / "ds.h5")
    write_bdv_master(folder / "ds.h5", merged.partitions)
    return write_spimdata(merged, folder / "ds.xml"), vols


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, dict]:
    return write_dataset(tmp_path)


class TestBdvReaderSuite(ReaderSuite):
    reader_cls = BdvReader

    @pytest.fixture
    def sample(self, dataset: tuple[Path, dict]) -> ReaderSample:
        xml, vols = dataset
        views = sorted(vols)
        return ReaderSample(
            path=xml,
            arrays=[vols[v] for v in views],
            axes=["ZYX"] * len(views),
            voxel_size=[VOXEL[s] for _, s in views],
            channel_names=[(("GFP", "RFP")[s],) for _, s in views],
        )

    @pytest.fixture
    def corrupt(self, tmp_path: Path) -> Path:
        vol = RNG.integers(0, 4000, (16, 64, 64), dtype=np.uint16)
        h5 = write_bdv_partition(tmp_path / "one.h5", 0, {0: vol}).path
        sd = SpimData(timepoints=[0], hdf5=h5)
        sd.add_setup(ViewSetup(0, "v", (64, 64, 16), (1.0, 1.0, 1.0)))
        data = h5.read_bytes()
        h5.write_bytes(data[: len(data) * 6 // 10])
        return write_spimdata(sd, tmp_path / "one.xml")


def test_metadata_of_views(dataset: tuple[Path, dict]) -> None:
    xml, vols = dataset
    with BdvReader(xml) as reader:
        assert reader.series_count == 4
        i = reader.series_index(1, 1)
        meta = reader.metadata(i)
        assert meta.shape == SIZES[1] and meta.dtype == np.uint16
        assert meta.unit == "micrometer"  # "µm" in the XML
        assert meta.name == "view 1"
        assert meta.extra["timepoint"] == 1 and meta.extra["setup"] == 1
        assert meta.extra["levels"] == [[1, 1, 1], [2, 2, 1]]
        assert meta.extra["attributes"] == {"channel": 1}
        model = np.array(meta.extra["model"])
        np.testing.assert_allclose(model, [[0.25, 0, 0, 1], [0, 0.25, 0, 2], [0, 0, 1, 0]])
        assert reader.levels(i) == 2
        low = reader.to_dask(i, level=1)
        assert low.shape == (14, 10, 12) and low.dtype == np.uint16
        expected = vols[(1, 1)].reshape(14, 10, 2, 12, 2).mean(axis=(2, 4))
        np.testing.assert_array_equal(low.compute(), np.floor(expected + 0.5))
        with pytest.raises(IndexError, match="level 2"):
            reader.to_dask(i, level=2)
        with pytest.raises(IndexError, match="no view"):
            reader.series_index(5, 0)


def test_per_timepoint_xml_reads_its_partition(dataset: tuple[Path, dict]) -> None:
    xml, vols = dataset
    with BdvReader(xml.parent / "ds-t00001.xml") as reader:
        assert reader.series_count == 2
        np.testing.assert_array_equal(reader.to_dask(1).compute(), vols[(1, 1)])


def test_missing_partition_is_an_error_naming_it(dataset: tuple[Path, dict]) -> None:
    xml, _ = dataset
    (xml.parent / "ds-t00001.h5").unlink()
    with pytest.raises(FormatError, match=r"ds-t00001\.h5") as info:
        BdvReader(xml)
    assert str(xml) in str(info.value)


def test_missing_master(dataset: tuple[Path, dict]) -> None:
    xml, _ = dataset
    (xml.parent / "ds.h5").unlink()
    with pytest.raises(InputNotFoundError, match=r"ds\.h5"):
        BdvReader(xml)


def test_other_image_loader_is_a_format_error(tmp_path: Path) -> None:
    sd = SpimData(timepoints=[0], image_loader="bdv.n5")
    sd.loader_xml = (
        '<ImageLoader format="bdv.n5" version="1.0"><n5 type="relative">x.n5</n5></ImageLoader>'
    )
    sd.add_setup(ViewSetup(0))
    xml = write_spimdata(sd, tmp_path / "n5.xml")
    assert 'format="bdv.n5"' in xml.read_text()
    with pytest.raises(FormatError, match=r"bdv\.n5"):
        BdvReader(xml)


def test_float_dataset(tmp_path: Path) -> None:
    vol = RNG.random((6, 20, 30)).astype(np.float32)
    h5 = write_bdv_partition(tmp_path / "f.h5", 3, {0: vol}).path
    sd = SpimData(timepoints=[3], hdf5=h5)
    sd.add_setup(ViewSetup(0, None, (30, 20, 6), (1.0, 1.0, 1.0), "pixel"))
    with BdvReader(write_spimdata(sd, tmp_path / "f.xml")) as reader:
        meta = reader.metadata(0)
        assert meta.dtype == np.float32 and meta.name == "setup 0"
        assert meta.channel_names == ("setup0",)
        np.testing.assert_array_equal(reader.to_dask(0).compute(), vol)


@pytest.mark.filterwarnings("ignore:Setup . is present:UserWarning")  # pybdv adds a time point
def test_reads_pybdv_dataset(tmp_path: Path) -> None:
    data = {
        (0, 0): RNG.integers(0, 30000, (12, 20, 32), dtype=np.uint16),
        (0, 1): RNG.integers(0, 30000, (12, 20, 32), dtype=np.uint16),
        (1, 0): RNG.integers(0, 30000, (12, 20, 32), dtype=np.uint16),
    }
    path = str(tmp_path / "pybdv.h5")
    shift = [float(v) for v in (1, 0, 0, 3, 0, 1, 0, 4, 0, 0, 1, 5)]
    for (t, s), vol in data.items():
        pybdv.make_bdv(
            vol,
            path,
            downscale_factors=[[2, 2, 2]] if s == 0 else None,
            downscale_mode="mean",
            resolution=[2.0, 0.5, 0.25],
            unit="micrometer",
            setup_id=s,
            timepoint=t,
            setup_name=f"pybdv {s}",
            affine={"shift": shift} if s == 1 else None,
            attributes={"channel": {"id": s}, "angle": {"id": 0}},
        )
    with BdvReader(tmp_path / "pybdv.xml") as reader:
        assert reader.series_count == 3
        assert reader.metadata(0).extra["absent_views"] == [[1, 1]]  # pybdv never wrote it
        for i in range(3):
            meta = reader.metadata(i)
            view = (meta.extra["timepoint"], meta.extra["setup"])
            assert meta.voxel_size == (0.25, 0.5, 2.0) and meta.unit == "micrometer"
            assert meta.name == f"pybdv {view[1]}"
            np.testing.assert_array_equal(reader.to_dask(i).compute(), data[view])
        model = np.array(reader.metadata(reader.series_index(0, 1)).extra["model"])
        np.testing.assert_allclose(model, np.reshape(shift, (3, 4)))
        assert reader.levels(reader.series_index(0, 0)) == 2
        assert reader.to_dask(reader.series_index(0, 0), level=1).shape == (6, 10, 16)
    assert read_spimdata(tmp_path / "pybdv.xml").timepoints == [0, 1]


def test_bigstitcher_attributes_in_metadata(tmp_path: Path) -> None:
    vol = RNG.integers(0, 100, (4, 8, 8), dtype=np.uint16)
    h5 = write_bdv_partition(tmp_path / "b.h5", 0, {0: vol}).path
    sd = SpimData(timepoints=[0], hdf5=h5)
    attrs = {"angle": 1, "tile": 2, "illumination": 1, "channel": 0}
    sd.add_setup(ViewSetup(0, "0", (8, 8, 4), (0.7, 0.7, 2.0), "um", attrs), channel="488")
    sd.attributes["angle"][1] = AttributeValue(1, "45", (("axis", "0 1 0"), ("degrees", "45.0")))
    sd.attributes["tile"][2] = AttributeValue(2, "2", (("location", "912.0 10.5 0.0"),))
    with BdvReader(write_spimdata(sd, tmp_path / "b.xml")) as reader:
        meta = reader.metadata(0)
    assert meta.angle == 45.0 and meta.tile == 2 and meta.illumination == 1
    assert meta.position == (912.0, 10.5, 0.0)
    assert meta.channel_names == ("488",) and meta.unit == "micrometer"


def test_lazy_arrays_compute_on_dask_workers(
    dataset: tuple[Path, dict], dask_client: Client
) -> None:
    xml, vols = dataset
    with BdvReader(xml) as reader:
        arrays = [reader.to_dask(i) for i in range(reader.series_count)]
    sums = dask_client.compute([a.sum() for a in arrays], sync=True)
    assert sums == [int(vols[v].sum()) for v in sorted(vols)]


def test_damaged_chunk_fails_the_read_naming_the_file(tmp_path: Path) -> None:
    vol = RNG.integers(0, 4000, (16, 32, 32), dtype=np.uint16)
    h5 = write_bdv_partition(tmp_path / "d.h5", 0, {0: vol}).path
    with h5py.File(h5, "r") as f:
        info = f["t00000/s00/0/cells"].id.get_chunk_info_by_coord((0, 16, 16))
    with h5.open("r+b") as fh:  # garble one compressed chunk, leave the metadata intact
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)
    sd = SpimData(timepoints=[0], hdf5=h5)
    sd.add_setup(ViewSetup(0, "v", (32, 32, 16), (1.0, 1.0, 1.0)))
    xml = write_spimdata(sd, tmp_path / "d.xml")
    with BdvReader(xml) as reader:
        arr = reader.to_dask(0)
        np.testing.assert_array_equal(arr[:, :16, :16].compute(), vol[:, :16, :16])  # intact
        with pytest.raises(FormatError, match=r"d\.h5") as err:
            arr.compute()
    assert str(xml) in str(err.value)
