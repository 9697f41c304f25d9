"""Registration accuracy on a synthetic multiview dataset with known view transforms.

The bar of issue 5: for true beads visible in two views, their true view coordinates mapped
through the two estimated view -> world models must agree to <= 0.1 px on average (goal 0.03),
<= 0.5 px at most, starting from nominal transforms that are off by several pixels.

Without the bead-centre correction of :mod:`scopeflow.ops.spim.bead_bias` the views' depth
attenuation biases every bead (~0.07 px measured); with it the goal is met.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from scopeflow.core import affine as _affine
from scopeflow.ops.spim.bead_bias import intensity_gradient_shift
from scopeflow.ops.spim.beads import detect_beads
from scopeflow.ops.spim.models import apply_model, fit_model
from scopeflow.ops.spim.ransac import RansacResult
from scopeflow.ops.spim.register import MatchOptions, _trim, register_points
from scopeflow.testing import SpimTruth, make_spim_dataset, registration_errors


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> SpimTruth:
    return make_spim_dataset(tmp_path_factory.mktemp("spim"), views=4, timepoints=1, seed=11)


@pytest.fixture(scope="module")
def detected(dataset: SpimTruth) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each view's beads (view pixels) and their intensity-gradient shift, detected once."""
    out = []
    for v in range(dataset.n_views):
        vol = tifffile.imread(dataset.path("tiff", 0, v))
        xyz = detect_beads(vol, anisotropy=dataset.voxel_size[2] / dataset.voxel_size[0]).xyz
        out.append((xyz, intensity_gradient_shift(vol, xyz).shift))
    return out


@pytest.mark.parametrize(
    ("descriptor", "corrected", "bar"),
    [
        ("rotation_invariant", False, 0.1),
        ("translation_invariant", False, 0.1),
        ("rotation_invariant", True, 0.03),
    ],
)
def test_views_register_to_sub_pixel_accuracy(
    dataset: SpimTruth,
    detected: list[tuple[np.ndarray, np.ndarray]],
    descriptor: str,
    corrected: bool,
    bar: float,
) -> None:
    truth = dataset
    nominal_error = registration_errors(truth, list(truth.nominal_affines))
    assert nominal_error.mean() > 2.0  # the starting point is off by pixels
    points = [
        apply_model(truth.nominal_affines[v], xyz - shift if corrected else xyz)
        for v, (xyz, shift) in enumerate(detected)
    ]
    reg = register_points(points, MatchOptions(descriptor=descriptor, model="affine"))
    assert not reg.fit.unlinked
    estimated = [_affine.compose(reg.models[v], truth.nominal_affines[v]) for v in range(4)]
    err = registration_errors(truth, estimated)
    assert err.mean() <= bar, (err.mean(), err.max(), nominal_error.mean())
    assert err.max() <= 0.5, (err.mean(), err.max())


def test_the_residual_trim_keeps_at_least_the_inliers_ransac_needs() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 100, (12, 3))
    q = p + np.array([2.0, -1.0, 0.5])
    q[:6] += rng.normal(0, 0.01, (6, 3))  # six matches near-exact, six 0.5 px off
    q[6:, 0] += 0.5
    inliers = np.ones(12, bool)
    start = RansacResult(fit_model("affine", p, q), inliers, 0.0)
    loose = _trim(p, q, start, model="affine", regularize=0.0, factor=1.5)
    assert loose.inliers.sum() < 12  # without a floor the trim goes below min_inliers
    kept = _trim(p, q, start, model="affine", regularize=0.0, factor=1.5, least=12)
    assert kept.inliers.sum() == 12  # at least min_inliers stay
    few = _trim(
        p[:5],
        q[:5],
        RansacResult(start.model, inliers[:5], 0.0),
        model="affine",
        regularize=0.0,
        factor=0.1,
    )
    assert few.inliers.sum() >= 4  # never below the points an affine fit needs
