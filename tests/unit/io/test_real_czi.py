"""The ZEN-written CZI files in ../shared/data/czi/ read with the right dimensions and metadata.

Expected values are independent of the reader and of libCZI: the table below comes from the
file names (which encode s/t/c/z) and the XML metadata (``SizeX``/``SizeY``, ``Scaling``,
channel names, ``PixelType``), and the tests check that table against a small decoder of the
raw ZISRAW structure written here with :mod:`struct` (file header → subblock directory →
uncompressed subblock pixels), which also supplies the expected pixels.
"""

from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scopeflow.core import FormatError
from scopeflow.io._base import open_image
from scopeflow.io._czi import CziReader

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "czi"

pytestmark = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real CZI files not found: {DATA} (../shared/data/czi)"
)


@dataclass(frozen=True)
class Expected:
    series: int
    shape: tuple[int, ...]  # T C Z Y X [S]
    dtype: str
    voxel_um: tuple[float, float, float]  # 1.0 where the XML gives no Z distance
    channels: tuple[str, ...]
    tiles: int = 0  # mosaic tiles in the scene (0: not a mosaic)


# XML Scaling values (metres) are copied as written in each file, then converted to µm.
EXPECTED = {
    "CD_s_1_t_3_c_2_z_5.czi": Expected(
        1, (3, 2, 5, 170, 240), "uint16",
        (9.0576674152210312e-08 * 1e6, 9.0576674152210312e-08 * 1e6, 3.2e-07 * 1e6),
        ("LED555", "LED470"),
    ),
    "RGB-multichannel.czi": Expected(
        1, (1, 7, 1, 81, 147, 3), "uint8",
        (2.9584899946757142e-06 * 1e6, 2.9584899946757142e-06 * 1e6, 1.0),
        ("Bright", "Pol_0", "Pol_15", "Pol_30", "Pol_45", "Pol_60", "Pol_75"),
    ),
    "mosaic_test.czi": Expected(  # two 924-px tiles overlapping by 92 px: 1756 wide
        1, (1, 1, 1, 624, 1756), "uint16",
        (1.0833333333333333e-06 * 1e6, 1.0833333333333333e-06 * 1e6, 1e-06 * 1e6),
        ("EGFP",), tiles=2,
    ),
    "s_1_t_1_c_1_z_1.czi": Expected(
        1, (1, 1, 1, 325, 475), "uint16",
        (1.0833333333333333e-06 * 1e6, 1.0833333333333333e-06 * 1e6, 1.0),
        ("Bright",),
    ),
    "tiles_time_z.czi": Expected(  # 2 x 2 tiles of 256 px (SizeM=4): 512 x 512 stitched
        1, (2, 2, 2, 512, 512), "uint8",
        (1.6605316419276782e-06 * 1e6, 1.6605316419276782e-06 * 1e6, 3.9999999999999998e-06 * 1e6),
        ("Ch1", "T PMT"), tiles=4,
    ),
}  # fmt: skip


# --------------------------------------------------------------- independent ZISRAW decoding


@dataclass(frozen=True)
class Subblock:
    dims: dict[str, tuple[int, int, int]]  # dimension -> (start, size, stored size)
    pixel_type: int
    compression: int
    data: bytes


def _segment(raw: bytes, offset: int, ident: bytes) -> int:
    assert raw[offset : offset + 16].rstrip(b"\0") == ident, f"no {ident!r} at {offset}"
    return offset + 32  # start of the segment's data


