"""TIFF / OME-TIFF reader: the shared suite, axis mapping, physical sizes and damaged files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from distributed import Client

from scopeflow.core import FormatError
from scopeflow.io._base import open_image, reader_class
from scopeflow.io._tiff import OmeTiffReader, TiffReader, map_axes

from .reader_suite import ReaderSample, ReaderSuite

RNG = np.random.default_rng(7)


def _truncate(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


@pytest.fixture
def hyperstack(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """An ImageJ hyperstack TZCYX with µm sizes, a frame interval and channel labels."""
    data = RNG.integers(0, 4000, (2, 3, 2, 24, 40), dtype=np.uint16)  # T Z C Y X
    path = tmp_path / "stack.tif"
    labels = ["DAPI", "GFP"] * 6  # one label per plane, C fastest
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.3),
        metadata={
            "axes": "TZCYX",
            "spacing": 1.5,
            "unit": "um",
            "finterval": 2.0,
            "Labels": labels,
        },
    )
    return path, data


class TestTiffReaderSuite(ReaderSuite):
    reader_cls = TiffReader

    @pytest.fixture
    def sample(self, hyperstack: tuple[Path, np.ndarray]) -> ReaderSample:
        path, data = hyperstack
        return ReaderSample(
            path=path,
            arrays=[data.transpose(0, 2, 1, 3, 4)],  # TZCYX -> TCZYX
            axes=["TCZYX"],
            voxel_size=[(0.25, 0.3, 1.5)],
            channel_names=[("DAPI", "GFP")],
        )

    @pytest.fixture
    def corrupt(self, hyperstack: tuple[Path, np.ndarray], tmp_path: Path) -> Path:
        return _truncate(hyperstack[0], tmp_path / "cut.tif", 0.6)


@pytest.fixture
def ome_file(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    """A three-image OME-TIFF: CZYX in nm, an RGB image, a TYX time series."""
    first = RNG.integers(0, 255, (2, 3, 16, 20), dtype=np.uint8)
    rgb = RNG.integers(0, 255, (16, 20, 3), dtype=np.uint8)
    third = RNG.integers(0, 60000, (4, 8, 12), dtype=np.uint16)
    path = tmp_path / "multi.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(
            first,
            metadata={
                "axes": "CZYX",
                "Name": "first",
                "PhysicalSizeX": 250.0,
                "PhysicalSizeXUnit": "nm",
                "PhysicalSizeY": 0.3,
                "PhysicalSizeZ": 2.0,
                "Channel": {"Name": ["DAPI", "GFP"]},
            },
        )
        tw.write(rgb, photometric="rgb", metadata={"axes": "YXS", "Name": "rgb"})
        tw.write(third, metadata={"axes": "TYX", "TimeIncrement": 0.5, "TimeIncrementUnit": "ms"})
    return path, [first, rgb, third]


class TestOmeTiffReaderSuite(ReaderSuite):
    reader_cls = OmeTiffReader

    @pytest.fixture
    def sample(self, ome_file: tuple[Path, list[np.ndarray]]) -> ReaderSample:
        path, (first, rgb, third) = ome_file
        return ReaderSample(
            path=path,
            arrays=[first, rgb, third],
            axes=["CZYX", "YXS", "TYX"],
            voxel_size=[(0.25, 0.3, 2.0), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)],
            channel_names=[("DAPI", "GFP"), ("C0",), ("C0",)],
        )

    @pytest.fixture
    def corrupt(self, ome_file: tuple[Path, list[np.ndarray]], tmp_path: Path) -> Path:
        return _truncate(ome_file[0], tmp_path / "cut.ome.tif", 0.5)


def test_ome_metadata_fields(ome_file: tuple[Path, list[np.ndarray]]) -> None:
    with OmeTiffReader(ome_file[0]) as reader:
        first, rgb, third = list(reader)
    assert (first.name, rgb.name) == ("first", "rgb")
    assert first.unit == "micrometer"
    assert rgb.unit == "pixel"
    assert third.time_interval == pytest.approx(0.5e-3)


@pytest.mark.parametrize(
    ("axes", "shape", "expected"),
    [
        ("TZCYX", (2, 3, 4, 5, 6), "TCZYX"),
        ("IYX", (5, 6, 7), "ZYX"),  # a plain page sequence is a z-stack
        ("QYX", (5, 6, 7), "ZYX"),
        ("QZYX", (2, 5, 6, 7), "TZYX"),  # Z taken: the unknown axis becomes T
        ("QQYX", (1, 5, 6, 7), "ZYX"),  # unknown length-1 axes are dropped
        ("EYX", (3, 6, 7), "CYX"),  # spectral lambda as channels
        ("SYX", (3, 6, 7), "YXS"),  # planar RGB
        ("YXS", (6, 7, 3), "YXS"),
    ],
)
def test_map_axes(axes: str, shape: tuple[int, ...], expected: str) -> None:
    index, canonical, perm = map_axes(axes, shape)
    assert canonical == expected
    data = np.zeros(shape)[index].transpose(perm)
    assert data.ndim == len(expected)


def test_map_axes_too_many_unknown() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        map_axes("QQQTZCYX", (2, 2, 2, 2, 2, 2, 3, 3))


def test_plain_stack_with_centimetre_resolution(tmp_path: Path) -> None:
    data = RNG.integers(0, 255, (5, 12, 10), dtype=np.uint8)
    path = tmp_path / "plain.tiff"
    with tifffile.TiffWriter(path) as tw:
        for plane in data:  # independent pages: tifffile reports axes "IYX"
            tw.write(plane, resolution=(2000.0, 4000.0), resolutionunit="CENTIMETER", metadata=None)
    with open_image(path) as reader:
        meta = reader.metadata()
        assert meta.axes == "ZYX"
        np.testing.assert_allclose(meta.voxel_size, (5.0, 2.5, 1.0))  # 1 cm / 2000 = 5 µm
        assert meta.unit == "micrometer"
        np.testing.assert_array_equal(reader.to_dask().compute(), data)


def test_planar_rgb_reads_as_yxs(tmp_path: Path) -> None:
    data = RNG.integers(0, 255, (3, 12, 10), dtype=np.uint8)
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, data, photometric="rgb", planarconfig="separate")
    with TiffReader(path) as reader:
        assert reader.metadata().axes == "YXS"
        np.testing.assert_array_equal(reader.to_dask().compute(), data.transpose(1, 2, 0))


def test_large_planes_are_chunked(tmp_path: Path) -> None:
    data = RNG.integers(0, 255, (6, 64, 64), dtype=np.uint8)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZYX"})
    with TiffReader(path) as reader:
        arr = reader.to_dask()
    assert arr.chunks[0] == (6,)  # small planes are grouped into one chunk
    np.testing.assert_array_equal(arr[2:4, 10:20].compute(), data[2:4, 10:20])


def test_suffix_routing(tmp_path: Path) -> None:
    assert reader_class(tmp_path / "a.ome.tiff") is OmeTiffReader
    assert reader_class(tmp_path / "a.OME.TIF") is OmeTiffReader
    for suffix in (".tif", ".tiff", ".btf", ".tf8"):
        assert reader_class(tmp_path / f"a{suffix}") is TiffReader


@pytest.mark.parametrize("kind", ["imagej", "plain", "tiled-zlib", "ome"])
@pytest.mark.parametrize("fraction", [0.5, 0.97])
def test_truncated_tiff_raises_format_error(tmp_path: Path, kind: str, fraction: float) -> None:
    data = RNG.integers(0, 1000, (10, 64, 64), dtype=np.uint16)
    path = tmp_path / ("full.ome.tif" if kind == "ome" else "full.tif")
    kwargs: dict[str, object] = {
        "imagej": {"imagej": True, "metadata": {"axes": "ZYX"}},
        "plain": {"metadata": None},
        "tiled-zlib": {"tile": (32, 32), "compression": "zlib"},
        "ome": {"metadata": {"axes": "ZYX"}},
    }[kind]
    tifffile.imwrite(path, data, **kwargs)  # type: ignore[arg-type]
    cut = _truncate(path, tmp_path / ("cut" + "".join(path.suffixes)), fraction)
    with pytest.raises(FormatError, match="cut") as info, open_image(cut) as reader:
        reader.to_dask().compute()
    assert info.value.path == cut


def test_failure_during_compute_is_a_format_error(hyperstack: tuple[Path, np.ndarray]) -> None:
    path, _ = hyperstack
    with TiffReader(path) as reader:
        arr = reader.to_dask()
    path.write_bytes(path.read_bytes()[:200])  # the file is damaged after it was opened
    with pytest.raises(FormatError, match="cannot read pixels") as info:
        arr.compute()
    assert info.value.path == path


def test_text_file_with_tif_suffix(tmp_path: Path) -> None:
    fake = tmp_path / "notes.tif"
    fake.write_text("hello\n")
    with pytest.raises(FormatError, match=r"notes\.tif"):
        open_image(fake)


def test_computes_on_worker_processes(
    dask_client: Client, hyperstack: tuple[Path, np.ndarray]
) -> None:
    path, data = hyperstack
    with TiffReader(path) as reader:
        arr = reader.to_dask()
    result = dask_client.compute(arr).result()
    np.testing.assert_array_equal(result, data.transpose(0, 2, 1, 3, 4))


def test_pyramidal_bigtiff_ome_reads_full_resolution(tmp_path: Path) -> None:
    data = RNG.integers(0, 255, (2, 32, 48), dtype=np.uint8)
    path = tmp_path / "pyramid.ome.btf"
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tw:
        tw.write(data, subifds=1, tile=(16, 16), metadata={"axes": "CYX"})
        tw.write(data[:, ::2, ::2], subfiletype=1, tile=(16, 16))
    with open_image(path) as reader:
        assert isinstance(reader, OmeTiffReader)
        meta = reader.metadata()
        assert (meta.axes, meta.shape, meta.extra["levels"]) == ("CYX", (2, 32, 48), 2)
        np.testing.assert_array_equal(reader.to_dask().compute(), data)


def test_read_tiff_eager_matches_reader_and_refuses_truncated(tmp_path: Path) -> None:
    from scopeflow.io._tiff import read_tiff

    data = np.arange(3 * 20 * 16, dtype=np.uint16).reshape(3, 20, 16)
    path = tmp_path / "small.tif"
    tifffile.imwrite(path, data, photometric="minisblack")
    pixels, axes = read_tiff(path)
    assert axes == "ZYX"
    np.testing.assert_array_equal(pixels, data)
    with TiffReader(path) as reader:
        np.testing.assert_array_equal(reader.to_dask(0).compute(), pixels)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(FormatError, match=r"cut\.tif"):
        read_tiff(cut)


@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_single_plane_fast_path_agrees_with_tifffile(
    tmp_path: Path, bigtiff: bool, compression: str | None
) -> None:
    from scopeflow.io._tiff import _read_single_plane, read_tiff

    rng = np.random.default_rng(0)
    plane = rng.integers(0, 65535, (90, 90), dtype=np.uint16)
    path = tmp_path / "one.tif"
    tifffile.imwrite(path, plane, bigtiff=bigtiff, compression=compression)
    fast = _read_single_plane(path)
    assert fast is not None  # the fast path applies
    np.testing.assert_array_equal(fast, plane)
    pixels, axes = read_tiff(path)
    assert axes == "YX"
    np.testing.assert_array_equal(pixels, plane)
    # damaged: the fast path declines and the general path names the file
    cut = tmp_path / "cut.tif"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    assert _read_single_plane(cut) is None
    with pytest.raises(FormatError, match=r"cut\.tif"):
        read_tiff(cut)


def test_fast_path_declines_pages_and_rgb(tmp_path: Path) -> None:
    from scopeflow.io._tiff import _read_single_plane, read_tiff

    pages = np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8)
    tifffile.imwrite(tmp_path / "pages.tif", pages)
    assert _read_single_plane(tmp_path / "pages.tif") is None
    np.testing.assert_array_equal(read_tiff(tmp_path / "pages.tif")[0], pages)
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    assert _read_single_plane(tmp_path / "rgb.tif") is None
    assert read_tiff(tmp_path / "rgb.tif")[1] == "YXS"
