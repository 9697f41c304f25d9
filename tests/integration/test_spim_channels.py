"""The spim pipeline on several channels and illuminations (beads in one channel only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scopeflow.core.errors import ConfigError
from scopeflow.io import open_image, read_spimdata
from scopeflow.testing import SpimTruth, make_spim_dataset, registration_errors
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[SpimTruth, Path]:
    data = tmp_path_factory.mktemp("spim-channels")
    truth = make_spim_dataset(
        data, views=4, timepoints=1, channels=2, illuminations=2, seed=8, write_czi=False
    )
    out = data / "run"
    result = run_cli(["run", "spim", "-c", data / "config.yaml", "-w", out, "--no-progress"])
    assert result.returncode == 0, result.stdout + result.stderr
    return truth, out


def test_every_view_gets_its_angle_registration(run: tuple[SpimTruth, Path]) -> None:
    """Registered on the beads channel; the other channel and illumination share the model."""
    truth, out = run
    sd = read_spimdata(out / "outputs" / "registered.xml")
    assert len(sd.setups) == 4 * 2 * 2
    for setup in sd.setups:
        angle = sd.attribute(setup, "angle")
        assert angle is not None and float(angle.name or "nan") in truth.angles
    for c in range(2):
        for i in range(2):
            setups = [(v * 2 + c) * 2 + i for v in range(truth.n_views)]
            assert [sd.attribute(s, "channel").name for s in setups] == [  # type: ignore[union-attr]
                truth.channels[c]
            ] * truth.n_views
            e = registration_errors(truth, [sd.view_model(0, s) for s in setups], 0)
            assert e.mean() <= 0.03 and e.max() <= 0.1, (c, i, e.mean(), e.max())


def test_each_channel_is_fused_and_matches_its_sample(run: tuple[SpimTruth, Path]) -> None:
    """The beadless channel (both illuminations fused) correlates with the noise-free specimen."""
    from scipy import ndimage

    from scopeflow.testing import render_ground_truth

    truth, out = run
    summary = json.loads((out / "summary.json").read_text())
    rec = json.loads((out / "state" / "prepare_output" / "all.json").read_text())["result"]
    grid = (
        tuple(rec["grid"]["origin"]),
        float(rec["grid"]["spacing"]),
        tuple(rec["grid"]["shape"]),
    )
    with open_image(out / summary["outputs"]["output_xml"], "bdv") as bdv:
        assert bdv.series_count == 2
        fused = [np.asarray(bdv.to_dask(c).compute(), dtype=float) for c in range(2)]
    with open_image(out / summary["outputs"]["output_zarr"]) as zr:
        meta = zr.metadata(0)
        assert meta.channel_names == truth.channels
        stack = np.asarray(zr.to_dask(0).compute())
    assert stack.shape[:2] == (1, 2)
    for c in range(2):
        np.testing.assert_array_equal(stack[0, c], fused[c])
    sample = render_ground_truth(truth, *grid)
    specimen = render_ground_truth(truth, *grid, beads=False)
    near_beads = ndimage.binary_dilation(sample - specimen > 0.02 * sample.max(), iterations=3)
    inside = (specimen > 0.05 * specimen.max()) & ~near_beads & (fused[1] > 0)
    assert inside.sum() > 10_000
    assert np.corrcoef(fused[1][inside], specimen[inside])[0, 1] >= 0.95
    # the beads are in channel 0 only
    beads = (sample - specimen > 0.2 * (sample - specimen).max()) & (fused[0] > 0)
    base = truth.camera_offset + truth.background
    assert fused[0][beads].mean() - base > 10 * max(fused[1][beads].mean() - base, 1.0)
    png = sorted((out / summary["outputs"]["previews"]).glob("*.png"))
    assert len(png) == 1


def test_the_synthetic_illuminations_are_one_sided(run: tuple[SpimTruth, Path]) -> None:
    """Each illumination is brighter on the side its light sheet enters (x low / high)."""
    truth, _ = run
    halves = []
    for i in range(2):
        with open_image(truth.path("tiff", 0, 0, 1, i), "tiff") as r:
            vol = np.asarray(r.to_dask(0).compute(), dtype=float).squeeze()
        vol -= truth.camera_offset + truth.background
        mid = vol.shape[2] // 2
        halves.append((vol[..., :mid].mean(), vol[..., mid:].mean()))
    (left0, right0), (left1, right1) = halves
    assert left0 > 1.1 * left1 and right1 > 1.1 * right0, halves


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        ({"input": {"format": "tiff", "pattern": "tiff/t{t:03d}_v{v:02d}_i{i}.tif"}}, "{c}"),
        ({"input": {"format": "tiff", "pattern": "tiff/t{t:03d}_v{v:02d}_c{c}.tif"}}, "{i}"),
        ({"detection": {"channel": "gfp"}}, "detection.channel"),
        ({"channels": ["beads", "beads"]}, "repeated"),
        ({"input": {"format": "tiff", "pattern": "t{t}_v{v}_c{c}_i{i}_{x}.tif"}}, "unknown"),
    ],
)
def test_channel_config_mistakes_name_the_field(edit: dict[str, object], field: str) -> None:
    from scopeflow.pipelines.spim import SpimConfig

    base: dict[str, object] = {
        "input": {"format": "tiff", "pattern": "tiff/t{t:03d}_v{v:02d}_c{c}_i{i}.tif"},
        "ntimepoints": 1,
        "angles": [0, 90],
        "channels": ["beads", "nuclei"],
        "illuminations": [0, 1],
        "voxel_size": {"x": 1, "y": 1, "z": 2},
    }
    with pytest.raises((ConfigError, ValueError), match=field.replace("{", r"\{")):
        SpimConfig.model_validate({**base, **edit})


def test_czi_channels_read_like_the_tiffs(tmp_path: Path) -> None:
    """Channel ``c`` of scene ``v`` of the CZI is the TIFF of view ``v``, channel ``c``."""
    from scopeflow.steps.spim import SpimInput, ViewKey, read_views

    truth = make_spim_dataset(tmp_path, views=2, timepoints=1, channels=2, shape=(16, 32, 48))
    keys = [
        ViewKey(setup=2 * v + c, angle=v, channel=c, illumination=0) for v in (0, 1) for c in (0, 1)
    ]
    czi = read_views(SpimInput(format="czi", pattern="czi/t{t:03d}.czi"), tmp_path, 0, keys)
    tif = read_views(
        SpimInput(format="tiff", pattern=truth.files["tiff_pattern"]), tmp_path, 0, keys
    )
    for a, b in zip(czi, tif, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(czi[0], czi[1])  # the channels differ
    with pytest.raises(Exception, match="channel 2"):
        read_views(
            SpimInput(format="czi", pattern="czi/t{t:03d}.czi"),
            tmp_path,
            0,
            [ViewKey(0, 0, 2, 0)],
        )


def test_deconvolution_uses_the_bead_channel_psf_for_every_channel(
    run: tuple[SpimTruth, Path], tmp_path: Path
) -> None:
    """Deconvolving the beadless channel with the PSFs of the beads channel keeps it faithful."""
    from scopeflow.testing import render_ground_truth

    truth, _ = run
    cfg = (truth.root / "config.yaml").read_text()
    (truth.root / "deconv.yaml").write_text(
        cfg + "fusion_switch: deconvolution\ndeconvolution: {iterations: 3}\n"
    )
    out = tmp_path / "deconv"
    result = run_cli(["run", "spim", "-c", truth.root / "deconv.yaml", "-w", out, "--no-progress"])
    assert result.returncode == 0, result.stdout + result.stderr
    with open_image(out / "outputs" / "fused.xml", "bdv") as bdv:
        vols = [np.asarray(bdv.to_dask(c).compute(), dtype=float) for c in range(2)]
    rec = json.loads((out / "state" / "prepare_output" / "all.json").read_text())["result"]
    g = rec["grid"]
    specimen = render_ground_truth(
        truth, tuple(g["origin"]), g["spacing"], tuple(g["shape"]), beads=False
    )
    inside = (specimen > 0.05 * specimen.max()) & (vols[1] > 0)
    assert all(np.isfinite(v).all() and v.min() >= 0 for v in vols)
    assert np.corrcoef(vols[1][inside], specimen[inside])[0, 1] >= 0.9
