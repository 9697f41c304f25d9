"""Per-channel percentile normalisation: exact mergeable dataset quantiles, per-image mode."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scopeflow.core.errors import ConfigError
from scopeflow.ops.cyto.normalize import (
    QuantileState,
    channel_quantiles,
    finalize_quantiles,
    image_quantiles,
    merge_quantile_states,
    normalize,
    normalize_per_image,
)


def _batch(rng: np.random.Generator, n: int, dtype: type = np.uint16) -> np.ndarray:
    """(n, 3, 20, 24) images with channel-dependent, skewed intensity distributions."""
    scale = np.array([50.0, 500.0, 5000.0])[None, :, None, None]
    vals = rng.gamma(2.0, 1.0, (n, 3, 20, 24)) * scale
    info = np.iinfo(dtype)
    return np.clip(vals, info.min, info.max).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_dataset_quantiles_are_exact_for_small_integers(dtype: type) -> None:
    rng = np.random.default_rng(0)
    images = _batch(rng, 30, dtype)
    if dtype is np.int16:
        images = (images.astype(np.int32) - 200).astype(np.int16)  # negative values too
    q = (0.5, 99.5)
    state = merge_quantile_states(channel_quantiles(b, q) for b in np.array_split(images, 4))
    lo, hi = finalize_quantiles(state)
    per_channel = np.moveaxis(images, 1, 0).reshape(3, -1)
    expected = np.quantile(per_channel, [q[0] / 100, q[1] / 100], axis=1, method="inverted_cdf")
    np.testing.assert_array_equal(lo, expected[0])
    np.testing.assert_array_equal(hi, expected[1])
    assert state.exact
    assert state.n_pixels.tolist() == [images[:, 0].size] * 3


def test_merge_equals_one_pass_and_methods_agree() -> None:
    rng = np.random.default_rng(1)
    images = _batch(rng, 12)
    whole = channel_quantiles(images, (2, 98))
    parts = [channel_quantiles(b, (2, 98)) for b in np.array_split(images, 3)]
    merged = parts[0].merge(parts[1]).merge(parts[2])
    np.testing.assert_array_equal(merged.counts, whole.counts)
    assert merge_quantile_states(reversed(parts)).finalize()[1].tolist() == (
        whole.finalize()[1].tolist()
    )


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    cuts=st.lists(st.integers(1, 9), min_size=0, max_size=4),
    q=st.tuples(st.floats(0, 49), st.floats(51, 100)),
)
def test_any_batching_gives_the_same_state(seed: int, cuts: list[int], q: tuple) -> None:
    images = _batch(np.random.default_rng(seed), 10)
    batches = np.split(images, sorted(set(cuts)))
    merged = merge_quantile_states(channel_quantiles(b, q) for b in batches if len(b))
    whole = channel_quantiles(images, q)
    np.testing.assert_array_equal(merged.counts, whole.counts)
    lo, hi = merged.finalize()
    assert np.all(lo <= hi)


def test_float_images_need_a_range_and_are_within_one_bin() -> None:
    rng = np.random.default_rng(2)
    images = rng.normal(0.3, 0.1, (8, 2, 32, 32)).astype(np.float32)
    with pytest.raises(ConfigError, match="value_range"):
        channel_quantiles(images)
    state = channel_quantiles(images, (1, 99), value_range=(-1.0, 2.0), bins=4096)
    assert not state.exact
    lo, hi = finalize_quantiles(state)
    per_channel = np.moveaxis(images, 1, 0).reshape(2, -1)
    width = 3.0 / 4095
    for got, p in ((lo, 0.01), (hi, 0.99)):
        ref = np.quantile(per_channel, p, axis=1, method="inverted_cdf")
        np.testing.assert_allclose(got, ref, atol=width)


def test_bad_arguments() -> None:
    images = np.zeros((2, 3, 4, 4), dtype=np.uint16)
    with pytest.raises(ConfigError, match="percentiles"):
        channel_quantiles(images, (99, 1))
    with pytest.raises(ConfigError, match="must increase"):
        channel_quantiles(images.astype(np.float32), value_range=(1.0, 1.0))
    with pytest.raises(ValueError, match="at least one"):
        merge_quantile_states([])
    with pytest.raises(ValueError, match="differ"):
        merge_quantile_states([channel_quantiles(images), channel_quantiles(images[:, :2])])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        channel_quantiles(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(TypeError):
        channel_quantiles(np.zeros((1, 1, 2, 2), dtype=complex))


def test_empty_channel_gives_nan() -> None:
    state = QuantileState(np.zeros((1, 256), dtype=np.int64), (0.0, 255.0), (1.0, 99.0), True)
    lo, hi = state.finalize()
    assert np.isnan(lo[0]) and np.isnan(hi[0])


def test_normalize_clips_and_rescales_per_channel() -> None:
    rng = np.random.default_rng(3)
    images = _batch(rng, 5)
    lo, hi = channel_quantiles(images, (1, 99)).finalize()
    out = normalize(images, lo, hi)
    assert out.dtype == np.float32 and out.shape == images.shape
    assert out.min() == 0.0 and out.max() == 1.0
    c = 2
    x = images[:, c].astype(np.float64)
    expected = np.clip((x - lo[c]) / (hi[c] - lo[c]), 0, 1)
    np.testing.assert_allclose(out[:, c], expected, atol=1e-6)
    # a flat channel (hi == lo) maps to 0 instead of dividing by zero
    flat = normalize(images, np.zeros(3), np.array([0.0, 1.0, 1.0]))
    assert not flat[:, 0].any()


def test_normalize_accepts_channels_last_and_single_images() -> None:
    rng = np.random.default_rng(4)
    images = _batch(rng, 3)
    lo, hi = np.array([1.0, 10.0, 100.0]), np.array([100.0, 1000.0, 10000.0])
    ref = normalize(images, lo, hi)
    last = normalize(np.moveaxis(images, 1, -1), lo, hi, channel_axis=-1)
    np.testing.assert_array_equal(np.moveaxis(last, -1, 1), ref)
    np.testing.assert_array_equal(normalize(images[1], lo, hi), ref[1])
    with pytest.raises(ValueError, match="must be"):
        normalize(images, lo[:2], hi[:2])


def test_per_image_uses_each_images_own_percentiles() -> None:
    rng = np.random.default_rng(5)
    images = _batch(rng, 4)
    images[2] //= 10  # a much dimmer image: per-image normalisation undoes that
    lo, hi = image_quantiles(images, (1, 99))
    assert lo.shape == hi.shape == (4, 3)
    expected = np.percentile(images[2, 1].astype(np.float64), [1, 99])
    np.testing.assert_allclose([lo[2, 1], hi[2, 1]], expected)
    out = normalize_per_image(images, (1, 99))
    assert out.dtype == np.float32
    medians = np.median(out, axis=(2, 3))
    assert np.ptp(medians[:, 1]) < 0.15
    single = normalize_per_image(images[0], (1, 99))
    np.testing.assert_array_equal(single, out[0])


def test_merging_many_batch_states_keeps_memory_constant() -> None:
    """Thousands of batches must not be held at once: the merge is a running sum."""
    import tracemalloc

    rng = np.random.default_rng(3)
    one = channel_quantiles(_batch(rng, 2), (1.0, 99.0))
    size = one.counts.nbytes

    def states(n: int):  # type: ignore[no-untyped-def]
        for _ in range(n):
            yield QuantileState(one.counts.copy(), one.value_range, one.q, one.exact)

    tracemalloc.start()
    try:
        merged = merge_quantile_states(states(60))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert int(merged.counts.sum()) == 60 * int(one.counts.sum())
    assert peak < 5 * size, (peak, size)  # not 60 states' worth
