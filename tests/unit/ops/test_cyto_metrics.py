"""Object matching: IoU of label pairs, precision / recall / F1 at IoU >= 0.5, area errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from scopeflow.ops.cyto.metrics import iou_matrix, label_overlaps, match_labels


def _squares() -> tuple[np.ndarray, np.ndarray]:
    true = np.zeros((20, 30), dtype=np.int32)
    true[2:12, 2:12] = 1  # 100 px
    true[2:12, 15:25] = 2  # 100 px
    true[15:19, 2:6] = 3  # 16 px, missed
    pred = np.zeros_like(true)
    pred[2:12, 3:13] = 5  # 1 column shifted: IoU 90 / 110
    pred[2:12, 15:20] = 7  # half of object 2: IoU 0.5 exactly
    pred[2:12, 20:25] = 8  # the other half
    pred[15:19, 20:24] = 9  # a false positive
    return true, pred


def test_iou_matrix_by_hand() -> None:
    true, pred = _squares()
    iou = iou_matrix(true, pred)
    assert iou.shape == (3, 9)  # ids are the label values; absent labels have area 0
    assert iou[0, 4] == pytest.approx(90 / 110)
    assert iou[1, 6] == pytest.approx(0.5)
    assert iou[1, 7] == pytest.approx(0.5)
    assert iou[2].sum() == 0
    ti, pi, inter, ta, pa = label_overlaps(true, pred)
    assert sorted(zip(ti.tolist(), pi.tolist(), inter.tolist(), strict=True)) == [
        (1, 5, 90),
        (2, 7, 50),
        (2, 8, 50),
    ]
    assert ta.tolist() == [600 - 216, 100, 100, 16]
    assert pa[5] == 100 and pa[9] == 16


def test_match_counts_and_scores() -> None:
    true, pred = _squares()
    m = match_labels(true, pred)
    assert (m.n_true, m.n_pred) == (3, 4)
    # object 2 has two candidates at IoU 0.5: exactly one of them is matched
    assert m.tp == 2 and m.fp == 2 and m.fn == 1
    assert m.true_id.tolist() == [1, 2]
    assert m.precision == pytest.approx(0.5)
    assert m.recall == pytest.approx(2 / 3)
    assert m.f1 == pytest.approx(2 * 2 / 7)
    assert m.mean_iou == pytest.approx((90 / 110 + 0.5) / 2)
    np.testing.assert_allclose(m.area_rel_error, [0.0, -0.5])
    assert m.fraction_within(0.1) == pytest.approx(0.5)
    s = m.summary()
    assert s["f1"] == m.f1 and s["median_abs_area_rel_error"] == pytest.approx(0.25)
    strict = match_labels(true, pred, iou_threshold=0.8)
    assert strict.tp == 1


def test_low_threshold_uses_an_optimal_assignment() -> None:
    true = np.zeros((10, 40), dtype=np.int32)
    true[:, 0:10] = 1
    true[:, 10:20] = 2
    pred = np.zeros_like(true)
    pred[:, 2:14] = 1  # IoU 8/12 with true 1, 4/18 with true 2
    pred[:, 14:22] = 2  # IoU 6/12 with true 2
    m = match_labels(true, pred, iou_threshold=0.2)
    assert sorted(zip(m.true_id.tolist(), m.pred_id.tolist(), strict=True)) == [(1, 1), (2, 2)]


def test_stacks_are_independent_images() -> None:
    true, pred = _squares()
    one = match_labels(true, pred)
    both = match_labels(np.stack([true, true]), np.stack([pred, pred]))
    assert (both.n_true, both.n_pred, both.tp) == (6, 8, 4)
    assert both.f1 == pytest.approx(one.f1)
    # label 1 of plane 0 never matches label 1 of plane 1
    a = np.zeros((2, 4, 4), dtype=np.uint8)
    b = np.zeros_like(a)
    a[0, :2] = 1
    b[1, :2] = 1
    assert match_labels(a, b).tp == 0


def test_empty_and_perfect() -> None:
    empty = np.zeros((5, 5), dtype=np.int32)
    m = match_labels(empty, empty)
    assert (m.tp, m.f1, m.precision, m.recall) == (0, 1.0, 1.0, 1.0)
    assert np.isnan(m.mean_iou) and np.isnan(m.fraction_within(0.1))
    lab = np.arange(25, dtype=np.int32).reshape(5, 5)
    perfect = match_labels(lab, lab)
    assert perfect.tp == 24 and perfect.f1 == 1.0 and perfect.mean_iou == 1.0
    missed = match_labels(lab, empty)
    assert missed.recall == 0.0 and missed.precision == 0.0 and missed.f1 == 0.0


def test_bad_input() -> None:
    lab = np.zeros((4, 4), dtype=np.int32)
    with pytest.raises(ValueError, match="differ"):
        match_labels(lab, lab[:2])
    with pytest.raises(TypeError):
        match_labels(lab.astype(float), lab)
    with pytest.raises(ValueError, match="negative"):
        match_labels(lab - 1, lab)
    with pytest.raises(ValueError, match="iou_threshold"):
        match_labels(lab, lab, iou_threshold=0.0)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        match_labels(lab[0], lab[0])


@settings(max_examples=30, deadline=None)
@given(
    true=hnp.arrays(np.int32, (12, 12), elements=st.integers(0, 5)),
    pred=hnp.arrays(np.int32, (12, 12), elements=st.integers(0, 5)),
)
def test_matching_is_one_to_one_and_above_threshold(true: np.ndarray, pred: np.ndarray) -> None:
    m = match_labels(true, pred)
    assert len(set(m.true_id.tolist())) == m.tp == len(set(m.pred_id.tolist()))
    assert np.all(m.iou >= 0.5)
    dense = iou_matrix(true, pred)
    np.testing.assert_allclose(m.iou, dense[m.true_id - 1, m.pred_id - 1])
    # any pair above 0.5 is matched (the match at >= 0.5 is unique, so greedy is exact)
    assert m.tp == int(np.count_nonzero(dense > 0.5)) or np.any(dense == 0.5)
    swapped = match_labels(pred, true)
    assert swapped.tp == m.tp and swapped.f1 == pytest.approx(m.f1)
