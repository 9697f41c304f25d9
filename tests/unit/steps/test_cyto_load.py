"""Cytometry input layouts: every layout yields the same batches; bad images are reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from scopeflow.core import ConfigError, InputNotFoundError
from scopeflow.core.config import validate_config
from scopeflow.steps.cyto_load import CytoInput, CytoSource

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
    np.testing.assert_array_equal(batch.images, stack[1:7:2])
