"""Synthetic single-cell cytometry datasets with known ground truth.

Two kinds, both deterministic in ``seed`` (images are rendered in batches of 256 / one field at a
time, so memory stays small):

``kind="ifc"`` -- imaging flow cytometry: ``n`` images of one roughly centred cell, 6 channels x
90 x 90 (see :mod:`scopeflow.testing._cyto_ifc`)::

    ifc/ch{c}.tif      one multi-page TIFF per channel c = 0..5, page i = image i (uint16)
    images.zarr        the same pixels as one (N, C, H, W) uint16 zarr array, chunks (256, C, H, W),
                       attributes "channels", "axes", "pixel_size"
    labels.tif         N pages (uint8): 1 = the cell, 0 = background
    truth.csv          one row per cell
    dataset.json       kind, n, shape (C, H, W), channels, seed, pixel_size, files
    config.yaml        a ready configuration for the cyto pipeline (provisional keys)

``kind="confocal"`` -- ``n`` fields of 5 channels x 900 x 1600 with ~100 cells each, some
touching (see :mod:`scopeflow.testing._cyto_confocal`)::

    fields/field{i:03d}.tif   (C, H, W) uint16 ImageJ hyperstack per field
    labels/field{i:03d}.tif   (H, W) uint16 labels 1..n_i, non-overlapping
    truth.csv, dataset.json, config.yaml   as above

``truth.csv`` columns: ``image_id`` (image / field index), ``object`` (label), ``area``,
``centroid_x``, ``centroid_y``, then for confocal ``touching`` (0/1: a pixel of the object is
8-adjacent to another object) and ``marker_positive`` (0/1), then per channel
``mean_intensity_<channel>`` and ``integrated_intensity_<channel>``. All measurements are made
on the *written* uint16 images inside the true label mask (see :mod:`._cyto_truth`), so
``skimage.measure.regionprops`` on the files reproduces them.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import yaml
import zarr

from scopeflow.core.errors import ConfigError, UnknownNameError
from scopeflow.core.fileio import atomic_write_json, atomic_write_text
from scopeflow.testing._cyto_confocal import (
    CONFOCAL_CHANNELS,
    CONFOCAL_PIXEL_SIZE,
    CONFOCAL_SHAPE,
    render_field,
    touching,
)
from scopeflow.testing._cyto_ifc import IFC_CHANNELS, IFC_PIXEL_SIZE, IFC_SIZE, render_ifc_batch
from scopeflow.testing._cyto_truth import (
    CytoKind,
    CytoTruth,
    format_rows,
    measure,
    table_columns,
    write_table,
)

BATCH = 256
DEFAULT_N = {CytoKind.IFC: 2000, CytoKind.CONFOCAL: 10}


def make_cyto_dataset(
    out: str | Path, *, kind: str = "ifc", n: int | None = None, seed: int = 0
) -> CytoTruth:
    """Generate a synthetic cytometry dataset with known ground truth.

    Parameters
    ----------
    out
        Output folder (created; files of the same names are overwritten).
    kind
        ``"ifc"`` (single-cell images) or ``"confocal"`` (large fields of many cells).
    n
        Number of images (IFC, default 2000) or fields (confocal, default 10).
    seed
        Seed of every random choice: the same seed gives identical files.

    Returns
    -------
    CytoTruth
        Description of the dataset, also written to ``out/dataset.json``; the per-object truth
        is in ``out/truth.csv`` (:meth:`CytoTruth.read_table`). See the module docstring for the
        layout.

    Raises
    ------
    scopeflow.core.errors.UnknownNameError
        ``kind`` is not ``ifc`` or ``confocal``.
    scopeflow.core.errors.ConfigError
        ``n`` is smaller than 1.
    """
    try:
        k = CytoKind(kind)
    except ValueError:
        raise UnknownNameError("synthetic cytometry kind", str(kind), list(CytoKind)) from None
    count = DEFAULT_N[k] if n is None else int(n)
    if count < 1:
        raise ConfigError("make_cyto_dataset", [("n", f"must be >= 1, got {n}")])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    make = _make_ifc if k is CytoKind.IFC else _make_confocal
    truth = make(out, count, seed)
    atomic_write_json(out / "dataset.json", truth.to_dict())
    return truth


def _make_ifc(out: Path, n: int, seed: int) -> CytoTruth:
    channels = IFC_CHANNELS
    c, s = len(channels), IFC_SIZE
    files: dict[str, Any] = {
        "channel_pattern": "ifc/ch{c}.tif",
        "channels": [f"ifc/ch{i}.tif" for i in range(c)],
        "zarr": "images.zarr",
        "labels": "labels.tif",
        "table": "truth.csv",
        "config": "config.yaml",
    }
    (out / "ifc").mkdir(exist_ok=True)
    arr = zarr.open_array(
        str(out / files["zarr"]),
        mode="w",
        shape=(n, c, s, s),
        chunks=(min(BATCH, n), c, s, s),
        dtype="uint16",
    )
    arr.attrs.update(
        {
            "channels": list(channels),
            "axes": ["image", "channel", "y", "x"],
            "pixel_size": IFC_PIXEL_SIZE,
        }
    )
    res = (1.0 / IFC_PIXEL_SIZE, 1.0 / IFC_PIXEL_SIZE)
    columns = table_columns(channels)
    rows: list[str] = []
    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(tifffile.TiffWriter(out / p)) for p in files["channels"]]
        lab_writer = stack.enter_context(tifffile.TiffWriter(out / files["labels"]))
        for start in range(0, n, BATCH):
            b = min(BATCH, n - start)
            rng = np.random.default_rng(np.random.SeedSequence([seed, 2, start // BATCH]))
            images, labels = render_ifc_batch(rng, b)
            arr[start : start + b] = images
            for ch, writer in enumerate(writers):
                writer.write(images[:, ch], photometric="minisblack", metadata=None, resolution=res)
            lab_writer.write(labels, photometric="minisblack", metadata=None, resolution=res)
            table = measure(labels, images, channels)
            table["image_id"] = table["image_id"] + start
            rows.append(format_rows(table, columns))
    write_table(out / files["table"], columns, "".join(rows))
    config = {
        "input": {
            "format": "tiff",
            "layout": "channel_stacks",
            "pattern": files["channel_pattern"],
        },
        "channels": list(channels),
        "pixel_size": IFC_PIXEL_SIZE,
        "segment": {"mode": "ifc", "channel": "cytoplasm", "method": "otsu"},
    }
    alt = f"# The same images as zarr: input: {{format: zarr, path: {files['zarr']}}}\n"
    _write_config(out / files["config"], config, alt)
    return CytoTruth(
        root=out,
        kind=CytoKind.IFC,
        n=n,
        shape=(c, s, s),
        channels=channels,
        seed=seed,
        pixel_size=IFC_PIXEL_SIZE,
        files=files,
    )


def _make_confocal(out: Path, n: int, seed: int) -> CytoTruth:
    channels = CONFOCAL_CHANNELS
    files: dict[str, Any] = {
        "image_pattern": "fields/field{i:03d}.tif",
        "label_pattern": "labels/field{i:03d}.tif",
        "images": [f"fields/field{i:03d}.tif" for i in range(n)],
        "labels": [f"labels/field{i:03d}.tif" for i in range(n)],
        "table": "truth.csv",
        "config": "config.yaml",
    }
    (out / "fields").mkdir(exist_ok=True)
    (out / "labels").mkdir(exist_ok=True)
    res = (1.0 / CONFOCAL_PIXEL_SIZE, 1.0 / CONFOCAL_PIXEL_SIZE)
    columns = table_columns(channels, extra=("touching", "marker_positive"))
    rows: list[str] = []
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 3, i]))
        image, labels, positive = render_field(rng, CONFOCAL_SHAPE)
        tifffile.imwrite(
            out / files["images"][i],
            image,
            imagej=True,
            resolution=res,
            metadata={"axes": "CYX", "unit": "um", "Labels": list(channels)},
        )
        tifffile.imwrite(
            out / files["labels"][i],
            labels,
            imagej=True,
            resolution=res,
            metadata={"axes": "YX", "unit": "um"},
        )
        table = measure(labels[None], image[None], channels)
        table["image_id"] = table["image_id"] + i
        table["touching"] = touching(labels)[table["object"]].astype(np.int64)
        table["marker_positive"] = positive[table["object"]].astype(np.int64)
        rows.append(format_rows(table, columns))
    write_table(out / files["table"], columns, "".join(rows))
    config = {
        "input": {"format": "tiff", "layout": "fields", "pattern": "fields/*.tif"},
        "channels": list(channels),
        "pixel_size": CONFOCAL_PIXEL_SIZE,
        "batch_size": 1,
        "segment": {
            "mode": "field",
            "channel": "cytoplasm",
            "method": "li",
            "seeds": "nuclei",
            "seed_channel": "nucleus",
            "seed_smooth": 1.0,
            "watershed_on": "distance",
            "refine_distance": 10.0,
            "min_area": 100,
        },
    }
    _write_config(out / files["config"], config, "")
    return CytoTruth(
        root=out,
        kind=CytoKind.CONFOCAL,
        n=n,
        shape=(len(channels), *CONFOCAL_SHAPE),
        channels=channels,
        seed=seed,
        pixel_size=CONFOCAL_PIXEL_SIZE,
        files=files,
    )


def _write_config(path: Path, config: dict[str, Any], extra_comment: str) -> None:
    header = (
        "# Ready configuration for `scopeflow run cyto`, written by\n"
        "# scopeflow.testing.make_cyto_dataset. Paths are relative to this file's folder.\n"
    )
    body = yaml.safe_dump(config, sort_keys=False)
    atomic_write_text(path, header + extra_comment + body)
