"""Pyramid proposal (as bigdataviewer-core's ProposeMipmaps) and block-mean downsampling.

Expected values are worked out by hand from ``bdv.export.ProposeMipmaps.proposeMipmaps``:
normalise the voxel size to min 1; per level, block 32x32x4 (thin along the coarsest axis) when
``4 v / 32 > 1 / v`` for the coarsest relative size ``v``, else 16x16x16; stop once
``max(size // res) <= 256``; else double ``res`` (and the voxel size) of every axis whose
relative voxel size is <= 2, and renormalise.
"""

from __future__ import annotations

import numpy as np
import pytest

from scopeflow.io._pyramid import (
    Pyramid,
    block_mean,
    block_shape,
    level_size,
    plan_passes,
    propose_mipmaps,
    single_level,
)

ISO = (16, 16, 16)


@pytest.mark.parametrize(
    ("size", "voxel", "resolutions", "subdivisions"),
    [
        # isotropic 512^3: one halving reaches 256
        ((512, 512, 512), (1.0, 1.0, 1.0), [(1, 1, 1), (2, 2, 2)], [ISO, ISO]),
        # z 3x coarser: scale (1, 1, 3) -> thin blocks; z is not halved at first
        #   L0 v=3 (0.375 > 0.333) 32x32x4; halve x,y -> scale (2,2,3)/2 = (1,1,1.5)
        #   L1 16^3, size (512,512,200): halve all -> (4,4,2); L2 size (256,256,100) stop
        (
            (1024, 1024, 200),
            (0.4, 0.4, 1.2),
            [(1, 1, 1), (2, 2, 1), (4, 4, 2)],
            [(32, 32, 4), ISO, ISO],
        ),
        # z 5x coarser: scale (1,1,5) -> (1,1,2.5) -> (1,1,1.25): z halved only from L2 on
        (
            (2048, 2048, 100),
            (0.2, 0.2, 1.0),
            [(1, 1, 1), (2, 2, 1), (4, 4, 1), (8, 8, 2)],
            [(32, 32, 4), ISO, ISO, ISO],
        ),
        # x coarsest: thin side along x (Java's subdiv_32_32_4[0] = {4, 32, 32})
        (
            (300, 1000, 1000),
            (3.0, 1.0, 1.0),
            [(1, 1, 1), (1, 2, 2), (2, 4, 4)],
            [(4, 32, 32), ISO, ISO],
        ),
        # already small: a single level
        ((100, 80, 60), (1.0, 1.0, 1.0), [(1, 1, 1)], [ISO]),
        # 2x anisotropy is not thin (4*2/32 = 0.25 < 0.5) and halves z at once (2 <= 2)
        ((600, 600, 300), (1.0, 1.0, 2.0), [(1, 1, 1), (2, 2, 2), (4, 4, 4)], [ISO, ISO, ISO]),
    ],
)
def test_propose_mipmaps_matches_bigdataviewer(
    size: tuple[int, int, int],
    voxel: tuple[float, float, float],
    resolutions: list[tuple[int, int, int]],
    subdivisions: list[tuple[int, int, int]],
) -> None:
    pyr = propose_mipmaps(size, voxel)
    assert list(pyr.resolutions) == resolutions
    assert list(pyr.subdivisions) == subdivisions
    assert all(np.prod(s) == 4096 for s in pyr.subdivisions)
    assert max(pyr.level_shape_xyz(size, pyr.levels - 1)) <= 256


def test_voxel_size_scale_does_not_matter() -> None:
    assert propose_mipmaps((900, 700, 90), (0.1, 0.1, 0.5)) == propose_mipmaps(
        (900, 700, 90), (1, 1, 5)
    )


def test_level_shapes_and_chunks() -> None:
    pyr = Pyramid(((1, 1, 1), (2, 2, 1), (8, 8, 4)), ((32, 32, 4), ISO, ISO))
    size = (100, 50, 3)
    assert pyr.level_shape_xyz(size, 1) == (50, 25, 3)
    assert pyr.level_shape_xyz(size, 2) == (12, 6, 1)  # z: 3 // 4 = 0 -> border-extended to 1
    assert pyr.chunks_zyx(size, 0) == (3, 32, 32)  # z chunk clipped to the image
    assert pyr.chunks_zyx(size, 2) == (1, 6, 12)
    assert level_size((7, 7, 7), (2, 3, 8)) == (3, 2, 1)


