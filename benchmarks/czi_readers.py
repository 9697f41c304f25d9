"""CZI libraries side by side: open + read throughput and metadata completeness.

Candidates for scopeflow's CZI reader, each used the way a reader would use it:

- ``pylibczirw``: ZEISS' pylibCZIrw (libCZI), one ``read(plane, scene)`` per T/C/Z plane of each
  scene (a mosaic scene comes back stitched);
- ``aicspylibczi``: AICS' aicspylibczi (libCZI), one ``read_image(S, T, C, Z)`` per plane
  (``read_mosaic`` for mosaics, stitched like pylibCZIrw), and ``aicspylibczi-bulk``: one
  ``read_image(S=s)`` per scene (all planes at once, tiles unstitched);
- ``bioio-czi``: bioio's CZI plugin (default backend aicspylibczi), ``reader.data`` per scene;
- ``scopeflow``: the chosen result, :class:`scopeflow.io._czi.CziReader` (pylibCZIrw) with
  ``to_dask(i).compute()`` on the threaded scheduler: one task per Z-slab of up to 32 MiB, each
  opening the file.

Files: the ZEN-written CZIs in ``../shared/data/czi/`` (small: 0.6 to 3 MB, so their figures are
dominated by per-call overhead) and a synthetic CZI written by
:func:`scopeflow.testing.make_spim_dataset` (pylibCZIrw writer, uncompressed, 4 scenes), about
130 MB with the default shape, plus a zstd-compressed copy of it (``synthetic_zstd.czi``, as ZEN
can write). Timings are the best of ``--repeat`` runs with the file in the page
cache (every run reads the same bytes; the first run warms the cache), so they measure decoding
and library overhead, not the disk. MB/s = decoded pixel bytes / (open + read seconds).

Metadata completeness: what each library's API reports *without* parsing the XML by hand
(shape, dtype, voxel size, channel names, time interval, scene names, tile positions); ``xml``
means the field is only in the raw XML the library hands out.

aicspylibczi and bioio-czi are not scopeflow dependencies: install them to measure them
(``uv pip install aicspylibczi bioio-czi``); a library that is missing or fails is reported as an
error in its cell, not a crash.

    python benchmarks/czi_readers.py --repeat 7
    python benchmarks/czi_readers.py --shape 64,512,512 --views 4 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "czi"


# --------------------------------------------------------------------------- readers under test


def read_pylibczirw(path: Path) -> int:
    from pylibCZIrw import czi as pyczi

    nbytes = 0
    with pyczi.open_czi(str(path)) as czi:
        box = czi.total_bounding_box
        scenes: list[int | None] = list(czi.scenes_bounding_rectangle) or [None]
        for scene in scenes:
            for t in range(*box.get("T", (0, 1))):
                for c in range(*box.get("C", (0, 1))):
                    for z in range(*box.get("Z", (0, 1))):
                        plane = czi.read(plane={"T": t, "C": c, "Z": z}, scene=scene)
                        nbytes += plane.nbytes
    return nbytes


def _aics_dims(czi: Any) -> dict[str, tuple[int, int]]:
    return dict(czi.get_dims_shape()[0])


def read_aicspylibczi(path: Path) -> int:
    import aicspylibczi

    czi = aicspylibczi.CziFile(path)
    dims = _aics_dims(czi)
    nbytes = 0
    mosaic = czi.is_mosaic()
    for s in range(*dims.get("S", (0, 1))):
        kw_s = {"S": s} if "S" in dims else {}
        for t in range(*dims.get("T", (0, 1))):
            for c in range(*dims.get("C", (0, 1))):
                for z in range(*dims.get("Z", (0, 1))):
                    kw = {**kw_s, "T": t, "C": c, "Z": z}
                    kw = {k: v for k, v in kw.items() if k in dims}
                    if mosaic:
                        box = czi.get_mosaic_scene_bounding_box(s) if "S" in dims else None
                        region = (box.x, box.y, box.w, box.h) if box is not None else None
                        kw.pop("S", None)
                        img = czi.read_mosaic(region=region, scale_factor=1.0, **kw)
                    else:
                        img, _ = czi.read_image(**kw)
                    nbytes += img.nbytes
    czi.reader = None  # release the handle
    return nbytes


def read_aicspylibczi_bulk(path: Path) -> int:
    import aicspylibczi

    czi = aicspylibczi.CziFile(path)
    dims = _aics_dims(czi)
    nbytes = 0
    for s in range(*dims.get("S", (0, 1))):
        img, _ = czi.read_image(**({"S": s} if "S" in dims else {}))
        nbytes += img.nbytes
    return nbytes


def read_bioio(path: Path) -> int:
    from bioio_czi import Reader

    nbytes = 0
    with warnings.catch_warnings():
        # bioio-czi logs/warns about optional metadata it cannot find; not what we time
        warnings.simplefilter("ignore")
        reader = Reader(path)
        for scene in reader.scenes:
            reader.set_scene(scene)
            nbytes += reader.data.nbytes
    return nbytes


def read_scopeflow(path: Path) -> int:
    from scopeflow.io._czi import CziReader

    nbytes = 0
    with CziReader(path) as reader:
        for i in range(reader.series_count):
            nbytes += reader.to_dask(i).compute(scheduler="threads").nbytes
    return nbytes


READERS: dict[str, Callable[[Path], int]] = {
    "scopeflow": read_scopeflow,
    "pylibczirw": read_pylibczirw,
    "aicspylibczi": read_aicspylibczi,
    "aicspylibczi-bulk": read_aicspylibczi_bulk,
    "bioio-czi": read_bioio,
}


# --------------------------------------------------------------------------- metadata


def _xml_fields(xml: str) -> dict[str, Any]:
    """Voxel size (µm), channel names, time interval from raw CZI XML (for 'xml' entries)."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    scaling = {
        d.get("Id"): float(d.findtext("Value") or "nan") * 1e6
        for d in root.iterfind("Metadata/Scaling/Items/Distance")
    }
    names = [
        c.get("Name") or c.get("Id")
        for c in root.iterfind("Metadata/Information/Image/Dimensions/Channels/Channel")
    ]
    return {"voxel_size": scaling, "channel_names": names}


