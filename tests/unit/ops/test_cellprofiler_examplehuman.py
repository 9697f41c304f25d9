"""Nuclei of CellProfiler's ExampleHuman images (HT29 cells), segmented with the settings of
CellProfiler's own pipeline for them, are plausible in number and size.

How this is checked (no CellProfiler run is needed, nor its output stored):

1. ``ExampleHuman.cppipe`` is parsed here. Its NamesAndTypes module names the image whose file
   name contains ``d0.tif`` "DNA" (the DAPI stain, per the module notes), ``d1.tif`` "PH3" and
   ``d2.tif`` "cellbody"; the first IdentifyPrimaryObjects module finds "Nuclei" in DNA with:
   typical diameter 8-80 px, objects outside that range and on the border discarded, a global
   Minimum Cross-Entropy (Li) threshold after smoothing at scale 1.3488 (Gaussian sigma 1),
   correction 1.0, clumps split by intensity (seeds: maxima of the image smoothed with
   CellProfiler's automatic filter, size ``2.35 * d_min / 3.5``, i.e. sigma ``d_min / 3.5``,
   at least ``d_min / 1.5`` apart) with dividing lines by intensity, holes filled.
   The test asserts these settings, then maps them onto :func:`segment_field`.
2. The count is compared with an independent estimate: Laplacian-of-Gaussian blob detection
   (:func:`skimage.feature.blob_log`, sigma 3-8 px, i.e. blobs of 8-23 px diameter, the
   low end of the pipeline's range where these nuclei are) counting blobs at least 8 px from
   the border, the same border rule as CellProfiler's. When this test was written: 277 nuclei
   segmented, 280 interior blobs (314 in all); 97 % of the objects found before the size
   filter already had equivalent diameters within 8-80 px (median 12.6 px).
3. Bounds asserted: the count within 10 % of the blob count and below the pipeline's own
   "maximum number of objects" (500); >= 90 % of unfiltered objects inside the typical diameter
   range, so that range fits these nuclei and the filter only trims debris and fragments;
   nearly every nucleus holds a blob (>= 90 %) and nearly every blob lies in a nucleus, so the
   counts agree object by object, not only in total.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage.feature import blob_log

from scopeflow.ops.cyto.segment import segment_field

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cellprofiler-examplehuman"
PIPELINE = DATA / "ExampleHuman.cppipe"

pytestmark = pytest.mark.skipif(
    not PIPELINE.is_file(),
    reason=f"CellProfiler ExampleHuman data not found: {DATA} (../shared/data/...)",
)


def _modules(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """``(module name, [(setting, value), ...])`` in pipeline order."""
    modules: list[tuple[str, list[tuple[str, str]]]] = []
    for line in text.splitlines():
        head = re.match(r"^(\w+):\[module_num:", line)
        if head:
            modules.append((head.group(1), []))
        elif modules and line.startswith("    ") and ":" in line:
            key, _, value = line.strip().partition(":")
            modules[-1][1].append((key, value))
    return modules


def _first(settings: list[tuple[str, str]], key: str) -> str:
    return next(v for k, v in settings if k == key)


@pytest.fixture(scope="module")
def nuclei_settings() -> dict[str, str]:
    modules = _modules(PIPELINE.read_text(encoding="utf-8"))
    names = dict(modules)["NamesAndTypes"]
    files: dict[str, str] = {}
    rule = None
    for key, value in names:
        if key == "Select the rule criteria":
            found = re.search(r'file does contain "([^"]+)"', value)
            rule = found.group(1) if found else None
        elif key == "Name to assign these images" and rule is not None:
            files[value] = rule
            rule = None
    assert files == {"DNA": "d0.tif", "PH3": "d1.tif", "cellbody": "d2.tif"}
    primary = [s for name, s in modules if name == "IdentifyPrimaryObjects"]
    nuclei = next(
        s for s in primary if _first(s, "Name the primary objects to be identified") == "Nuclei"
    )
    assert _first(nuclei, "Select the input image") == "DNA"
    out = {k: v for k, v in reversed(nuclei)}  # first occurrence wins
    out["file"] = files["DNA"]
    return out


def test_pipeline_settings_are_the_ones_mapped(nuclei_settings: dict[str, str]) -> None:
    s = nuclei_settings
    assert s["Typical diameter of objects, in pixel units (Min,Max)"] == "8,80"
    assert s["Discard objects outside the diameter range?"] == "Yes"
    assert s["Discard objects touching the border of the image?"] == "Yes"
    assert s["Threshold strategy"] == "Global"
    assert s["Thresholding method"] == "Minimum Cross-Entropy"
    assert float(s["Threshold smoothing scale"]) == pytest.approx(1.3488)
    assert float(s["Threshold correction factor"]) == 1.0
    assert s["Method to distinguish clumped objects"] == "Intensity"
    assert s["Method to draw dividing lines between clumped objects"] == "Intensity"
    assert s["Automatically calculate size of smoothing filter for declumping?"] == "Yes"
    assert s["Automatically calculate minimum allowed distance between local maxima?"] == "Yes"
    assert s["Use advanced settings?"] == "No"  # basic mode: holes are filled
    assert s["Maximum number of objects"] == "500"


def _segment(settings: dict[str, str], image: np.ndarray, *, filters: bool) -> np.ndarray:
    d_min, d_max = (
        float(v)
        for v in settings["Typical diameter of objects, in pixel units (Min,Max)"].split(",")
    )
    return segment_field(
        image,
        channel_axis=None,
        method="li",  # Minimum Cross-Entropy
        smooth=float(settings["Threshold smoothing scale"]) / (2 * 0.6744),  # = sigma 1
        threshold_correction=float(settings["Threshold correction factor"]),
        seeds="maxima",
        seed_smooth=(2.35 * d_min / 3.5) / 2.35,  # automatic declumping filter, as a sigma
        min_distance=d_min / 1.5,  # automatic maxima suppression distance
        watershed_on="intensity",
        fill_holes=True,
        max_hole_area=d_max * d_max,
        min_area=np.pi * d_min**2 / 4 if filters else 0.0,
        max_area=np.pi * d_max**2 / 4 if filters else None,
        remove_border=filters,
    )


def test_nuclei_count_and_size_are_plausible(nuclei_settings: dict[str, str]) -> None:
    dna = tifffile.imread(next(DATA.glob(f"*{nuclei_settings['file']}")))
    assert dna.ndim == 2
    d_min, d_max = 8.0, 80.0

    raw = _segment(nuclei_settings, dna, filters=False)
    raw_diam = 2 * np.sqrt(np.bincount(raw.ravel())[1:] / np.pi)
    assert np.mean((raw_diam >= d_min) & (raw_diam <= d_max)) >= 0.90

    nuclei = _segment(nuclei_settings, dna, filters=True)
    n = int(nuclei.max())
    diam = 2 * np.sqrt(np.bincount(nuclei.ravel())[1:] / np.pi)
    assert np.all((diam >= d_min) & (diam <= d_max))
    assert 10 <= float(np.median(diam)) <= 20

    blobs = blob_log(
        dna.astype(np.float64) / 255.0, min_sigma=3, max_sigma=8, num_sigma=6, threshold=0.02
    )
    rows, cols = blobs[:, 0].astype(int), blobs[:, 1].astype(int)
    h, w = dna.shape
    interior = (rows >= 8) & (rows < h - 8) & (cols >= 8) & (cols < w - 8)
    n_blobs = int(interior.sum())
    assert abs(n - n_blobs) <= 0.10 * n_blobs
    assert n < int(nuclei_settings["Maximum number of objects"])

    # object by object: nuclei hold blobs, blobs lie in (unfiltered) nuclei
    hit = np.unique(nuclei[rows, cols])
    assert np.count_nonzero(hit) >= 0.90 * n
    assert np.mean(raw[rows, cols] > 0) >= 0.95