def decode(path: Path) -> tuple[ET.Element, list[Subblock]]:
    """The XML metadata and every subblock of a CZI, from the bytes alone."""
    raw = path.read_bytes()
    head = _segment(raw, 0, b"ZISRAWFILE")
    directory_pos, metadata_pos = struct.unpack_from("<qq", raw, head + 52)
    meta = _segment(raw, metadata_pos, b"ZISRAWMETADATA")
    (xml_size,) = struct.unpack_from("<i", raw, meta)
    xml = ET.fromstring(raw[meta + 256 : meta + 256 + xml_size].decode("utf-8"))
    pos = _segment(raw, directory_pos, b"ZISRAWDIRECTORY")
    (count,) = struct.unpack_from("<i", raw, pos)
    pos += 128
    blocks = []
    for _ in range(count):
        _, ptype, file_pos, _, compression, _, ndims = struct.unpack_from("<2siqiiB5xi", raw, pos)
        dims = {}
        for k in range(ndims):
            name, start, size, _, stored = struct.unpack_from("<4siifi", raw, pos + 32 + 20 * k)
            dims[name.rstrip(b"\0").decode()] = (start, size, stored)
        pos += 32 + 20 * ndims
        sub = _segment(raw, file_pos, b"ZISRAWSUBBLOCK")
        meta_size, _, data_size = struct.unpack_from("<iiq", raw, sub)
        data_at = sub + max(256, 16 + 32 + 20 * ndims) + meta_size
        blocks.append(Subblock(dims, ptype, compression, raw[data_at : data_at + data_size]))
    return xml, blocks


# libCZI PixelType enum: 0 Gray8, 1 Gray16, 2 Gray32Float, 3 Bgr24, 4 Bgr48
SAMPLES = {0: ("uint8", 1), 1: ("uint16", 1), 2: ("float32", 1), 3: ("uint8", 3), 4: ("uint16", 3)}


def stitched_plane(blocks: list[Subblock], **plane: int) -> np.ndarray:
    """One plane composed from the full-resolution subblocks in file order, as RGB if BGR."""
    full = [
        b for b in blocks
        if b.dims["X"][1] == b.dims["X"][2]  # pyramid subblocks are stored smaller
        and all(b.dims.get(k, (0,))[0] == v for k, v in plane.items())
    ]  # fmt: skip
    x0 = min(b.dims["X"][0] for b in full)
    y0 = min(b.dims["Y"][0] for b in full)
    width = max(b.dims["X"][0] + b.dims["X"][1] for b in full) - x0
    height = max(b.dims["Y"][0] + b.dims["Y"][1] for b in full) - y0
    dtype, samples = SAMPLES[full[0].pixel_type]
    out = np.zeros((height, width, samples), dtype)
    for b in sorted(full, key=lambda b: b.dims.get("M", (0,))[0]):  # higher M drawn on top
        assert b.compression == 0, "this decoder reads uncompressed subblocks only"
        (x, w, _), (y, h, _) = b.dims["X"], b.dims["Y"]
        tile = np.frombuffer(b.data, dtype).reshape(h, w, samples)
        out[y - y0 : y - y0 + h, x - x0 : x - x0 + w] = tile
    return out[..., ::-1] if samples == 3 else out[..., 0]  # BGR memory order -> RGB


def extent(blocks: list[Subblock], dim: str) -> int:
    values = {b.dims[dim][0] for b in blocks if dim in b.dims}
    return len(values) if values else 1


# ----------------------------------------------------------------------------------- tests

NAMES = sorted(EXPECTED)


