"""``scopeflow run cyto`` end to end on synthetic data with ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scopeflow.engine import read_events
from scopeflow.testing import make_cyto_dataset
from tests.conftest import run_cli


def _match(found: pd.DataFrame, truth: pd.DataFrame, max_dist: float) -> tuple[int, list[float]]:
    """Greedy one-to-one centroid matching; returns matches and found/true area ratios."""
    matched, ratios = 0, []
    for image_id, t in truth.groupby("image_id"):
        f = found[found["image_id"].astype(int) == int(image_id)]
        if f.empty:
            continue
        fxy = f[["AreaShape_Center_X", "AreaShape_Center_Y"]].to_numpy(float)
        txy = t[["centroid_x", "centroid_y"]].to_numpy(float)
        d = np.hypot(*(fxy[:, None, :] - txy[None, :, :]).transpose(2, 0, 1))
        used_f: set[int] = set()
        used_t: set[int] = set()
        for fi, ti in zip(*np.unravel_index(np.argsort(d, axis=None), d.shape), strict=True):
            if d[fi, ti] > max_dist:
                break
            if fi in used_f or ti in used_t:
                continue
            used_f.add(fi)
            used_t.add(ti)
            matched += 1
            ratios.append(f["AreaShape_Area"].iloc[fi] / t["area"].iloc[ti])
    return matched, ratios


@pytest.fixture(scope="module")
def ifc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ifc")
    make_cyto_dataset(out, kind="ifc", n=240, seed=4)
    return out


def test_ifc_run_finds_every_cell_with_features(ifc: Path, tmp_path: Path) -> None:
    cfg = ifc / "config.yaml"
    text = cfg.read_text() + "batch_size: 100\n"
    text += "export: {csv: true, fcs: true, anndata: true}\n"
    cfg.write_text(text)
    run = tmp_path / "run"
    result = run_cli(["run", "cyto", "-c", cfg, "-w", run, "--no-progress"], timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"]["process"]["units"] == 3  # 240 images in batches of 100
    for key in ("features", "images", "qc", "csv", "fcs", "anndata"):
        assert (run / summary["outputs"][key]).exists(), key
    features = pd.read_parquet(run / summary["outputs"]["features"])
    images = pd.read_parquet(run / summary["outputs"]["images"])
    truth = pd.read_csv(ifc / "truth.csv")
    assert len(images) == 240
    assert (images["objects"] == 1).mean() >= 0.99  # one cell per image, found
    matched, ratios = _match(features, truth, max_dist=5.0)
    assert matched >= 0.99 * len(truth)
    assert abs(float(np.median(ratios)) - 1.0) <= 0.10
    # CellProfiler-style names for every family, per channel
    for col in (
        "AreaShape_Area",
        "AreaShape_Zernike_9_9",
        "Intensity_MeanIntensity_nucleus",
        "Texture_Contrast_spots_3_avg",
        "Granularity_1_darkfield",
        "Location_Center_X",
        "ImageNumber",
        "ObjectNumber",
        "image_id",
        "Mask_AreaFraction_nucleus",
    ):
        assert any(c.startswith(col) for c in features.columns), col
    assert sorted(features["ImageNumber"].unique()) == list(range(1, 241))
    assert (run / "outputs" / "qc" / "cells.png").stat().st_size > 10_000
    assert (run / "outputs" / "qc" / "features.png").stat().st_size > 10_000


def test_confocal_fields_touching_cells_and_a_corrupt_field(tmp_path: Path) -> None:
    data = tmp_path / "confocal"
    make_cyto_dataset(data, kind="confocal", n=3, seed=2)
    broken = data / "fields" / "field001.tif"
    broken.write_bytes(broken.read_bytes()[:4096])  # truncated by a failed copy
    run = tmp_path / "run"
    result = run_cli(
        ["run", "cyto", "-c", data / "config.yaml", "-w", run, "--no-progress"], timeout=400
    )
    assert result.returncode == 0, result.stdout + result.stderr
    images = pd.read_parquet(run / "outputs" / "images.parquet").set_index("image_id")
    assert images.loc["field001", "error"] != ""
    assert str(broken) in images.loc["field001", "source"]
    assert images.loc["field000", "error"] == ""
    events = read_events(run / "events.jsonl")
    warned = [e for e in events if e.get("warnings")]
    assert len(warned) == 1 and "field001" in warned[0]["warnings"][0]

    features = pd.read_parquet(run / "outputs" / "features.parquet")
    truth = pd.read_csv(data / "truth.csv")
    truth = truth[truth["image_id"] != 1]
    assert truth["touching"].mean() > 0.3
    found = features.assign(image_id=features["image_id"].str.replace("field", ""))
    matched, ratios = _match(found, truth, max_dist=8.0)
    precision, recall = matched / len(found), matched / len(truth)
    f1 = 2 * precision * recall / (precision + recall)
    assert f1 >= 0.93, (precision, recall)
    assert np.mean(np.abs(np.asarray(ratios) - 1.0) <= 0.10) >= 0.9

    # resume: nothing runs again
    again = run_cli(["run", "cyto", "-c", data / "config.yaml", "-w", run, "--no-progress"])
    assert again.returncode == 0, again.stderr
    second = [e for e in read_events(run / "events.jsonl") if e["run"] == 2]
    assert {e["state"] for e in second} == {"skipped"}


def test_user_labels_mode_measures_exactly_the_given_cells(tmp_path: Path) -> None:
    data = tmp_path / "confocal"
    make_cyto_dataset(data, kind="confocal", n=1, seed=5)
    cfg = data / "labels.yaml"
    cfg.write_text(
        "input: {layout: fields, pattern: 'fields/*.tif'}\n"
        "channels: [nucleus, membrane, cytoplasm, spots, marker]\n"
        "segment: {mode: labels, labels_pattern: 'labels/{id}.tif'}\n"
        "features: {families: [shape, intensity]}\n"
    )
    run = tmp_path / "run"
    result = run_cli(["run", "cyto", "-c", cfg, "-w", run, "--no-progress"], timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    features = pd.read_parquet(run / "outputs" / "features.parquet")
    truth = pd.read_csv(data / "truth.csv")
    merged = features.merge(truth, left_on="ObjectNumber", right_on="object")
    assert len(merged) == len(truth) == len(features)
    np.testing.assert_array_equal(merged["AreaShape_Area"], merged["area"])
    np.testing.assert_allclose(
        merged["Intensity_MeanIntensity_nucleus"], merged["mean_intensity_nucleus"], rtol=1e-9
    )
    assert not any(c.startswith("Texture_") for c in features.columns)


def test_per_image_files_with_channel_names_from_the_file_names(ifc: Path, tmp_path: Path) -> None:
    import tifffile

    files = tmp_path / "scip"
    files.mkdir()
    stacks = [tifffile.imread(ifc / "ifc" / f"ch{c}.tif") for c in range(6)]
    for i in range(40):
        for c, stack in enumerate(stacks):
            tifffile.imwrite(files / f"{i}_Ch{c + 1}.tif", stack[i])
    broken = files / "7_Ch2.tif"  # an unreadable image inside the batch
    broken.write_bytes(broken.read_bytes()[:100])
    cfg = tmp_path / "config.yaml"  # no channel list: names come from '{channel}' in the names
    cfg.write_text(
        "input: {layout: files, pattern: 'scip/{id}_Ch{channel}.tif'}\n"
        "segment: {mode: ifc, channel: '3', method: otsu}\n"
    )
    run = tmp_path / "run"
    result = run_cli(["run", "cyto", "-c", cfg, "-w", run, "--no-progress"], timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    features = pd.read_parquet(run / "outputs" / "features.parquet")
    assert {f"Intensity_MeanIntensity_{c}" for c in "123456"} <= set(features.columns)
    images = pd.read_parquet(run / "outputs" / "images.parquet")
    assert sorted(images["image_id"].astype(int)) == list(range(40))
    good = images[images["error"] == ""]
    assert len(good) == 39 and (good["objects"] == 1).mean() >= 0.99
    # ImageNumber is the image's position in the input (natural order of ids), also after the
    # unreadable image 7 in the same batch
    assert (features["ImageNumber"] == features["image_id"].astype(int) + 1).all()
    assert 8 not in set(features["ImageNumber"])
