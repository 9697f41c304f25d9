"""CZI reader on files written for the test: the shared suite, RGB, mosaics, series, chunks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from distributed import Client
from pylibCZIrw import czi as pyczi

from scopeflow.core import FormatError
from scopeflow.io import _czi
from scopeflow.io._base import open_image, reader_class
from scopeflow.io._czi import CziReader
from scopeflow.testing import make_spim_dataset

from .reader_suite import ReaderSample, ReaderSuite

RNG = np.random.default_rng(11)
VOXEL = (0.5, 0.5, 2.0)


@pytest.fixture(scope="module")
def spim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    """A synthetic time point: two views as CZI scenes, the same volumes as ImageJ TIFFs."""
    out = tmp_path_factory.mktemp("spim")
    make_spim_dataset(out, views=2, timepoints=1, shape=(16, 32, 48), voxel_size=VOXEL)
    views = [tifffile.imread(out / "tiff" / f"t000_v{v:02d}.tif") for v in range(2)]
    return out / "czi" / "t000.czi", views


def _write(path: Path, planes: dict[tuple[int, int, int, int], Any], **meta: Any) -> Path:
    """Write ``{(scene, t, c, z): data or (data, (x, y))}`` with pylibCZIrw, scaling in metres."""
    with pyczi.create_czi(str(path), exist_ok=True) as czi:
        for (scene, t, c, z), item in planes.items():
            data, location = item if isinstance(item, tuple) else (item, (0, 0))
            czi.write(data=data, plane={"T": t, "C": c, "Z": z}, scene=scene, location=location)
        czi.write_metadata(document_name=path.stem, **meta)
    return path


class TestCziReaderSuite(ReaderSuite):
    reader_cls = CziReader

    @pytest.fixture
    def sample(self, spim: tuple[Path, list[np.ndarray]]) -> ReaderSample:
        path, views = spim
        return ReaderSample(
            path=path,
            arrays=[v[np.newaxis, np.newaxis] for v in views],  # T, C of one
            axes=["TCZYX", "TCZYX"],
            voxel_size=[VOXEL, VOXEL],
            channel_names=[("beads",), ("beads",)],
        )

    @pytest.fixture
    def corrupt(self, spim: tuple[Path, list[np.ndarray]], tmp_path: Path) -> Path:
        raw = spim[0].read_bytes()
        cut = tmp_path / "cut.czi"
        cut.write_bytes(raw[: len(raw) * 2 // 3])
        return cut


def test_spim_metadata(spim: tuple[Path, list[np.ndarray]]) -> None:
    with CziReader(spim[0]) as reader:
        metas = list(reader)
    assert [m.scene for m in metas] == [0, 1]
    assert [m.angle for m in metas] == [0.0, 180.0]  # ScopeflowAngles custom attribute
    assert [m.name for m in metas] == ["t000_S0", "t000_S1"]
    assert all(m.unit == "micrometer" and m.position == (0.0, 0.0, 0.0) for m in metas)


def test_multichannel_timelapse(tmp_path: Path) -> None:
    data = RNG.integers(0, 60000, (3, 2, 4, 20, 30), dtype=np.uint16)  # T C Z Y X
    planes = {
        (0, t, c, z): data[t, c, z]
        for t in range(3)
        for c in range(2)
        for z in range(4)
    }  # fmt: skip
    path = _write(
        tmp_path / "tcz.czi", planes, channel_names={0: "DAPI", 1: "GFP"},
        scale_x=0.2e-6, scale_y=0.25e-6, scale_z=1.5e-6,
    )  # fmt: skip
    with open_image(path) as reader:
        meta = reader.metadata()
        assert (meta.axes, meta.shape, meta.dtype) == ("TCZYX", data.shape, np.uint16)
        assert meta.channel_names == ("DAPI", "GFP")
        np.testing.assert_allclose(meta.voxel_size, (0.2, 0.25, 1.5))
        np.testing.assert_array_equal(reader.to_dask().compute(), data)


def test_bgr_pixels_come_back_as_rgb(tmp_path: Path) -> None:
    bgr = RNG.integers(0, 255, (2, 12, 16, 3), dtype=np.uint8)  # C Y X, memory order B G R
    path = _write(tmp_path / "rgb.czi", {(0, 0, c, 0): bgr[c] for c in range(2)})
    with CziReader(path) as reader:
        meta = reader.metadata()
        assert (meta.axes, meta.shape, meta.dtype) == ("TCZYXS", (1, 2, 1, 12, 16, 3), np.uint8)
        assert meta.unit == "pixel"  # no scaling in the file
        assert meta.channel_names == ("Channel:0", "Channel:1")  # no Name attribute: the Id
        got = reader.to_dask().compute()
    np.testing.assert_array_equal(got[0, :, 0], bgr[..., ::-1])


def test_mixed_pixel_types_read_as_the_widest(tmp_path: Path) -> None:
    c0 = RNG.integers(0, 255, (10, 12), dtype=np.uint8)
    c1 = RNG.integers(0, 60000, (10, 12), dtype=np.uint16)
    path = _write(tmp_path / "mixed.czi", {(0, 0, 0, 0): c0, (0, 0, 1, 0): c1})
    with CziReader(path) as reader:
        assert reader.metadata().dtype == np.uint16
        got = reader.to_dask().compute()
    np.testing.assert_array_equal(got[0, 0, 0], c0)
    np.testing.assert_array_equal(got[0, 1, 0], c1)


def test_mosaic_scene_is_stitched_and_positioned(tmp_path: Path) -> None:
    left = RNG.integers(1, 255, (10, 12), dtype=np.uint8)
    right = RNG.integers(1, 255, (10, 8), dtype=np.uint8)
    other = RNG.integers(1, 255, (6, 6), dtype=np.uint8)
    path = tmp_path / "mosaic.czi"
    with pyczi.create_czi(str(path), exist_ok=True) as czi:
        czi.write(data=left, location=(100, 50), scene=0)
        czi.write(data=right, location=(115, 52), scene=0)  # a 3-px gap, 2 px lower
        czi.write(data=other, location=(300, 50), scene=1)
        czi.write_metadata(document_name="mosaic", scale_x=2e-6, scale_y=2e-6)
    expected = np.zeros((12, 23), np.uint8)
    expected[0:10, 0:12] = left
    expected[2:12, 15:23] = right
    with CziReader(path) as reader:
        assert reader.series_count == 2
        meta = reader.metadata(0)
        assert meta.shape == (1, 1, 1, 12, 23)
        assert meta.position == (200.0, 100.0, 0.0)  # µm: pixel origin times 2 µm
        assert meta.extra["tiles"] == [[0, 0, 12, 10], [15, 2, 8, 10]]
        np.testing.assert_array_equal(reader.to_dask(0).compute()[0, 0, 0], expected)
        assert "tiles" not in reader.metadata(1).extra
        np.testing.assert_array_equal(reader.to_dask(1).compute()[0, 0, 0], other)


def test_views_and_illuminations_are_series(tmp_path: Path) -> None:
    # pylibCZIrw's writer knows T/Z/C/S only; its native writer takes any plane coordinate
    path = tmp_path / "views.czi"
    with pyczi.create_czi(str(path), exist_ok=True) as czi:
        for v in range(2):
            for i in range(2):
                tile = czi._format_data(np.full((8, 10, 1), 10 * v + i, np.uint16))
                assert czi._czi_writer.AddTile(f"T0 Z0 C0 S0 V{v} I{i}", tile, 0, 0, 0, "r")
        czi.write_metadata(document_name="views")
    with CziReader(path) as reader:
        metas = list(reader)
        assert [m.extra["plane"] for m in metas] == [
            {"V": 0, "I": 0}, {"V": 0, "I": 1}, {"V": 1, "I": 0}, {"V": 1, "I": 1}
        ]  # fmt: skip
        assert [m.illumination for m in metas] == [0, 1, 0, 1]
        values = [int(reader.to_dask(i).compute().max()) for i in range(4)]
    assert values == [0, 1, 10, 11]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(_czi, "_CHUNK_BYTES", 2 * 30 * 40 * 2)  # two planes of 30 x 40 uint16
    yield


@pytest.mark.usefixtures("small_chunks")
def test_chunks_group_planes_and_split_large_ones(tmp_path: Path) -> None:
    small = RNG.integers(0, 999, (5, 30, 40), dtype=np.uint16)
    path = _write(tmp_path / "z.czi", {(0, 0, 0, z): small[z] for z in range(5)})
    with CziReader(path) as reader:
        arr = reader.to_dask()
    assert arr.chunks[2] == (2, 2, 1)
    np.testing.assert_array_equal(arr[0, 0, 1:4, 5:9].compute(), small[1:4, 5:9])
    big = RNG.integers(0, 999, (100, 40), dtype=np.uint16)  # 8000 bytes > 4800
    path = _write(tmp_path / "y.czi", {(0, 0, 0, 0): big})
    with CziReader(path) as reader:
        arr = reader.to_dask()
    assert arr.chunks[3] == (60, 40)
    np.testing.assert_array_equal(arr.compute()[0, 0, 0], big)


def test_failure_during_compute_is_a_format_error(
    spim: tuple[Path, list[np.ndarray]], tmp_path: Path
) -> None:
    path = tmp_path / "copy.czi"
    path.write_bytes(spim[0].read_bytes())
    with CziReader(path) as reader:
        arr = reader.to_dask(1)
    path.write_bytes(b"")  # damaged after opening
    with pytest.raises(FormatError, match="cannot read pixels of scene 1") as info:
        arr.compute()
    assert info.value.path == path


def test_text_file_with_czi_suffix(tmp_path: Path) -> None:
    fake = tmp_path / "notes.czi"
    fake.write_text("hello, not a CZI\n" * 40)
    with pytest.raises(FormatError, match=r"notes\.czi: not a CZI file"):
        open_image(fake)
    assert reader_class(fake) is CziReader


def test_computes_on_worker_processes(
    dask_client: Client, spim: tuple[Path, list[np.ndarray]]
) -> None:
    with CziReader(spim[0]) as reader:
        arr = reader.to_dask(1)
    np.testing.assert_array_equal(dask_client.compute(arr).result()[0, 0], spim[1][1])
