"""OME-Zarr writer and reader: the shared suite, ome-zarr-py cross-checks both ways, pyramids,
parallel region writes, plain Zarr arrays and damaged stores."""

from __future__ import annotations

import json
import tracemalloc
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from distributed import Client
from ome_zarr.format import FormatV04, FormatV05
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader

from scopeflow.core import FormatError
from scopeflow.io._base import open_image, reader_class
from scopeflow.io._omezarr import (
    OmeZarrReader,
    ZarrReader,
    create_ome_zarr,
    write_ome_zarr,
    write_ome_zarr_region,
)
from scopeflow.io._omezarr_pyramid import mean_block, pyramid_steps
from scopeflow.testing import make_cyto_dataset

from .reader_suite import ReaderSample, ReaderSuite

with warnings.catch_warnings():
    # ome-zarr-py 0.18 instantiates its deprecated Scaler as a default argument at import time
    warnings.filterwarnings("ignore", "Call to deprecated class Scaler", DeprecationWarning)
    from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

RNG = np.random.default_rng(11)
VERSIONS = ["0.4", "0.5"]
CHANNELS = ("DAPI", "GFP", "RFP")


def reference_level(data: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """Block mean by explicit padding and reshaping in float64 (independent of the writer)."""
    pad = [(0, (f - n % f) % f) for n, f in zip(data.shape, factors, strict=True)]
    x = np.pad(data.astype(np.float64), pad, mode="edge")
    shape = [v for n, f in zip(x.shape, factors, strict=True) for v in (n // f, f)]
    mean = x.reshape(shape).mean(axis=tuple(range(1, 2 * data.ndim, 2)))
    if np.issubdtype(data.dtype, np.integer):
        mean = np.floor(mean + 0.5)
    return mean.astype(data.dtype)


def reference_pyramid(data: np.ndarray, steps: list[tuple[int, ...]]) -> list[np.ndarray]:
    levels = [data]
    for step in steps[1:]:
        levels.append(reference_level(levels[-1], step))
    return levels


@pytest.fixture(autouse=True)
def local_threads() -> Iterator[None]:
    """Compute on local threads even after a test has made a distributed Client the default."""
    with dask.config.set(scheduler="threads"):
        yield


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    """TCZYX uint16 with odd sizes, so pyramids pad trailing voxels."""
    return RNG.integers(0, 5000, (2, 3, 9, 70, 83), dtype=np.uint16)


def _write_sample(path: Path, data: np.ndarray, version: str) -> Path:
    return write_ome_zarr(
        path,
        data,
        axes="TCZYX",
        voxel_size=(0.25, 0.25, 1.0),
        channel_names=CHANNELS,
        translation=(10.0, 20.0, 5.0),
        time_interval=30.0,
        chunks=(1, 1, 4, 32, 32),
        max_top_size=32,
        ngff_version=version,
    )


@pytest.fixture(params=VERSIONS)
def written(request: pytest.FixtureRequest, tmp_path: Path, volume: np.ndarray) -> Path:
    return _write_sample(tmp_path / "img.ome.zarr", volume, request.param)


class TestOmeZarrReaderSuite(ReaderSuite):
    reader_cls = OmeZarrReader

    @pytest.fixture
    def sample(self, written: Path, volume: np.ndarray) -> ReaderSample:
        return ReaderSample(
            path=written,
            arrays=[volume],
            axes=["TCZYX"],
            voxel_size=[(0.25, 0.25, 1.0)],
            channel_names=[CHANNELS],
        )

    @pytest.fixture
    def corrupt(self, written: Path) -> Path:
        meta = written / (".zattrs" if (written / ".zattrs").exists() else "zarr.json")
        meta.write_text(meta.read_text()[:200])
        return written


@pytest.fixture
def plain(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A plain N x C x H x W Zarr 3 array as scopeflow.testing writes images.zarr."""
    data = RNG.integers(0, 4000, (20, 2, 16, 12), dtype=np.uint16)
    path = tmp_path / "images.zarr"
    arr = zarr.create_array(path, shape=data.shape, chunks=(8, 2, 16, 12), dtype=data.dtype)
    arr[:] = data
    arr.attrs.update({"axes": ["image", "channel", "y", "x"], "channels": ["bf", "nuc"]})
    arr.attrs["pixel_size"] = 0.33
    return path, data


class TestPlainZarrReaderSuite(ReaderSuite):
    reader_cls = OmeZarrReader

    @pytest.fixture
    def sample(self, plain: tuple[Path, np.ndarray]) -> ReaderSample:
        return ReaderSample(
            path=plain[0],
            arrays=[plain[1]],
            axes=["TCYX"],
            voxel_size=[(0.33, 0.33, 1.0)],
            channel_names=[("bf", "nuc")],
        )

    @pytest.fixture
    def corrupt(self, plain: tuple[Path, np.ndarray]) -> Path:
        chunk = next(p for p in (plain[0] / "c").rglob("*") if p.is_file())
        chunk.write_bytes(chunk.read_bytes()[:50])  # a truncated chunk: fails on compute
        return plain[0]


# -- the writer, checked with ome-zarr-py ---------------------------------------------------


def _ome_zarr_py_node(path: Path) -> Any:
    nodes = list(Reader(parse_url(str(path)))())
    assert nodes, f"ome-zarr-py found no image in {path}"
    return nodes[0]


def test_ome_zarr_py_reads_scopeflow_images(written: Path, volume: np.ndarray) -> None:
    node = _ome_zarr_py_node(written)
    steps = pyramid_steps(volume.shape, "tczyx", (0.25, 0.25, 1.0), max_top_size=32)
    expected = reference_pyramid(volume, steps)
    assert [tuple(d.shape) for d in node.data] == [e.shape for e in expected]
    for level, (arr, ref) in enumerate(zip(node.data, expected, strict=True)):
        np.testing.assert_array_equal(np.asarray(arr), ref, err_msg=f"level {level}")
    axes = node.metadata["axes"]
    assert [a["name"] for a in axes] == list("tczyx")
    assert [a["type"] for a in axes] == ["time", "channel", "space", "space", "space"]
    assert [a.get("unit") for a in axes] == ["second", None] + ["micrometer"] * 3
    transforms = node.metadata["coordinateTransformations"]
    assert transforms[0] == [
        {"type": "scale", "scale": [30.0, 1.0, 1.0, 0.25, 0.25]},
        {"type": "translation", "translation": [0.0, 0.0, 5.0, 20.0, 10.0]},
    ]
    factor = np.ones(5)
    for level, step in enumerate(steps):
        factor *= step
        scale = [30.0, 1.0, *(np.array([1.0, 0.25, 0.25]) * factor[2:])]
        shift = [0.0, 0.0, *(np.array([5.0, 20.0, 10.0]) + (factor[2:] - 1) * [0.5, 0.125, 0.125])]
        np.testing.assert_allclose(transforms[level][0]["scale"], scale)
        np.testing.assert_allclose(transforms[level][1]["translation"], shift)
    assert node.metadata["channel_names"] == list(CHANNELS)


def test_metadata_conforms_to_the_ngff_schema(written: Path) -> None:
    # ome-zarr-models (a dependency of ome-zarr-py) implements the NGFF 0.4 / 0.5 specifications
    from ome_zarr_models.v04.image import ImageAttrs as ImageAttrs04
    from ome_zarr_models.v05.image import ImageAttrs as ImageAttrs05

    if (written / ".zattrs").exists():
        ImageAttrs04.model_validate(json.loads((written / ".zattrs").read_text()))
    else:
        attrs = json.loads((written / "zarr.json").read_text())["attributes"]["ome"]
        ImageAttrs05.model_validate(attrs)
        dims = json.loads((written / "0" / "zarr.json").read_text())["dimension_names"]
        assert dims == list("tczyx")


def test_pyramid_plan_halves_z_once_near_isotropic() -> None:
    steps = pyramid_steps((64, 2048, 2048), "zyx", (0.5, 0.5, 2.0))
    assert steps == [(1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2)]  # 2048 -> 256 in x, y
    assert pyramid_steps((10, 100, 100), "zyx", (1.0, 1.0, 1.0)) == [(1, 1, 1)]
    assert len(pyramid_steps((1, 3, 100, 100), "tcyx", (1, 1, 1), n_levels=3)) == 3
    # a 1-voxel axis is never halved, and the plan stops when nothing is left to halve
    assert pyramid_steps((1, 4, 4), "zyx", (1, 1, 1), n_levels=5) == [
        (1, 1, 1),
        (1, 2, 2),
        (1, 2, 2),
    ]


@pytest.mark.parametrize(
    "dtype", ["uint8", "uint16", "int16", "uint32", "int64", "float32", "bool"]
)
def test_block_mean_matches_reference(dtype: str) -> None:
    data = (RNG.random((5, 7, 9)) * 200 - (50 if dtype[0] in "if" else 0)).astype(dtype)
    for step in [(1, 2, 2), (2, 2, 2), (2, 1, 1)]:
        got = mean_block(data, step)
        assert got.dtype == data.dtype
        if dtype == "float32":
            np.testing.assert_allclose(got, reference_level(data, step), rtol=1e-6, atol=1e-4)
        elif dtype != "bool":
            np.testing.assert_array_equal(got, reference_level(data, step))


def test_windows_units_and_omero(tmp_path: Path) -> None:
    data = np.stack([np.full((8, 8), 7, np.uint16), np.arange(64, dtype=np.uint16).reshape(8, 8)])
    path = write_ome_zarr(tmp_path / "w.ome.zarr", data, axes="cyx", unit="nanometer")
    attrs = json.loads((path / ".zattrs").read_text())
    windows = [c["window"] for c in attrs["omero"]["channels"]]
    assert [(w["start"], w["end"]) for w in windows] == [(7, 7), (0, 63)]
    assert windows[0]["max"] == 65535
    assert attrs["multiscales"][0]["axes"][1] == {"name": "y", "type": "space", "unit": "nanometer"}
    with open_image(path) as reader:
        meta = reader.metadata()
        assert (meta.axes, meta.unit, meta.channel_names) == ("CYX", "nanometer", ("C0", "C1"))
        assert meta.time_interval is None and meta.position is None


def test_writes_blockwise_from_dask_with_bounded_memory(tmp_path: Path) -> None:
    # 64 MB of lazily generated pixels in 1 MB chunks; only a few chunks may be in memory at
    # any time (a graph spanning the whole pyramid would hold a slab of the image)
    shape, chunks = (32, 1024, 1024), (8, 256, 256)
    data = da.random.default_rng(0).integers(0, 60000, shape, dtype=np.uint16, chunks=chunks)
    tracemalloc.start()
    try:
        with dask.config.set(scheduler="threads", num_workers=2):
            write_ome_zarr(tmp_path / "big.ome.zarr", data, axes="zyx", chunks=chunks)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < data.nbytes / 4, f"peak {peak / 1e6:.0f} MB for {data.nbytes / 1e6:.0f} MB"
    with open_image(tmp_path / "big.ome.zarr") as reader:
        levels = reader.metadata().extra["levels"]
        assert levels == [[32, 1024, 1024], [16, 512, 512], [8, 256, 256]]
        np.testing.assert_array_equal(reader.to_dask()[-2:].compute(), data[-2:].compute())
        top = reference_pyramid(data[:4, :4, :4].compute(), [(1, 1, 1), (2, 2, 2), (2, 2, 2)])
        assert reader.to_dask(0, level=2)[0, 0, 0].compute() == top[2][0, 0, 0]


# -- ome-zarr-py's writer, read by scopeflow -------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("axes", ["tczyx", "czyx", "zyx", "yx"])
def test_reads_ome_zarr_py_images(tmp_path: Path, version: str, axes: str) -> None:
    shape = {"t": 2, "c": 2, "z": 6, "y": 40, "x": 50}
    data = RNG.integers(0, 1000, [shape[a] for a in axes], dtype=np.uint16)
    fmt = FormatV04() if version == "0.4" else FormatV05()
    group = zarr.open_group(
        tmp_path / "py.ome.zarr", mode="w", zarr_format=2 if version == "0.4" else 3
    )
    scale = {"t": 2.0, "c": 1.0, "z": 3.0, "y": 0.5, "x": 0.4}
    units = {a: ("second" if a == "t" else "micrometer") for a in axes if a != "c"}
    write_image(
        data,
        group,
        axes=axes,
        fmt=fmt,
        scale={a: scale[a] for a in axes},
        axes_units=units,
        scale_factors=(2, 4),
    )
    node = _ome_zarr_py_node(tmp_path / "py.ome.zarr")
    with open_image(tmp_path / "py.ome.zarr") as reader:
        meta = reader.metadata()
        assert meta.axes == axes.upper()
        assert meta.shape == data.shape
        assert meta.voxel_size == (0.4, 0.5, 3.0 if "z" in axes else 1.0)
        assert meta.unit == "micrometer"
        assert meta.time_interval == (2.0 if "t" in axes else None)
        assert meta.extra["ngff_version"] == version
        assert len(meta.channel_names) == meta.size("C")
        assert len(meta.extra["levels"]) == len(node.data) == 3
        for level, arr in enumerate(node.data):
            np.testing.assert_array_equal(reader.to_dask(0, level=level).compute(), np.asarray(arr))
        with pytest.raises(IndexError, match="level 3"):
            reader.to_dask(0, level=3)


def test_reads_ome_zarr_py_plate(tmp_path: Path) -> None:
    root = zarr.open_group(tmp_path / "plate.ome.zarr", mode="w", zarr_format=2)
    fields = {}
    write_plate_metadata(root, ["A"], ["1", "2"], ["A/1", "A/2"], fmt=FormatV04())
    for col in ("1", "2"):
        well = root.require_group(f"A/{col}")
        write_well_metadata(well, [{"path": "0"}], fmt=FormatV04())
        fields[col] = RNG.integers(0, 100, (2, 16, 16), dtype=np.uint8)
        write_image(
            fields[col], well.require_group("0"), axes="cyx", fmt=FormatV04(), scale_factors=()
        )
    with open_image(tmp_path / "plate.ome.zarr") as reader:
        assert reader.series_count == 2
        assert [m.name for m in reader] == ["A/1/0", "A/2/0"]
        np.testing.assert_array_equal(reader.to_dask(1).compute(), fields["2"])


def test_bioformats2raw_layout_is_one_series_per_image(tmp_path: Path, volume: np.ndarray) -> None:
    root_path = tmp_path / "b2r.ome.zarr"
    root = zarr.open_group(root_path, mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    write_ome_zarr(root_path / "0", volume[0, 0], axes="zyx", name="first")
    write_ome_zarr(root_path / "1", volume[1], axes="czyx", name="second")
    with open_image(root_path) as reader:
        assert [m.name for m in reader] == ["first", "second"]
        assert [m.axes for m in reader] == ["ZYX", "CZYX"]
        np.testing.assert_array_equal(reader.to_dask(1).compute(), volume[1])


def test_axes_in_other_order_are_transposed_and_units_converted(tmp_path: Path) -> None:
    data = RNG.integers(0, 100, (5, 7, 3), dtype=np.uint8)  # x, y, c as stored
    group = zarr.open_group(tmp_path / "xy.zarr", mode="w", zarr_format=2)
    group.create_array("0", data=data, chunks=(5, 7, 1))
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [
                {"name": "x", "type": "space", "unit": "nanometer"},
                {"name": "y", "type": "space", "unit": "micrometer"},
                {"name": "c", "type": "channel"},
            ],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [{"type": "scale", "scale": [100.0, 0.2, 1.0]}],
                }
            ],
            "coordinateTransformations": [{"type": "scale", "scale": [2.0, 2.0, 1.0]}],
        }
    ]
    with open_image(tmp_path / "xy.zarr") as reader:
        meta = reader.metadata()
        assert (meta.axes, meta.shape, meta.unit) == ("CYX", (3, 7, 5), "micrometer")
        np.testing.assert_allclose(meta.voxel_size, (0.2, 0.4, 1.0))
        np.testing.assert_array_equal(reader.to_dask().compute(), data.transpose(2, 1, 0))


# -- parallel region writes ------------------------------------------------------------------


def test_region_writes_from_parallel_workers(
    tmp_path: Path, volume: np.ndarray, dask_client: Client
) -> None:
    data = np.concatenate([volume, volume[::-1] // 2])  # 4 time points
    path = create_ome_zarr(
        tmp_path / "tl.ome.zarr",
        data.shape,
        data.dtype,
        voxel_size=(0.25, 0.25, 1.0),
        channel_names=CHANNELS,
        chunks=(1, 1, 4, 32, 32),
        max_top_size=32,
        time_interval=10.0,
    )
    futures = [
        dask_client.submit(write_ome_zarr_region, path, t, data[t], pure=False) for t in (3, 0, 2)
    ]
    dask_client.gather(futures)
    write_ome_zarr_region(path, 1, data[1, 2], c=2)  # one channel of one time point
    expected = data.copy()
    expected[1, :2] = 0
    full = write_ome_zarr(
        tmp_path / "ref.ome.zarr",
        expected,
        voxel_size=(0.25, 0.25, 1.0),
        chunks=(1, 1, 4, 32, 32),
        max_top_size=32,
    )
    with open_image(path) as got, open_image(full) as ref:
        assert got.metadata().extra["levels"] == ref.metadata().extra["levels"]
        assert got.metadata().time_interval == 10.0
        for level in range(len(ref.metadata().extra["levels"])):
            np.testing.assert_array_equal(
                got.to_dask(0, level).compute(), ref.to_dask(0, level).compute()
            )


def test_region_write_rejects_bad_input(tmp_path: Path) -> None:
    path = create_ome_zarr(tmp_path / "r.ome.zarr", (2, 1, 4, 16, 16), "uint16")
    with pytest.raises(ValueError, match="out of range"):
        write_ome_zarr_region(path, 2, np.zeros((1, 4, 16, 16), np.uint16))
    with pytest.raises(ValueError, match="expected"):
        write_ome_zarr_region(path, 0, np.zeros((4, 16, 16), np.uint16))
    still = create_ome_zarr(tmp_path / "s.ome.zarr", (4, 16, 16), "uint16", axes="zyx")
    with pytest.raises(ValueError, match="no t axis"):
        write_ome_zarr_region(still, 0, np.zeros((16, 16), np.uint16))
    with pytest.raises(FormatError, match=r"nothing\.zarr"):
        write_ome_zarr_region(tmp_path / "nothing.zarr", 0, np.zeros((16, 16), np.uint16))


def test_writer_argument_checks(tmp_path: Path) -> None:
    data = np.zeros((4, 8, 8), np.uint16)
    with pytest.raises(ValueError, match="subsequence"):
        write_ome_zarr(tmp_path / "a.zarr", data, axes="yxz")
    with pytest.raises(ValueError, match="data has 3"):
        write_ome_zarr(tmp_path / "a.zarr", data, axes="yx")
    with pytest.raises(ValueError, match="unit"):
        write_ome_zarr(tmp_path / "a.zarr", data, axes="zyx", unit="furlong")
    with pytest.raises(ValueError, match="channel names"):
        write_ome_zarr(tmp_path / "a.zarr", data[:2], axes="cyx", channel_names=["x"])
    write_ome_zarr(tmp_path / "a.zarr", data, axes="zyx")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_ome_zarr(tmp_path / "a.zarr", data, axes="zyx")
    write_ome_zarr(tmp_path / "a.zarr", data + 1, axes="zyx", overwrite=True)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a Zarr store"):
        write_ome_zarr(tmp_path / "folder", data, axes="zyx", overwrite=True)
    assert (tmp_path / "folder" / "keep.txt").exists()


# -- plain Zarr arrays -----------------------------------------------------------------------


def test_reads_the_synthetic_cytometry_images(tmp_path: Path) -> None:
    truth = make_cyto_dataset(tmp_path / "cyto", kind="ifc", n=12, seed=3)
    path = truth.root / truth.files["zarr"]
    assert reader_class(path, "zarr") is ZarrReader
    with open_image(path, format="zarr") as reader:
        meta = reader.metadata()
        assert (meta.axes, meta.shape) == ("TCYX", (12, 6, 90, 90))
        assert meta.channel_names == truth.channels
        assert meta.voxel_size[:2] == (truth.pixel_size, truth.pixel_size)
        assert meta.extra["stack_axis"] == "image"
        assert reader.to_dask()[:4].compute().shape == (4, 6, 90, 90)


def test_plain_array_axes_from_caller_or_xarray_attribute(tmp_path: Path) -> None:
    data = RNG.integers(0, 9, (3, 4, 5), dtype=np.int16)
    arr = zarr.create_array(tmp_path / "a.zarr", shape=data.shape, dtype=data.dtype, zarr_format=2)
    arr[:] = data
    with pytest.raises(FormatError, match="axis names"):
        OmeZarrReader(tmp_path / "a.zarr")
    with OmeZarrReader(tmp_path / "a.zarr", axes="YXC") as reader:
        assert reader.metadata().axes == "CYX"
        np.testing.assert_array_equal(reader.to_dask().compute(), data.transpose(2, 0, 1))
    arr.attrs["_ARRAY_DIMENSIONS"] = ["z", "y", "x"]
    with OmeZarrReader(tmp_path / "a.zarr") as reader:
        assert (reader.metadata().axes, reader.metadata().unit) == ("ZYX", "pixel")
    arr.attrs["_ARRAY_DIMENSIONS"] = ["z", "y", "wavelength"]
    with pytest.raises(FormatError, match="wavelength"):
        OmeZarrReader(tmp_path / "a.zarr")


# -- damaged stores --------------------------------------------------------------------------


@pytest.mark.parametrize("target", [".zgroup", ".zattrs", "0/.zarray"])
def test_corrupt_v2_metadata(tmp_path: Path, volume: np.ndarray, target: str) -> None:
    path = _write_sample(tmp_path / "c.ome.zarr", volume, "0.4")
    (path / target).write_text('{"zarr_format": 2, "multisc')
    with pytest.raises(FormatError) as info, OmeZarrReader(path) as reader:
        reader.to_dask().compute()
    assert str(path) in str(info.value)


@pytest.mark.parametrize("target", ["zarr.json", "1/zarr.json"])
def test_corrupt_v3_metadata(tmp_path: Path, volume: np.ndarray, target: str) -> None:
    path = _write_sample(tmp_path / "c.ome.zarr", volume, "0.5")
    (path / target).write_text("{not json")
    with pytest.raises(FormatError, match=r"c\.ome\.zarr"):
        OmeZarrReader(path)


@pytest.mark.parametrize("version", VERSIONS)
def test_missing_level_array(tmp_path: Path, volume: np.ndarray, version: str) -> None:
    path = _write_sample(tmp_path / "m.ome.zarr", volume, version)
    for item in (path / "2").iterdir():
        if item.is_file():
            item.unlink()
    with pytest.raises(FormatError, match=r"m\.ome\.zarr.*level array '2' is missing"):
        OmeZarrReader(path)


def test_malformed_multiscales_and_unknown_axes(tmp_path: Path, volume: np.ndarray) -> None:
    path = _write_sample(tmp_path / "x.ome.zarr", volume, "0.4")
    attrs = json.loads((path / ".zattrs").read_text())
    attrs["multiscales"][0]["axes"][2]["name"] = "angle"
    attrs["multiscales"][0]["axes"][2]["type"] = "space"
    (path / ".zattrs").write_text(json.dumps(attrs))
    with pytest.raises(FormatError, match="'angle'"):
        OmeZarrReader(path)
    del attrs["multiscales"][0]["datasets"]
    (path / ".zattrs").write_text(json.dumps(attrs))
    with pytest.raises(FormatError, match="malformed multiscales"):
        OmeZarrReader(path)


def test_group_without_ngff_metadata_names_its_arrays(tmp_path: Path) -> None:
    group = zarr.open_group(tmp_path / "g.zarr", mode="w")
    group.create_array("images", shape=(2, 2), dtype="uint8")
    with pytest.raises(FormatError, match=r"no OME-NGFF multiscales.*images"):
        OmeZarrReader(tmp_path / "g.zarr")


def test_truncated_chunk_fails_on_compute_naming_the_store(
    tmp_path: Path, volume: np.ndarray, dask_client: Client
) -> None:
    path = _write_sample(tmp_path / "t.ome.zarr", volume, "0.4")
    chunk = path / "0" / "1" / "2" / "0" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:40])
    with OmeZarrReader(path) as reader:
        arr = reader.to_dask()
        np.testing.assert_array_equal(arr[0].compute(), volume[0])  # other chunks still read
        with pytest.raises(FormatError, match=r"t\.ome\.zarr.*cannot read array '0'"):
            arr[1, 2].compute()
        # the same error comes back from a worker process of a distributed cluster
        with pytest.raises(FormatError, match=r"t\.ome\.zarr.*cannot read array '0'"):
            dask_client.compute(arr[1, 2]).result()


# -- the direct chunk writer -----------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("compressor", ["zstd", "lz4", None])
def test_chunk_writer_writes_what_zarr_writes(
    tmp_path: Path, version: str, compressor: str | None
) -> None:
    data = RNG.integers(0, 3000, (1, 2, 5, 40, 37), dtype=np.uint16)
    kwargs: dict[str, Any] = {"chunks": (1, 1, 4, 16, 16), "n_levels": 1, "compressor": compressor}
    ours = write_ome_zarr(tmp_path / "ours.zarr", data, ngff_version=version, **kwargs)
    ref = create_ome_zarr(
        tmp_path / "ref.zarr", data.shape, data.dtype, ngff_version=version, **kwargs
    )
    zarr.open_array(ref / "0", mode="r+")[...] = data  # through zarr-python itself
    files = sorted(p.relative_to(ref) for p in (ref / "0").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(ours) for p in (ours / "0").rglob("*") if p.is_file())
    for name in files:
        assert (ours / name).read_bytes() == (ref / name).read_bytes(), name


def test_chunk_writer_falls_back_to_zarr_for_partial_chunks(tmp_path: Path) -> None:
    from scopeflow.io._omezarr_chunks import ChunkWriter

    path = create_ome_zarr(tmp_path / "p.zarr", (10, 10), "uint16", axes="yx", chunks=(4, 4))
    writer = ChunkWriter(zarr.open_array(path / "0", mode="r+"))
    writer[1:3, 2:7] = np.full((2, 5), 7, np.uint16)  # spans chunks, none whole
    writer[8:10, 8:10] = np.full((2, 2), 9, np.uint16)  # a whole edge chunk
    expected = np.zeros((10, 10), np.uint16)
    expected[1:3, 2:7] = 7
    expected[8:10, 8:10] = 9
    np.testing.assert_array_equal(zarr.open_array(path / "0", mode="r")[...], expected)


def test_empty_chunks_are_not_stored_and_rewrites_clear_them(tmp_path: Path) -> None:
    path = create_ome_zarr(
        tmp_path / "e.ome.zarr",
        (2, 4, 32, 32),
        "uint16",
        axes="tzyx",
        chunks=(1, 4, 16, 16),
        n_levels=1,
    )
    data = np.zeros((4, 32, 32), np.uint16)
    data[:, :16, :16] = 5
    write_ome_zarr_region(path, 0, data)
    chunk_files = sorted(p for p in (path / "0" / "0").rglob("*") if p.is_file())
    assert [p.relative_to(path / "0" / "0").parts for p in chunk_files] == [("0", "0", "0")]
    write_ome_zarr_region(path, 0, np.zeros_like(data))  # a retried unit that found nothing
    assert not any(p.is_file() for p in (path / "0" / "0").rglob("*"))
    with open_image(path) as reader:
        assert not reader.to_dask().any().compute()
