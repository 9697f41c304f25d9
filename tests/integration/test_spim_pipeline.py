"""The spim pipeline end to end on synthetic data with known view transforms and drift."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scopeflow.engine import read_events
from scopeflow.io import open_image, read_spimdata
from scopeflow.testing import (
    SpimTruth,
    beads_in_view_index,
    make_spim_dataset,
    registration_errors,
)
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[SpimTruth, Path]:
    data = tmp_path_factory.mktemp("spim")
    truth = make_spim_dataset(data, views=4, timepoints=2, seed=5, write_czi=False)
    out = data / "run"
    result = run_cli(["run", "spim", "-c", data / "config.yaml", "-w", out, "--no-progress"])
    assert result.returncode == 0, result.stdout + result.stderr
    return truth, out


def _grid(run_dir: Path) -> tuple[tuple[float, ...], float, tuple[int, ...]]:
    """``(origin, spacing, shape)`` of a run's output grid (``prepare_output``'s record)."""
    rec = json.loads((run_dir / "state" / "prepare_output" / "all.json").read_text())["result"]
    g = rec["grid"]
    return tuple(g["origin"]), float(g["spacing"]), tuple(g["shape"])


def _fused(run_dir: Path, t: int = 0) -> np.ndarray:
    with open_image(run_dir / "outputs" / "fused.xml", "bdv") as bdv:
        return np.asarray(bdv.to_dask(t).compute(), dtype=float)


def _bead_widths(truth: SpimTruth, runs: list[Path]) -> list[list[float]]:
    """Mean FWHM (voxels) of every true bead at least 6 voxels inside every run's volume."""
    from scopeflow.ops.spim.deconvolution import fwhm

    outputs = [(_fused(r), *_grid(r)[:2]) for r in runs]
    widths: list[list[float]] = [[] for _ in runs]
    for w in truth.beads_world:
        idxs = [np.rint((w - np.asarray(o)) / s).astype(int)[::-1] for _, o, s in outputs]
        if all(
            (i >= 6).all() and (i < np.array(v.shape) - 6).all()
            for i, (v, _, _) in zip(idxs, outputs, strict=True)
        ):
            for k, (i, (vol, _, _)) in enumerate(zip(idxs, outputs, strict=True)):
                widths[k].append(float(np.mean([fwhm(vol, tuple(i), a) for a in range(3)])))
    return widths