def meta_pylibczirw(path: Path) -> dict[str, Any]:
    from pylibCZIrw import czi as pyczi

    with pyczi.open_czi(str(path)) as czi:
        tiles: list[tuple[int, int]] = []

        def visit(_: int, info: Any) -> bool:
            if info.is_mindex_valid():
                tiles.append((info.logicalRect.x, info.logicalRect.y))
            return True

        czi.enumerate_subblocks(visit)
        xml = _xml_fields(czi.raw_metadata)
        return {
            "shape": {k: v[1] - v[0] for k, v in czi.total_bounding_box.items()},
            "dtype": sorted(set(czi.pixel_types.values())),
            "voxel_size": "xml",
            "channel_names": "xml",
            "time_interval": "xml",
            "scenes": sorted(czi.scenes_bounding_rectangle),
            "tile_positions": len(set(tiles)) or None,
            "_xml": xml,
        }


def meta_aicspylibczi(path: Path) -> dict[str, Any]:
    import aicspylibczi

    czi = aicspylibczi.CziFile(path)
    tiles = czi.get_all_mosaic_tile_bounding_boxes() if czi.is_mosaic() else {}
    return {
        "shape": {k: v[1] - v[0] for k, v in _aics_dims(czi).items()},
        "dtype": czi.pixel_type,
        "voxel_size": "xml",
        "channel_names": "xml",
        "time_interval": "xml",
        "scenes": sorted(czi.get_all_scene_bounding_boxes()),
        "tile_positions": len(tiles) or None,
    }


def meta_bioio(path: Path) -> dict[str, Any]:
    from bioio_czi import Reader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = Reader(path)
        pps = reader.physical_pixel_sizes
        try:
            interval = reader.time_interval
        except Exception as exc:
            interval = f"error: {type(exc).__name__}"
        tiles = None
        if "M" in reader.dims.order:
            tiles = len(reader.get_mosaic_tile_positions())
        return {
            "shape": dict(zip(reader.dims.order, reader.dims.shape, strict=True)),
            "dtype": str(reader.dtype),
            "voxel_size": [pps.X, pps.Y, pps.Z],
            "channel_names": [str(c) for c in reader.channel_names],
            "time_interval": None if interval is None else str(interval),
            "scenes": list(reader.scenes),
            "tile_positions": tiles,
        }


METADATA: dict[str, Callable[[Path], dict[str, Any]]] = {
    "pylibczirw": meta_pylibczirw,
    "aicspylibczi": meta_aicspylibczi,
    "bioio-czi": meta_bioio,
}


# --------------------------------------------------------------------------- driver


def time_reader(read: Callable[[Path], int], path: Path, repeat: int) -> dict[str, Any]:
    read(path)  # warm the page cache and the library's imports
    best = float("inf")
    nbytes = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        nbytes = read(path)
        best = min(best, time.perf_counter() - t0)
    return {"seconds": best, "mb": nbytes / 1e6, "mb_per_s": nbytes / 1e6 / best}


