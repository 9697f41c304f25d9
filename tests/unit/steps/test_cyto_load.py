"""Cytometry input layouts: every layout yields the same batches; bad images are reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from scopeflow.core import ConfigError, FormatError, InputNotFoundError
from scopeflow.core.config import validate_config
from scopeflow.steps.cyto_load import CytoInput, CytoSource, discover_channels

CHANNELS = ["dna", "actin", "tub"]
N, H, W = 7, 12, 10


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 60000, size=(N, len(CHANNELS), H, W), dtype=np.uint16)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, stack: np.ndarray) -> Path:
    root = tmp_path_factory.mktemp("cyto")
    (root / "stacks").mkdir()
    for c in range(len(CHANNELS)):
        tifffile.imwrite(root / "stacks" / f"ch{c}.tif", stack[:, c])
    arr = zarr.create_array(
        root / "images.zarr",
        shape=stack.shape,
        dtype=stack.dtype,
        chunks=(3, 3, H, W),
        zarr_format=2,
    )
    arr[:] = stack
    arr.attrs["axes"] = ["n", "c", "y", "x"]
    (root / "fields").mkdir()
    (root / "files").mkdir()
    for i in range(N):
        tifffile.imwrite(root / "fields" / f"img{i:02d}.tif", stack[i], photometric="minisblack")
        for c in range(len(CHANNELS)):
            tifffile.imwrite(root / "files" / f"{i}_Ch{c + 1}.tif", stack[i, c])
    return root


LAYOUTS = {
    "channel_stacks": {"layout": "channel_stacks", "pattern": "stacks/ch{c}.tif"},
    "array": {"layout": "array", "path": "images.zarr"},
    "fields": {"layout": "fields", "pattern": "fields/*.tif"},
    "files": {"layout": "files", "pattern": "files/{id}_Ch{channel}.tif"},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_gives_the_same_batches(folder: Path, stack: np.ndarray, layout: str) -> None:
    source = CytoSource(CytoInput(**LAYOUTS[layout]), folder, CHANNELS)
    assert source.count == N
    assert source.batches(3) == [(0, 3), (3, 6), (6, 7)]
    got = np.concatenate([source.load(a, b).images for a, b in source.batches(3)])
    np.testing.assert_array_equal(got, stack)
    batch = source.load(3, 6)
    assert len(batch.image_ids) == len(batch.sources) == 3
    assert not batch.errors


def test_unreadable_image_is_reported_and_the_rest_loads(
    folder: Path, stack: np.ndarray, tmp_path: Path
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    for p in (folder / "files").iterdir():
        (files / p.name).write_bytes(p.read_bytes())
    broken = files / "4_Ch2.tif"
    broken.write_bytes(broken.read_bytes()[:100])  # truncated
    source = CytoSource(CytoInput(**LAYOUTS["files"]), tmp_path, CHANNELS)
    batch = source.load(3, 6)
    assert batch.image_ids == ["3", "5"]
    assert batch.indices == [3, 5]  # positions in the input, not in the batch
    np.testing.assert_array_equal(batch.images, stack[[3, 5]])
    assert len(batch.errors) == 1
    assert batch.errors[0]["image_id"] == "4"
    assert batch.errors[0]["file"] == str(broken)


def test_bad_specs_are_config_errors(folder: Path) -> None:
    for data, expected in [
        ({"layout": "array"}, "needs 'path'"),
        ({"layout": "fields"}, "needs 'pattern'"),
        ({"layout": "files", "pattern": "x_{channel}.tif"}, "{id} and {channel}"),
        ({"layout": "cubes", "pattern": "x"}, "layout"),
    ]:
        with pytest.raises(ConfigError, match=expected.replace("{", r"\{").replace("}", r"\}")):
            validate_config(CytoInput, data, source="c.yaml", base_dir=folder)
    with pytest.raises(InputNotFoundError, match="channel stack not found"):
        _ = CytoSource(CytoInput(pattern="nope/ch{c}.tif"), folder, CHANNELS).count


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_strided_load_for_sampling(folder: Path, stack: np.ndarray, layout: str) -> None:
    source = CytoSource(CytoInput(**LAYOUTS[layout]), folder, CHANNELS)
    batch = source.load(1, 7, 2)
    assert batch.image_ids[0] in ("1", "img01")
    assert batch.indices == [1, 3, 5]
    np.testing.assert_array_equal(batch.images, stack[1:7:2])


def test_truncated_channel_stack_reports_every_image_with_the_file(
    folder: Path, tmp_path: Path
) -> None:
    (tmp_path / "stacks").mkdir()
    for c in range(len(CHANNELS)):
        src = (folder / "stacks" / f"ch{c}.tif").read_bytes()
        (tmp_path / "stacks" / f"ch{c}.tif").write_bytes(src[: len(src) // 2] if c == 1 else src)
    source = CytoSource(CytoInput(**LAYOUTS["channel_stacks"]), tmp_path, CHANNELS)
    batch = source.load(0, 3)
    assert len(batch.images) == 0
    assert [e["image_id"] for e in batch.errors] == ["0", "1", "2"]
    assert {e["file"] for e in batch.errors} == {str(tmp_path / "stacks" / "ch1.tif")}
    assert all("TIFF" in e["error"] for e in batch.errors)


def test_channel_stack_pages_read_through_the_open_file_cache(
    folder: Path, stack: np.ndarray
) -> None:
    from scopeflow.io import read_tiff_planes, tiff_stack_shape

    path = folder / "stacks" / "ch2.tif"
    assert tiff_stack_shape(path) == (N, H, W)
    np.testing.assert_array_equal(read_tiff_planes(path, 2, 5), stack[2:5, 2])
    np.testing.assert_array_equal(read_tiff_planes(path, 6, 7), stack[6:7, 2])
    with pytest.raises(FormatError, match=r"planes 5:9 requested, the file has 7"):
        read_tiff_planes(path, 5, 9)
    with pytest.raises(InputNotFoundError):
        read_tiff_planes(folder / "stacks" / "nope.tif", 0, 1)


def test_channel_names_from_the_input_when_the_config_has_none(
    folder: Path, tmp_path: Path, stack: np.ndarray
) -> None:
    assert discover_channels(CytoInput(**LAYOUTS["files"]), folder) == ["1", "2", "3"]
    names = ["DAPI", "GFP", "mCherry"]
    (tmp_path / "ome").mkdir()
    for i in range(2):
        tifffile.imwrite(
            tmp_path / "ome" / f"f{i}.ome.tif",
            stack[i],
            metadata={"axes": "CYX", "Channel": {"Name": names}},
        )
    fields = CytoInput(layout="fields", pattern="ome/*.ome.tif")
    assert discover_channels(fields, tmp_path) == names
    arr = zarr.open_array(tmp_path / "named.zarr", mode="w", shape=stack.shape, dtype=stack.dtype)
    arr[:] = stack
    arr.attrs.update({"axes": ["n", "c", "y", "x"], "channels": names})
    assert discover_channels(CytoInput(layout="array", path="named.zarr"), tmp_path) == names
    with pytest.raises(ConfigError, match="channel stacks carry no channel names"):
        discover_channels(CytoInput(**LAYOUTS["channel_stacks"]), folder)
    with pytest.raises(ConfigError, match=r"channels: not given, and no file matches"):
        discover_channels(CytoInput(layout="fields", pattern="none/*.tif"), folder)
    with pytest.raises(ConfigError, match=r"the input cannot be read"):
        discover_channels(CytoInput(layout="array", path="missing.zarr"), folder)


@pytest.mark.parametrize("fmt", ["czi", "ome-zarr"])
def test_fields_from_czi_and_ome_zarr_with_their_channel_names(
    tmp_path: Path, stack: np.ndarray, fmt: str
) -> None:
    """Fields written as CZI (pylibCZIrw) or OME-Zarr load as (C, H, W) with named channels."""
    from pylibCZIrw import czi as pyczi

    from scopeflow.io import write_ome_zarr

    names = ["DAPI", "GFP", "mCherry"]
    folder = tmp_path / "fields"
    folder.mkdir()
    for i in range(3):
        if fmt == "czi":
            with pyczi.create_czi(str(folder / f"f{i}.czi"), exist_ok=True) as czi:
                for c in range(len(names)):
                    czi.write(data=stack[i, c], plane={"T": 0, "Z": 0, "C": c})
                czi.write_metadata(channel_names=dict(enumerate(names)))
        else:
            write_ome_zarr(folder / f"f{i}.ome.zarr", stack[i], axes="cyx", channel_names=names)
    suffix = "czi" if fmt == "czi" else "ome.zarr"
    spec = CytoInput(layout="fields", pattern=f"fields/*.{suffix}", format=fmt)
    assert discover_channels(spec, tmp_path) == names
    source = CytoSource(spec, tmp_path, names)
    assert source.count == 3
    batch = source.load(0, 3)
    assert not batch.errors
    np.testing.assert_array_equal(batch.images, stack[:3])