def test_pyramid_validation() -> None:
    with pytest.raises(ValueError, match="level 0"):
        Pyramid(((2, 2, 2),), (ISO,))
    with pytest.raises(ValueError, match="one resolution"):
        Pyramid(((1, 1, 1), (2, 2, 2)), (ISO,))
    with pytest.raises(ValueError, match="integers"):
        Pyramid.from_arrays([[1, 1, 1], [1.5, 2, 2]], [ISO, ISO])
    assert Pyramid.from_arrays(np.array([[1.0, 1, 1]], np.float32), np.array([ISO])).levels == 1
    assert single_level((1000, 1000, 100), (1, 1, 4)).subdivisions == ((32, 32, 4),)


def _reference_mean(a: np.ndarray, f: tuple[int, int, int]) -> np.ndarray:
    a = np.pad(a, [(0, max(ff - n, 0)) for n, ff in zip(a.shape, f, strict=True)], mode="edge")
    nz, ny, nx = (n // ff for n, ff in zip(a.shape, f, strict=True))
    view = a[: nz * f[0], : ny * f[1], : nx * f[2]].reshape(nz, f[0], ny, f[1], nx, f[2])
    return view.astype(np.float64).mean(axis=(1, 3, 5))


@pytest.mark.parametrize("factor", [(2, 2, 2), (1, 2, 2), (3, 2, 5), (4, 1, 1), (8, 8, 8)])
@pytest.mark.parametrize("dtype", [np.uint16, np.uint8, np.float32, np.int16])
def test_block_mean(factor: tuple[int, int, int], dtype: type) -> None:
    rng = np.random.default_rng(3)
    a = (rng.random((13, 10, 17)) * 1000 - (500 if dtype == np.int16 else 0)).astype(dtype)
    np.testing.assert_allclose(block_mean(a, factor), _reference_mean(a, factor), rtol=1e-12)


def test_block_mean_of_constant_block_is_exact_and_crops() -> None:
    a = np.full((4, 4, 4), 65535, np.uint16)
    out = block_mean(a, (4, 4, 4))
    assert out.dtype == np.float64 and out.tolist() == [[[65535.0]]]
    assert block_mean(np.ones((8, 8, 8)), (2, 2, 2), (3, 2, 1)).shape == (3, 2, 1)


def test_plan_passes_groups_levels_into_aligned_blocks() -> None:
    pyr = Pyramid(((1, 1, 1), (2, 2, 1), (4, 4, 2)), ((32, 32, 4), ISO, ISO))
    size = (1000, 800, 90)
    (only,) = plan_passes(pyr, size, 2)
    assert only.src == 0 and only.levels == (0, 1, 2)
    assert only.factors == ((1, 1, 1), (1, 2, 2), (2, 4, 4))
    assert only.shapes == ((90, 800, 1000), (90, 400, 500), (45, 200, 250))
    assert only.unit == (32, 64, 64)  # lcm over levels of factor x chunk, (z, y, x)
    # with a tiny budget every level is its own pass, read back from the level before
    passes = plan_passes(pyr, size, 2, max_unit_bytes=1, max_slab_bytes=1)
    assert [(p.src, p.levels, p.factors) for p in passes] == [
        (0, (0,), ((1, 1, 1),)),
        (0, (1,), ((1, 2, 2),)),
        (1, (2,), ((2, 2, 2),)),
    ]
    # a level whose factors are no multiple of the previous one is computed from the volume
    odd = Pyramid(((1, 1, 1), (2, 2, 2), (3, 3, 3)), (ISO, ISO, ISO))
    assert [
        (p.src, p.levels) for p in plan_passes(odd, size, 2, max_unit_bytes=1, max_slab_bytes=1)
    ] == [
        (0, (0,)),
        (0, (1,)),
        (0, (2,)),
    ]
    # large planes: a deep unit would hold too many source planes; deeper levels are read back
    deep = propose_mipmaps((4096, 4096, 2000))
    assert deep.resolutions[-1] == (16, 16, 16)
    passes = plan_passes(deep, (4096, 4096, 2000), 2)
    assert [p.levels for p in passes] == [(0, 1), (2, 3, 4)]
    assert passes[1].src == 1 and passes[1].factors == ((2, 2, 2), (4, 4, 4), (8, 8, 8))
    assert passes[0].unit[0] * 4096 * 4096 * 2 <= 2**30
    block = block_shape(only.unit, only.shapes[0], 2, 32 * 2**20)
    assert block[2] == 1024 and all(b % u == 0 for b, u in zip(block, only.unit, strict=True))