def synthetic_file(out: Path, shape: tuple[int, int, int], views: int) -> Path:
    from scopeflow.testing import make_spim_dataset

    make_spim_dataset(out, views=views, timepoints=1, shape=shape, seed=0, write_czi=True)
    return out / "czi" / "t000.czi"


def compressed_copy(src: Path, dst: Path) -> Path:
    """``src`` rewritten plane by plane with zstd compression (as ZEN can write)."""
    from pylibCZIrw import czi as pyczi

    with pyczi.open_czi(str(src)) as czi:
        box = czi.total_bounding_box
        scenes = sorted(czi.scenes_bounding_rectangle)
        scaling = {
            d["@Id"]: float(d["Value"])
            for d in czi.metadata["ImageDocument"]["Metadata"]["Scaling"]["Items"]["Distance"]
        }
        planes = [
            (s, z, czi.read(plane={"T": 0, "C": 0, "Z": z}, scene=s)[..., 0])
            for s in scenes
            for z in range(*box["Z"])
        ]
    with pyczi.create_czi(
        str(dst),
        exist_ok=True,
        compression_options="zstd1:ExplicitLevel=1;PreProcess=HiLoByteUnpack",
    ) as out:
        for s, z, data in planes:
            out.write(data=data, plane={"T": 0, "Z": z, "C": 0}, scene=s)
        out.write_metadata(
            document_name=dst.stem,
            channel_names={0: "beads"},
            scale_x=scaling["X"],
            scale_y=scaling["Y"],
            scale_z=scaling["Z"],
        )
    return dst


def same_pixels(path: Path) -> bool:
    """pylibCZIrw and aicspylibczi return identical planes for a non-mosaic file."""
    import aicspylibczi
    from pylibCZIrw import czi as pyczi

    a = aicspylibczi.CziFile(path)
    dims = _aics_dims(a)
    with pyczi.open_czi(str(path)) as czi:
        for s in range(*dims.get("S", (0, 1))):
            kw = {"S": s} if "S" in dims else {}
            ref, _ = a.read_image(T=0, C=0, Z=0, **kw)
            scene = s if czi.scenes_bounding_rectangle else None
            got = czi.read(plane={"T": 0, "C": 0, "Z": 0}, scene=scene)[..., 0]
            if not np.array_equal(np.squeeze(ref), got):
                return False
    return True


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="64,512,512", help="synthetic z,y,x per view")
    parser.add_argument("--views", type=int, default=4, help="synthetic views (= scenes)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=REAL_DATA)
    args = parser.parse_args(argv)
    shape = tuple(int(s) for s in args.shape.split(","))
    assert len(shape) == 3

    result: dict[str, Any] = {"files": {}, "metadata": {}}
    with tempfile.TemporaryDirectory() as tmp:
        files = sorted(args.data.glob("*.czi")) if args.data.is_dir() else []
        synth = synthetic_file(Path(tmp) / "synth", shape, args.views)  # type: ignore[arg-type]
        files.append(synth)
        packed = compressed_copy(synth, Path(tmp) / "synthetic_zstd.czi")
        files.append(packed)
        result["synthetic_same_pixels"] = same_pixels(synth)
        for path in files:
            name = "synthetic.czi" if path == synth else path.name
            size = path.stat().st_size / 1e6
            row: dict[str, Any] = {"file_mb": round(size, 2)}
            for lib, read in READERS.items():
                try:
                    row[lib] = time_reader(read, path, args.repeat)
                except Exception as exc:
                    row[lib] = {"error": f"{type(exc).__name__}: {exc}"}
            result["files"][name] = row
            meta = {}
            for lib, get in METADATA.items():
                try:
                    meta[lib] = get(path)
                except Exception as exc:
                    meta[lib] = {"error": f"{type(exc).__name__}: {exc}"}
            result["metadata"][name] = meta
    _print(result)
    return result


def _print(result: dict[str, Any]) -> None:
    libs = list(READERS)
    print("MB/s = decoded MB / (open + read s), best of --repeat; then the MB each one returned")
    print(f"{'file':24} {'MB':>7} " + " ".join(f"{lib:>22}" for lib in libs))
    for name, row in result["files"].items():
        cells = []
        for lib in libs:
            r = row[lib]
            cells.append(
                f"{'ERR':>22}" if "error" in r else f"{r['mb_per_s']:6.0f} MB/s {r['mb']:6.1f} MB"
            )
        print(f"{name:24} {row['file_mb']:7.2f} " + " ".join(cells))
    print("synthetic: pylibCZIrw == aicspylibczi pixels:", result["synthetic_same_pixels"])
    print(json.dumps(result["metadata"], indent=1, default=str))


if __name__ == "__main__":
    main()
