"""Quality-control pictures of a cytometry run.

A montage of random cells with their mask outlines, and histograms of key features.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from skimage.segmentation import find_boundaries

CROP = 64
GAP = 2


def _subplots(rows: int, cols: int, figsize: tuple[float, float]) -> tuple[Any, Any]:
    """A figure of its own (no pyplot state, no GUI backend) and its axes grid.

    matplotlib is imported here, not at module level: it costs ≈ 0.3 s, and the workers that
    only sample cells never need it.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, squeeze=False)


def sample_cells(
    images: NDArray[Any],
    labels: NDArray[Any],
    image_ids: Sequence[str],
    *,
    channel: int,
    n: int,
    seed: int,
) -> dict[str, NDArray[Any]]:
    """Crops (``CROP`` x ``CROP``) of up to ``n`` random cells of a batch, for the montage.

    Parameters
    ----------
    images : (N, C, H, W) array
        The batch.
    labels : (N, H, W) int array
        Its label images.
    image_ids
        Identifier of each image.
    channel
        Channel shown in the montage.
    n, seed
        How many cells, drawn with this seed.
    """
    cells = [(i, lab) for i in range(len(labels)) for lab in np.unique(labels[i]) if lab]
    rng = np.random.default_rng(seed)
    picks = rng.permutation(len(cells))[:n]
    crops = np.zeros((len(picks), CROP, CROP), dtype=np.float32)
    masks = np.zeros((len(picks), CROP, CROP), dtype=bool)
    names = []
    half = CROP // 2
    for k, p in enumerate(picks):
        i, lab = cells[p]
        rows, cols = np.nonzero(labels[i] == lab)
        cy, cx = int(rows.mean()), int(cols.mean())
        h, w = labels.shape[1:]
        y0, x0 = max(0, min(cy - half, h - CROP)), max(0, min(cx - half, w - CROP))
        img = images[i, channel, y0 : y0 + CROP, x0 : x0 + CROP].astype(np.float32)
        crops[k, : img.shape[0], : img.shape[1]] = img
        msk = labels[i, y0 : y0 + CROP, x0 : x0 + CROP] == lab
        masks[k, : msk.shape[0], : msk.shape[1]] = msk
        names.append(f"{image_ids[i]}#{lab}")
    return {"crops": crops, "masks": masks, "names": np.array(names, dtype=str)}


def montage_rgb(crops: NDArray[Any], masks: NDArray[Any], cols: int) -> NDArray[np.float32]:
    """Cell crops tiled into one RGB image (contrast per crop), mask outlines in red.

    Tiles are ``CROP`` pixels with a 2-pixel white gap; unused tiles stay white.
    """
    n = len(crops)
    rows = max(1, -(-n // cols))
    step = CROP + GAP
    out = np.ones((rows * step - GAP, cols * step - GAP, 3), dtype=np.float32)
    for k in range(n):
        img = crops[k]
        lo, hi = np.percentile(img, (1, 99.5))
        tile = np.repeat(np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)[..., None], 3, axis=2)
        tile[find_boundaries(masks[k], mode="inner")] = (1.0, 0.1, 0.1)
        y, x = (k // cols) * step, (k % cols) * step
        out[y : y + CROP, x : x + CROP] = tile
    return out


def write_montage(samples: dict[str, NDArray[Any]], path: Path, *, title: str) -> Path:
    """A grid of cell crops (contrast per crop) with their mask outlines in red, as PNG.

    One image with the cells' names written over it: a figure of one axes draws ~10x faster
    than one axes per cell.
    """
    crops, masks = samples["crops"], samples["masks"]
    n = len(crops)
    cols = max(1, min(8, n))
    rows = max(1, -(-n // cols))
    fig, axes = _subplots(1, 1, (1.4 * cols, 1.4 * rows + 0.4))
    ax = axes[0, 0]
    ax.axis("off")
    ax.imshow(montage_rgb(crops, masks, cols), interpolation="nearest")
    step = CROP + GAP
    for k in range(n):
        y, x = (k // cols) * step, (k % cols) * step
        ax.text(x + 1, y + 1, str(samples["names"][k]), fontsize=4, va="top", color="yellow")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def write_histograms(columns: dict[str, NDArray[Any]], path: Path, *, title: str) -> Path:
    """Histograms of the given feature columns (NaNs left out), as PNG."""
    names = list(columns)
    cols = min(3, max(1, len(names)))
    rows = max(1, -(-len(names) // cols))
    fig, axes = _subplots(rows, cols, (3.2 * cols, 2.4 * rows + 0.3))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, name in zip(axes.ravel(), names, strict=False):
        values = np.asarray(columns[name], dtype=np.float64)
        values = values[np.isfinite(values)]
        ax.axis("on")
        ax.hist(values, bins=50, color="#3b6ea5")
        ax.set_title(f"{name} (n={len(values)})", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