@pytest.fixture(scope="module")
def decoded() -> dict[str, Any]:
    return {name: decode(DATA / name) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_table_agrees_with_file_name_and_raw_file(name: str, decoded: dict[str, Any]) -> None:
    exp = EXPECTED[name]
    xml, blocks = decoded[name]
    counts = re.search(r"s_(\d+)_t_(\d+)_c_(\d+)_z_(\d+)", name)
    if counts:  # s, t, c, z encoded in the name
        s, t, c, z = map(int, counts.groups())
        assert (exp.series, *exp.shape[:3]) == (s, t, c, z)
    assert exp.shape[:3] == tuple(extent(blocks, d) for d in "TCZ")
    assert exp.series == extent(blocks, "S")
    image = xml.find("Metadata/Information/Image")
    assert image is not None
    names = tuple(ch.get("Name") for ch in image.iterfind("Dimensions/Channels/Channel"))
    assert names == exp.channels
    scaling = {
        d.get("Id"): float(d.findtext("Value") or "nan") * 1e6
        for d in xml.iterfind("Metadata/Scaling/Items/Distance")
    }
    np.testing.assert_allclose([scaling.get(a, 1.0) for a in "XYZ"], exp.voxel_um, rtol=1e-12)
    pixel_type = image.findtext("PixelType")
    assert (pixel_type or "").startswith("Bgr") == (len(exp.shape) == 6)
    plane = stitched_plane(blocks, T=0, C=0, Z=0)
    assert plane.shape[:2] == exp.shape[3:5]
    assert plane.dtype == np.dtype(exp.dtype)
    tiles = {(b.dims["X"][0], b.dims["Y"][0]) for b in blocks if b.dims["X"][1] == b.dims["X"][2]}
    assert len(tiles) == max(exp.tiles, 1)


@pytest.mark.parametrize("name", NAMES)
def test_reader_dimensions_and_metadata(name: str) -> None:
    exp = EXPECTED[name]
    with open_image(DATA / name) as reader:
        assert isinstance(reader, CziReader)
        assert reader.series_count == exp.series
        meta = reader.metadata(0)
        assert meta.axes == ("TCZYXS" if len(exp.shape) == 6 else "TCZYX")
        assert meta.shape == exp.shape
        assert meta.dtype == np.dtype(exp.dtype)
        np.testing.assert_allclose(meta.voxel_size, exp.voxel_um, rtol=1e-9)
        assert meta.unit == "micrometer"
        assert meta.channel_names == exp.channels
        assert len(meta.extra.get("tiles", [])) == exp.tiles
        arr = reader.to_dask(0)
        assert arr.shape == exp.shape
        assert arr.dtype == np.dtype(exp.dtype)


@pytest.mark.parametrize("name", NAMES)
def test_reader_pixels_match_raw_subblocks(name: str, decoded: dict[str, Any]) -> None:
    exp = EXPECTED[name]
    _, blocks = decoded[name]
    with CziReader(DATA / name) as reader:
        data = reader.to_dask(0).compute()
    t_start = min(b.dims["T"][0] for b in blocks) if "T" in blocks[0].dims else 0
    for t in range(exp.shape[0]):
        for c in range(exp.shape[1]):
            for z in range(exp.shape[2]):
                plane = {"T": t_start + t, "C": c, "Z": z}
                plane = {k: v for k, v in plane.items() if k in blocks[0].dims}
                np.testing.assert_array_equal(
                    data[t, c, z], stitched_plane(blocks, **plane), err_msg=f"{name} {plane}"
                )


def test_time_interval_from_offsets() -> None:
    # CD_s_1_t_3_c_2_z_5.czi: <T><Positions><List><Offsets>0 60.075 120.15 (seconds)
    with CziReader(DATA / "CD_s_1_t_3_c_2_z_5.czi") as reader:
        assert reader.metadata().time_interval == pytest.approx(60.075)


def test_mosaic_tiles_relative_to_the_stitched_origin() -> None:
    with CziReader(DATA / "tiles_time_z.czi") as reader:
        tiles = reader.metadata().extra["tiles"]
    assert sorted(tuple(t) for t in tiles) == [
        (0, 0, 256, 256), (0, 256, 256, 256), (256, 0, 256, 256), (256, 256, 256, 256)
    ]  # fmt: skip


@pytest.mark.parametrize("fraction", [0.5, 0.97])
@pytest.mark.parametrize("name", NAMES)
def test_truncated_real_file(name: str, fraction: float, tmp_path: Path) -> None:
    raw = (DATA / name).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(raw[: int(len(raw) * fraction)])
    with pytest.raises(FormatError, match="truncated CZI") as info:
        CziReader(cut)
    assert info.value.path == cut


def test_cut_in_trailing_attachments_is_caught(tmp_path: Path) -> None:
    # ZEN writes the subblock directory near the start: libCZI reads every pixel of this file
    # without complaint, although its last attachment (a timestamp list or thumbnail) is cut
    raw = (DATA / "CD_s_1_t_3_c_2_z_5.czi").read_bytes()
    cut = tmp_path / "cut.czi"
    cut.write_bytes(raw[:-4096])
    with pytest.raises(FormatError, match="segment ZISRAWATTACH"):
        CziReader(cut)
