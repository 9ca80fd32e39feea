from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score

from napari_xrm_al.classes import ClassTable, annotation_to_dense
from napari_xrm_al.core.training.metrics import (
    confusion_matrix,
    evaluate,
    iou_dice,
    scores,
)


def test_scores_match_sklearn_and_ignore_unannotated():
    rng = np.random.default_rng(0)
    target = rng.integers(-1, 3, (20, 8, 8))
    pred = rng.integers(0, 3, (20, 8, 8))
    keep = target >= 0
    got = evaluate(pred, target, ["a", "b", "c"])
    iou = jaccard_score(target[keep], pred[keep], average=None)
    dice = f1_score(target[keep], pred[keep], average=None)
    np.testing.assert_allclose([got[f"iou/{n}"] for n in "abc"], iou)
    np.testing.assert_allclose([got[f"dice/{n}"] for n in "abc"], dice)
    assert got["miou"] == pytest.approx(iou.mean())
    assert got["accuracy"] == pytest.approx((target[keep] == pred[keep]).mean())


def test_blockwise_equals_whole_and_annotation_ids_convert():
    rng = np.random.default_rng(1)
    annotation = rng.integers(0, 5, (33, 5, 5))  # 0 = not annotated, 1..4
    target = annotation_to_dense(annotation)
    pred = rng.integers(0, 4, annotation.shape)
    whole = confusion_matrix(pred, target, 4, block=1000)
    np.testing.assert_array_equal(confusion_matrix(pred, target, 4, block=4), whole)
    assert whole.sum() == np.count_nonzero(annotation)


def test_absent_class_is_nan_and_left_out_of_the_mean():
    cm = np.array([[5, 0, 1], [0, 0, 0], [1, 0, 3]])
    iou, _ = iou_dice(cm)
    assert np.isnan(iou[1])
    got = scores(cm, ClassTable(("a", "b", "c")))
    assert got["miou"] == pytest.approx((5 / 7 + 3 / 5) / 2)


def test_bad_predictions_are_rejected():
    with pytest.raises(ValueError, match="0..2"):
        confusion_matrix(np.array([3]), np.array([0]), 3)
    with pytest.raises(ValueError, match="Shapes differ"):
        confusion_matrix(np.zeros(3), np.zeros(4), 3)