def _world(sd, truth: SpimTruth, t: int, v: int, world: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """True bead positions seen by view v at t, mapped by the estimated view -> world model."""
    from scopeflow.core import affine as _affine

    return _affine.apply(sd.view_model(t, v), truth.world_to_view(v, t, world))


def test_views_are_registered_to_three_hundredths_of_a_pixel(run: tuple[SpimTruth, Path]) -> None:
    truth, out = run
    sd = read_spimdata(out / "outputs" / "registered.xml")
    for t in range(truth.n_timepoints):
        models = [sd.view_model(t, v) for v in range(truth.n_views)]
        e = registration_errors(truth, models, t)
        # issue 5: <= 0.1 mean (goal 0.03), <= 0.5 max; 0.009 / 0.029 measured
        assert e.mean() <= 0.03 and e.max() <= 0.1, (t, e.mean(), e.max())


def test_drift_between_time_points_is_recovered(run: tuple[SpimTruth, Path]) -> None:
    truth, out = run
    sd = read_spimdata(out / "outputs" / "registered.xml")
    assert np.abs(truth.drifts[1]).max() > 1.0  # there is a drift to recover
    seen = beads_in_view_index(truth, 0, 0, margin=2.0)
    seen = np.intersect1d(seen, beads_in_view_index(truth, 0, 1, margin=2.0))
    w = truth.beads_world[seen]
    moved = np.linalg.norm(_world(sd, truth, 1, 0, w) - _world(sd, truth, 0, 0, w), axis=1)
    assert moved.mean() <= 0.2, moved.mean()


def test_outputs_open_in_the_readers(run: tuple[SpimTruth, Path]) -> None:
    truth, out = run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "succeeded"
    for key in ("registered_xml", "output_xml", "output_zarr", "previews"):
        assert (out / summary["outputs"][key]).exists(), key
    with open_image(out / summary["outputs"]["output_xml"], "bdv") as bdv:
        assert bdv.series_count == truth.n_timepoints
        fused_bdv = np.asarray(bdv.to_dask(1).compute())
    with open_image(out / summary["outputs"]["output_zarr"]) as zr:
        fused_zarr = np.asarray(zr.to_dask(0).compute())
    assert fused_zarr.shape[0] == truth.n_timepoints
    np.testing.assert_array_equal(fused_zarr[1].squeeze(), fused_bdv)
    assert fused_bdv.max() > 0
    pngs = sorted((out / summary["outputs"]["previews"]).glob("*.png"))
    assert len(pngs) == truth.n_timepoints and all(p.stat().st_size > 1000 for p in pngs)


def test_fused_volume_correlates_with_the_noise_free_sample(run: tuple[SpimTruth, Path]) -> None:
    """NCC of each fused time point with the sample rendered without noise.

    Issue 5's bar (NCC >= 0.95 with the ground-truth *specimen*) is taken inside the specimen,
    away from the beads: 0.996 measured. Over every covered voxel, beads included, it is 0.93:
    the fused beads are a mixture of differently oriented anisotropic PSFs, which no single
    Gaussian of the reference matches, and they dominate the variance.
    """
    from scipy import ndimage

    from scopeflow.testing import render_ground_truth

    truth, out = run
    fused = [_fused(out, t) for t in range(truth.n_timepoints)]
    grid = _grid(out)
    sample = render_ground_truth(truth, *grid)
    specimen = render_ground_truth(truth, *grid, beads=False)
    bead_part = sample - specimen
    near_beads = ndimage.binary_dilation(bead_part > 0.02 * bead_part.max(), iterations=3)
    inside = (specimen > 0.05 * specimen.max()) & ~near_beads
    for vol in fused:
        covered = vol > 0
        assert covered.mean() > 0.8
        m = covered & inside
        assert m.sum() > 10_000
        assert np.corrcoef(vol[m], specimen[m])[0, 1] >= 0.95
        assert np.corrcoef(vol[covered], sample[covered])[0, 1] >= 0.92


def test_czi_input_and_a_resumed_run(tmp_path: Path) -> None:
    """Views as scenes of one CZI per time point; a second run over the same folder resumes."""
    data = tmp_path / "czi"
    make_spim_dataset(data, views=2, timepoints=1, shape=(32, 96, 96), seed=2)
    out = tmp_path / "run"
    args = ["run", "spim", "-c", data / "config_czi.yaml", "-w", out, "--no-progress"]
    result = run_cli(args)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "succeeded"
    assert summary["steps"]["register_views"]["done"] == 1
    again = run_cli(args)
    assert again.returncode == 0, again.stderr
    events = read_events(out / "events.jsonl")
    assert {e["state"] for e in events if e["run"] == 2} == {"skipped"}


def test_bad_config_is_refused_with_the_field(tmp_path: Path) -> None:
    data = tmp_path / "spim"
    make_spim_dataset(data, views=2, timepoints=1, shape=(16, 32, 32), seed=1, write_czi=False)
    cfg = (data / "config.yaml").read_text()
    cfg = cfg.replace("reference_timepoint: 0", "reference_timepoint: 5")
    (data / "bad.yaml").write_text(cfg + "deconvolution: {psf_size_x: 18}\n")
    result = run_cli(["run", "spim", "-c", data / "bad.yaml", "-w", tmp_path / "r"])
    assert result.returncode == 2
    assert "deconvolution" in result.stderr and "must be odd" in result.stderr
    (data / "bad.yaml").write_text(cfg)
    result = run_cli(["run", "spim", "-c", data / "bad.yaml", "-w", tmp_path / "r"])
    assert result.returncode == 2
    assert "reference_timepoint" in result.stderr


def test_deconvolution_narrows_the_beads_of_the_fusion(
    run: tuple[SpimTruth, Path], tmp_path: Path
) -> None:
    """fusion_switch: deconvolution on the same data: beads at least 30 % narrower (FWHM)."""
    truth, fused_run = run
    cfg = (truth.root / "config.yaml").read_text()
    (truth.root / "deconv.yaml").write_text(
        cfg.replace("ntimepoints: 2", "ntimepoints: 1")
        + "fusion_switch: deconvolution\ndeconvolution: {iterations: 10}\n"
    )
    out = tmp_path / "deconv"
    result = run_cli(["run", "spim", "-c", truth.root / "deconv.yaml", "-w", out, "--no-progress"])
    assert result.returncode == 0, result.stdout + result.stderr
    deconvolved = _fused(out)
    assert np.isfinite(deconvolved).all() and deconvolved.min() >= 0
    before_w, after_w = _bead_widths(truth, [fused_run, out])
    assert len(before_w) > 50
    before, after = np.median(before_w), np.median(after_w)
    assert after <= 0.7 * before, (before, after)

    # the same with the PSF given as a file (the views' Gaussian PSF, in view pixels)
    import tifffile
    from scipy import ndimage

    psf = np.zeros((25, 19, 19))
    psf[12, 9, 9] = 1.0
    sigma_px = [s / v for s, v in zip(truth.psf_sigma, truth.voxel_size, strict=True)]
    tifffile.imwrite(truth.root / "psf.tif", ndimage.gaussian_filter(psf, sigma_px[::-1]))
    (truth.root / "deconv_file.yaml").write_text(
        (truth.root / "deconv.yaml")
        .read_text()
        .replace(
            "deconvolution: {iterations: 10}", "deconvolution: {iterations: 10, psf_file: psf.tif}"
        )
    )
    out2 = tmp_path / "deconv_file"
    args = ["run", "spim", "-c", truth.root / "deconv_file.yaml", "-w", out2, "--no-progress"]
    result = run_cli(args)
    assert result.returncode == 0, result.stdout + result.stderr
    _, file_w = _bead_widths(truth, [fused_run, out2])
    assert np.median(file_w) <= 0.7 * before


def test_killed_run_resumes_at_the_unfinished_time_points(tmp_path: Path) -> None:
    """SIGKILL the driver once some time points are registered; a rerun does only the rest."""
    import signal
    import subprocess
    import time

    import psutil

    from tests.conftest import cli_env, scopeflow_cmd

    data = tmp_path / "spim"
    make_spim_dataset(data, views=2, timepoints=4, shape=(24, 64, 64), seed=3, write_czi=False)
    run_dir = tmp_path / "run"
    args = ["run", "spim", "-c", data / "config.yaml", "-w", run_dir, "-n", "1", "--no-progress"]
    proc = subprocess.Popen(
        scopeflow_cmd(*args), env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    events_path = run_dir / "events.jsonl"

    def registered() -> int:
        if not events_path.exists():
            return 0
        return sum(
            1
            for e in read_events(events_path)
            if e["state"] == "done" and e["step"] == "register_views"
        )

    deadline = time.monotonic() + 240
    while registered() < 2:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no time point registered in time"
        time.sleep(0.05)
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    psutil.wait_procs(children, timeout=30)
    first = read_events(events_path)
    done_before = {(e["step"], e["unit"]) for e in first if e["state"] == "done"}
    assert ("write_output", "all") not in done_before

    result = run_cli(args, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    second = [e for e in read_events(events_path) if e["run"] == 2]
    ran = {(e["step"], e["unit"]) for e in second if e["state"] == "running"}
    skipped = {(e["step"], e["unit"]) for e in second if e["state"] == "skipped"}
    assert done_before <= skipped and ran.isdisjoint(skipped)
    assert {("register_views", "t0000"), ("register_views", "t0001")} <= skipped
    assert ("write_output", "all") in ran
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "succeeded" and summary["run"] == 2
