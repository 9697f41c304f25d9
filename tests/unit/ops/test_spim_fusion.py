"""Weighted-average fusion: identity, rotated views, blending, content weights, blocks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from scopeflow.core import affine as _affine
from scopeflow.core.errors import ConfigError
from scopeflow.ops.spim.fusion import (
    FusionGrid,
    content_weights,
    fuse,
    resample_to_grid,
    view_bounds,
)


def _specimen(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = np.zeros(shape)
    idx = tuple(rng.integers(4, s - 4, 60) for s in shape)
    vol[idx] = 1000.0
    return ndimage.gaussian_filter(vol, 1.5) + 10.0


def test_one_view_with_the_identity_is_returned_unchanged() -> None:
    vol = _specimen((20, 30, 40))
    grid = FusionGrid.from_bounds((0, 0, 0), (39, 29, 19))
    out = fuse([vol], [np.hstack([np.eye(3), np.zeros((3, 1))])], grid, blending_range=0.0)
    np.testing.assert_allclose(out, vol, rtol=1e-5)
    blocks = fuse(
        [vol], [np.hstack([np.eye(3), np.zeros((3, 1))])], grid, blending_range=0, block=7
    )
    np.testing.assert_array_equal(blocks, out)  # the block size changes nothing


def test_views_rotated_about_y_fuse_back_to_the_specimen() -> None:
    shape = (40, 40, 40)
    world = _specimen(shape, 1)
    centre = np.array([19.5, 19.5, 19.5])
    views, affines = [], []
    for angle in (0, 90, 180, 270):
        a = _affine.about_point(_affine.rotation_y(angle), centre)  # view -> world
        # the view's pixel p shows the world at a(p)
        zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
        w = _affine.apply(a, np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1))
        view = ndimage.map_coordinates(world, w[:, ::-1].T, order=1, mode="nearest").reshape(shape)
        views.append(view)
        affines.append(a)
    grid = FusionGrid.from_bounds((5, 5, 5), (34, 34, 34))
    fused = fuse(views, affines, grid, blending_range=5.0)
    truth = world[5:35, 5:35, 5:35]
    ncc = np.corrcoef(fused.ravel(), truth.ravel())[0, 1]
    assert ncc > 0.97, ncc
    lo, hi = view_bounds(shape, affines[1])
    np.testing.assert_allclose(lo, 0.0, atol=1e-9)
    np.testing.assert_allclose(hi, 39.0, atol=1e-9)


def test_cosine_blending_ramps_from_the_border() -> None:
    vol = np.full((101, 101, 100), 7.0, dtype=np.float32)
    ident = np.hstack([np.eye(3), np.zeros((3, 1))])
    grid = FusionGrid.from_bounds((-2, 50, 50), (101, 50, 50))  # a line along x, beyond both ends
    values, weights = resample_to_grid(vol, ident, grid, border=5.0, blending_range=20.0)
    w = weights[0, 0, 2:-2].astype(np.float64)  # x = 0 … 99
    assert (w[:6] == 0).all()
    assert 0 < w[10] < 0.5 < w[20] < 1.0 and w[25] == pytest.approx(1.0)
    np.testing.assert_allclose(w, w[::-1], atol=1e-6)  # symmetric about the centre
    assert weights[0, 0, 0] == 0 and weights[0, 0, -1] == 0  # outside the view
    assert values[0, 0, 0] == 0 and (values[0, 0, 2:-2][w > 0] == 7.0).all()


def test_content_weights_prefer_the_sharp_view() -> None:
    sharp = _specimen((32, 64, 64), 2)
    blurred = ndimage.gaussian_filter(sharp, 3.0)
    ws = content_weights(sharp, sigma1=4, sigma2=8, downsample=2)
    wb = content_weights(blurred, sigma1=4, sigma2=8, downsample=2)
    assert ws.shape == (16, 32, 32)
    assert ws.min() >= 1e-3 * ws.max() * (1 - 1e-6)
    assert ws.max() > 3 * wb.max()  # the sharp view has more high-frequency content
    ident = np.hstack([np.eye(3), np.zeros((3, 1))])
    grid = FusionGrid.from_bounds((0, 0, 0), (63, 63, 31))
    fused = fuse(
        [sharp, blurred],
        [ident, ident],
        grid,
        content_based=True,
        sigma1=4,
        sigma2=8,
        content_downsample=2,
        blending_range=0,
    )
    plain = fuse([sharp, blurred], [ident, ident], grid, blending_range=0)
    err_content = np.abs(fused - sharp).mean()
    err_plain = np.abs(plain - sharp).mean()
    assert err_content < 0.8 * err_plain, (err_content, err_plain)


def test_uint16_output_and_bad_arguments() -> None:
    vol = _specimen((10, 10, 10)) * 1e4
    ident = np.hstack([np.eye(3), np.zeros((3, 1))])
    grid = FusionGrid.from_bounds((0, 0, 0), (9, 9, 9))
    out = fuse([vol], [ident], grid, dtype="uint16", blending_range=0)
    assert out.dtype == np.uint16 and out.max() == 65535  # clipped, not wrapped
    with pytest.raises(ConfigError, match="pixel_type"):
        fuse([vol], [ident], grid, dtype="int8")
    with pytest.raises(ConfigError, match="bounding_box"):
        FusionGrid.from_bounds((0, 0, 0), (-1, 5, 5))


def test_psf_from_a_view_frame_turns_with_the_view() -> None:
    from scopeflow.ops.spim.fusion import psf_to_grid

    psf = np.zeros((21, 21, 21))
    psf[10, 10, 10] = 1.0
    psf = ndimage.gaussian_filter(psf, (3.0, 1.0, 1.0))  # long along the view's z
    ident = np.hstack([np.eye(3), np.zeros((3, 1))])
    turned = _affine.rotation_y(90.0)  # view z becomes world x
    same = psf_to_grid(psf, ident, 1.0, (15, 15, 15))
    rot = psf_to_grid(psf, turned, 1.0, (15, 15, 15))
    assert abs(float(same.sum()) - 1.0) < 1e-5 and abs(float(rot.sum()) - 1.0) < 1e-5

    def spread(k: np.ndarray, axis: int) -> float:
        c = np.arange(k.shape[axis]) - k.shape[axis] // 2
        prof = k.sum(axis=tuple(a for a in range(3) if a != axis))
        return float(np.sqrt((prof * c**2).sum()))

    assert spread(same, 0) == pytest.approx(3.0, rel=0.1)  # z in the grid
    assert spread(rot, 2) == pytest.approx(3.0, rel=0.1)  # now along x
    assert spread(rot, 0) == pytest.approx(1.0, rel=0.2)
    with pytest.raises(ConfigError, match="psf_file"):
        psf_to_grid(np.zeros((3, 3)), ident, 1.0)
