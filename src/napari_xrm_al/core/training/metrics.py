"""Segmentation quality: confusion matrix, per-class IoU and Dice, mIoU.

Everything works on *dense* class ids ``0..C-1``; target pixels outside that
range (``-1`` for "not annotated", as
:func:`~napari_xrm_al.classes.annotation_to_dense` gives) are ignored.
Volumes are processed in blocks along their first axis, so lazily loaded
arrays are never read whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_xrm_al.classes import ClassTable


def confusion_matrix(pred, target, n_classes: int, block: int = 16) -> np.ndarray:
    """``(C, C)`` pixel counts, rows = true class, columns = predicted class.

    Target pixels outside ``0..C-1`` are ignored. Predictions must be dense
    ids ``0..C-1`` (convert annotation ids first).
    """
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(
            f"Shapes differ: prediction {pred.shape}, target {target.shape}."
        )
    cm = np.zeros(n_classes * n_classes, dtype=np.int64)
    starts = range(0, pred.shape[0], block) if len(pred.shape) else [None]
    for start in starts:
        key = slice(start, start + block) if start is not None else ()
        t = np.asarray(target[key]).astype(np.int64, copy=False).ravel()
        p = np.asarray(pred[key]).astype(np.int64, copy=False).ravel()
        keep = (t >= 0) & (t < n_classes)
        t, p = t[keep], p[keep]
        if p.size and (p.min() < 0 or p.max() >= n_classes):
            raise ValueError(f"Predictions must be class ids 0..{n_classes - 1}.")
        cm += np.bincount(t * n_classes + p, minlength=n_classes * n_classes)
    return cm.reshape(n_classes, n_classes)


def iou_dice(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class IoU and Dice from a confusion matrix (NaN where a class is
    absent from both prediction and target)."""
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (tp + fp + fn)
        dice = 2 * tp / (2 * tp + fp + fn)
    return iou, dice


def scores(cm: np.ndarray, classes: ClassTable | Sequence[str]) -> dict[str, float]:
    """Named figures: ``miou``, ``mdice``, ``accuracy``, ``iou/<class>``, ``dice/<class>``.

    Means are over classes present in the target or the prediction.
    """
    names = classes.names if isinstance(classes, ClassTable) else tuple(classes)
    iou, dice = iou_dice(cm)
    total = cm.sum()
    out = {
        "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "mdice": float(np.nanmean(dice)) if np.isfinite(dice).any() else float("nan"),
        "accuracy": float(np.trace(cm) / total) if total else float("nan"),
    }
    out.update({f"iou/{n}": float(v) for n, v in zip(names, iou, strict=True)})
    out.update({f"dice/{n}": float(v) for n, v in zip(names, dice, strict=True)})
    return out


def evaluate(pred, target, classes: ClassTable | Sequence[str]) -> dict[str, float]:
    """:func:`scores` of dense predictions against dense/−1-masked targets."""
    n = len(classes)
    return scores(confusion_matrix(pred, target, n), classes)
