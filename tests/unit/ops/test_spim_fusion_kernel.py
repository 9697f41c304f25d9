"""Fusion's compiled sampling against SciPy: values, cosine weights, content weights, threads."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from scopeflow.core import affine as _affine
from scopeflow.ops.spim.fusion import (
    FusionGrid,
    content_weights,
    fuse,
    fuse_block,
    grid_blocks,
    resample_to_grid,
)

VIEW_SHAPE = (18, 26, 30)


def _view(dtype: type, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = ndimage.gaussian_filter(rng.uniform(0, 250, VIEW_SHAPE), 1.0) * 4 - 300
    return np.clip(vol, 0, 250).astype(dtype)


def _tilted() -> np.ndarray:
    """View → world: z spacing 1.5, turned about y and z, shifted."""
    c, s = np.cos(np.radians(10.0)), np.sin(np.radians(10.0))
    turn_z = np.array([[c, -s, 0.0, 0.0], [s, c, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    return _affine.compose(
        _affine.translation((2.0, -1.5, 0.7)),
        turn_z,
        _affine.rotation_y(25.0),
        _affine.scaling((1.0, 1.0, 1.5)),
    )


def _ramp(c: np.ndarray, n: int, border: float, blending_range: float) -> np.ndarray:
    dist = np.minimum(c, n - 1 - c) - border
    t = np.clip(dist / blending_range, 0.0, 1.0) if blending_range > 0 else np.ones_like(c)
    w = 0.5 - 0.5 * np.cos(np.pi * t) if blending_range > 0 else t
    return np.where(dist < 0, 0.0, w)


def _reference(
    vol: np.ndarray, a: np.ndarray, grid: FusionGrid, border: float, blending_range: float
) -> tuple[np.ndarray, np.ndarray]:
    """Linear samples (ndimage, float64) and cosine weights on the whole grid."""
    m = _affine.compose(_affine.invert(a), grid.index_to_world())
    mat, off = m[::-1, :3][:, ::-1], m[:, 3][::-1]
    idx = np.indices(grid.shape).reshape(3, -1).astype(np.float64)
    c = mat @ idx + off[:, None]
    values = ndimage.map_coordinates(
        vol.astype(np.float64), c, order=1, mode="nearest", prefilter=False
    )
    w = np.ones(c.shape[1])
    for d in range(3):
        w *= _ramp(c[d], vol.shape[d], border, blending_range)
    return values.reshape(grid.shape), w.reshape(grid.shape)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_resampling_matches_scipy_for_every_dtype(dtype: type) -> None:
    vol = _view(dtype)
    a = _tilted()
    grid = FusionGrid.from_bounds((-6.0, -6.0, -4.0), (34.0, 30.0, 30.0), spacing=1.3)
    values, weights = resample_to_grid(vol, a, grid, border=1.0, blending_range=4.0, block=7)
    ref_v, ref_w = _reference(vol, a, grid, 1.0, 4.0)
    ramp = (ref_w > 0) & (ref_w < 1)
    assert (ref_w == 1).mean() > 0.03 and ramp.mean() > 0.1 and (ref_w == 0).mean() > 0.3
    np.testing.assert_allclose(weights, ref_w, atol=2e-6)
    seen = weights > 0
    np.testing.assert_allclose(values[seen], ref_v[seen], rtol=1e-5, atol=1e-3)
    assert (values[~seen] == 0).all()


def test_a_hard_edge_keeps_the_last_pixel_and_the_range_zero_case() -> None:
    vol = _view(np.float32)
    ident = np.hstack([np.eye(3), np.zeros((3, 1))])
    grid = FusionGrid.from_bounds((-2.0, -2.0, -2.0), (31.0, 27.0, 19.0))
    values, weights = resample_to_grid(vol, ident, grid, blending_range=0.0)
    inside = (slice(2, 2 + VIEW_SHAPE[0]), slice(2, 2 + VIEW_SHAPE[1]), slice(2, 2 + VIEW_SHAPE[2]))
    assert (weights[inside] == 1).all() and weights.sum() == vol.size
    np.testing.assert_array_equal(values[inside], vol)


def test_fusion_with_content_weights_matches_scipy() -> None:
    views = [_view(np.uint16, 1), _view(np.uint16, 2)]
    views[1] = ndimage.gaussian_filter(views[1], 1.5).astype(np.uint16)
    affines = [_tilted(), np.hstack([np.eye(3), np.zeros((3, 1))])]
    grid = FusionGrid.from_bounds((0.0, 0.0, 0.0), (28.0, 24.0, 16.0))
    factor = (1, 2)
    content = [content_weights(v, sigma1=2, sigma2=4, downsample=2) for v in views]
    fused = fuse_block(
        views,
        affines,
        grid,
        next(grid_blocks(grid.shape, 64)),
        blending_range=5.0,
        content=content,
        content_factor=factor,
    )
    total = np.zeros(grid.shape)
    wsum = np.zeros(grid.shape)
    for vol, a, cw in zip(views, affines, content, strict=True):
        values, w = _reference(vol, a, grid, 0.0, 5.0)
        m = _affine.compose(_affine.invert(a), grid.index_to_world())
        mat, off = m[::-1, :3][:, ::-1], m[:, 3][::-1]
        scale = np.array([factor[0], factor[1], factor[1]], float)
        w = w * ndimage.affine_transform(
            cw.astype(np.float64),
            mat / scale[:, None],
            offset=(off + 0.5) / scale - 0.5,
            output_shape=grid.shape,
            order=1,
            mode="nearest",
            prefilter=False,
        )
        total += w * values
        wsum += w
    ref = np.divide(total, wsum, out=np.zeros_like(total), where=wsum > 0)
    assert (wsum > 0).mean() > 0.5
    np.testing.assert_allclose(fused, ref, rtol=1e-4, atol=1e-3 * ref.max())


def test_threads_and_block_sizes_change_nothing() -> None:
    views = [_view(np.uint16, 3), _view(np.uint16, 4)]
    affines = [_tilted(), np.hstack([np.eye(3), np.zeros((3, 1))])]
    grid = FusionGrid.from_bounds((-3.0, -3.0, -3.0), (30.0, 26.0, 18.0))
    one = fuse(views, affines, grid, blending_range=4.0, block=9)
    two = fuse(views, affines, grid, blending_range=4.0, block=9, threads=2)
    np.testing.assert_array_equal(one, two)
    big = fuse(views, affines, grid, blending_range=4.0, block=64)
    np.testing.assert_array_equal(one, big)
    outside = FusionGrid.from_bounds((100.0, 100.0, 100.0), (110.0, 110.0, 110.0))
    assert (fuse(views, affines, outside) == 0).all()
