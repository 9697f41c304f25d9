"""Ground-truth tables of the synthetic cytometry datasets: measuring, writing and reading them.

Every measurement is made on the *written* ``uint16`` images inside the true label mask, so a
reader that recomputes them from the files (e.g. ``skimage.measure.regionprops``) gets the same
numbers: ``area`` = pixel count, ``centroid_x`` / ``centroid_y`` = mean column / row index,
``mean_intensity_<channel>`` = mean pixel value, ``integrated_intensity_<channel>`` = pixel sum
(an integer). CellProfiler names: ``AreaShape_Area``, ``AreaShape_Center_X`` / ``_Y``,
``Intensity_MeanIntensity_<channel>``, ``Intensity_IntegratedIntensity_<channel>``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from numpy.typing import NDArray

from scopeflow.core.errors import FormatError, InputNotFoundError
from scopeflow.core.fileio import atomic_write_text


class CytoKind(StrEnum):
    """Kind of synthetic cytometry dataset."""

    IFC = "ifc"
    CONFOCAL = "confocal"


@dataclass(frozen=True)
class CytoTruth:
    """Description of a synthetic cytometry dataset (the content of ``dataset.json``).

    Attributes
    ----------
    root
        Dataset folder; ``files`` are relative to it.
    kind
        ``ifc`` (one cell per small image) or ``confocal`` (large fields of many cells).
    n
        Number of images (IFC) or fields (confocal).
    shape
        ``(C, H, W)`` of one image.
    channels
        Channel names, in channel order.
    seed
        Generator seed.
    pixel_size
        Pixel size, µm.
    files
        Relative paths (``table``, ``labels``, ``images``, patterns, ``config``).
    """

    root: Path
    kind: CytoKind
    n: int
    shape: tuple[int, int, int]
    channels: tuple[str, ...]
    seed: int
    pixel_size: float
    files: dict[str, Any] = field(default_factory=dict)

    @property
    def table_path(self) -> Path:
        """Absolute path of ``truth.csv``."""
        return self.root / str(self.files["table"])

    def read_table(self) -> dict[str, NDArray[Any]]:
        """Read ``truth.csv`` as one array per column (see :func:`read_truth_table`)."""
        return read_truth_table(self.table_path)

    def read_image(self, i: int) -> NDArray[np.uint16]:
        """Return image / field ``i`` as a ``(C, H, W)`` ``uint16`` array from the TIFF files."""
        if self.kind is CytoKind.IFC:
            return np.stack(
                [
                    tifffile.imread(self.root / self.files["channel_pattern"].format(c=c), key=i)
                    for c in range(len(self.channels))
                ]
            )
        arr: NDArray[np.uint16] = tifffile.imread(
            self.root / self.files["image_pattern"].format(i=i)
        )
        return arr

    def read_labels(self, i: int) -> NDArray[np.integer[Any]]:
        """Return the true label image ``(H, W)`` of image / field ``i``."""
        if self.kind is CytoKind.IFC:
            lab: NDArray[np.integer[Any]] = tifffile.imread(self.root / self.files["labels"], key=i)
        else:
            lab = tifffile.imread(self.root / self.files["label_pattern"].format(i=i))
        return lab

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form written to ``dataset.json``."""
        return {
            "kind": str(self.kind),
            "n": self.n,
            "shape": list(self.shape),
            "shape_axes": "cyx",
            "channels": list(self.channels),
            "seed": self.seed,
            "pixel_size": self.pixel_size,
            "unit": "um",
            "dtype": "uint16",
            "intensities": "measured on the written uint16 images inside the true label mask",
            "files": self.files,
        }

    @classmethod
    def from_json(cls, path: str | Path) -> CytoTruth:
        """Read a ``dataset.json`` written by :func:`make_cyto_dataset` (``root`` = its folder)."""
        path = Path(path)
        if not path.is_file():
            raise InputNotFoundError(path, "cytometry dataset description")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                root=path.parent,
                kind=CytoKind(d["kind"]),
                n=int(d["n"]),
                shape=(int(d["shape"][0]), int(d["shape"][1]), int(d["shape"][2])),
                channels=tuple(str(c) for c in d["channels"]),
                seed=int(d["seed"]),
                pixel_size=float(d["pixel_size"]),
                files=dict(d["files"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise FormatError(path, f"not a scopeflow cytometry dataset ({exc!r})") from exc


def table_columns(channels: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    """Column names of ``truth.csv`` in order."""
    cols = ["image_id", "object", "area", "centroid_x", "centroid_y", *extra]
    for ch in channels:
        cols += [f"mean_intensity_{ch}", f"integrated_intensity_{ch}"]
    return cols


def measure(
    labels: NDArray[np.integer[Any]], images: NDArray[np.uint16], channels: Sequence[str]
) -> dict[str, NDArray[Any]]:
    """Measure every labelled object of a stack of images.

    Parameters
    ----------
    labels
        ``(B, H, W)`` label images (0 = background).
    images
        ``(B, C, H, W)`` written ``uint16`` images.
    channels
        ``C`` channel names.

    Returns
    -------
    dict of numpy.ndarray
        One entry per column of :func:`table_columns` (without ``image_id`` offset: image ids are
        ``0 … B-1``), one row per object present, sorted by image then label.
    """
    b, h, w = labels.shape
    n_lab = int(labels.max()) + 1
    key = (np.arange(b)[:, None, None] * n_lab + labels).ravel()
    size = b * n_lab
    area = np.bincount(key, minlength=size)
    rows = np.broadcast_to(np.arange(h)[None, :, None], labels.shape).ravel()
    cols = np.broadcast_to(np.arange(w)[None, None, :], labels.shape).ravel()
    present = np.flatnonzero((area > 0) & (np.arange(size) % n_lab != 0))
    out: dict[str, NDArray[Any]] = {
        "image_id": present // n_lab,
        "object": present % n_lab,
        "area": area[present],
    }
    out["centroid_x"] = np.bincount(key, weights=cols, minlength=size)[present] / out["area"]
    out["centroid_y"] = np.bincount(key, weights=rows, minlength=size)[present] / out["area"]
    for c, ch in enumerate(channels):
        px = images[:, c].astype(np.float64).ravel()
        total = np.bincount(key, weights=px, minlength=size)[present]
        out[f"integrated_intensity_{ch}"] = np.rint(total).astype(np.int64)
        out[f"mean_intensity_{ch}"] = out[f"integrated_intensity_{ch}"] / out["area"]
    return out


def format_rows(table: dict[str, NDArray[Any]], columns: Sequence[str]) -> str:
    """Format a measured table as CSV lines (no header); floats keep full precision."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    data = [table[c] for c in columns]
    for r in range(len(data[0])):
        writer.writerow(
            [repr(float(col[r])) if col.dtype.kind == "f" else int(col[r]) for col in data]
        )
    return buf.getvalue()


def write_table(path: Path, columns: Sequence[str], body: str) -> None:
    """Write ``truth.csv`` atomically from its header and formatted rows."""
    atomic_write_text(path, ",".join(columns) + "\n" + body)


def read_truth_table(path: str | Path) -> dict[str, NDArray[Any]]:
    """Read a ``truth.csv`` into one numpy array per column (int64 where integral, else float64).

    Parameters
    ----------
    path
        The CSV file.

    Returns
    -------
    dict of numpy.ndarray
        Column name → values in file order.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(path, "truth table")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        raw = list(reader)
    out: dict[str, NDArray[Any]] = {}
    for j, name in enumerate(header):
        values = [row[j] for row in raw]
        try:
            out[name] = np.array([int(v) for v in values], dtype=np.int64)
        except ValueError:
            out[name] = np.array([float(v) for v in values], dtype=np.float64)
    return out
