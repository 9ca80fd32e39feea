"""Class-weighted segmentation losses that ignore unannotated pixels.

Sparse annotations leave most pixels unlabelled (target ``-1``). The MONAI
Dice and Focal losses are applied to one-hot targets and probabilities that are
zeroed outside the annotation, and cross-entropy uses ``ignore_index``, so
unannotated pixels contribute nothing to the loss or its gradient.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss, FocalLoss
from torch import nn

from napari_xrm_al.errors import XrmError

LOSSES = ("dice_ce", "dice_focal")
IGNORE = -1


def class_weights(
    counts: np.ndarray, power: float = 0.5, max_ratio: float = 50.0
) -> np.ndarray:
    """Per-class weights ``∝ frequency^-power`` from labelled pixel ``counts``.

    Normalised so an average labelled pixel has weight 1; the largest weight
    is at most ``max_ratio`` times the smallest; classes with no labelled
    pixels get weight 0.
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    if not present.any():
        raise XrmError("No annotated pixels: nothing to train on.")
    freq = counts / counts.sum()
    w = np.zeros_like(freq)
    w[present] = freq[present] ** -power
    w[present] = np.minimum(w[present], w[present].min() * max_ratio)
    return w / float((freq * w).sum())


class MaskedSegLoss(nn.Module):
    """Dice + cross-entropy (or Dice + focal) over annotated pixels only.

    Parameters
    ----------
    n_classes
        Number of classes (logit channels).
    kind
        ``'dice_ce'`` or ``'dice_focal'``.
    weights
        Per-class weights for the cross-entropy/focal term (see
        :func:`class_weights`); classes with weight 0 are also left out of
        the Dice term.
    focal_gamma
        Focusing parameter of the focal loss.
    """

    def __init__(
        self,
        n_classes: int,
        kind: str = "dice_ce",
        weights: np.ndarray | None = None,
        focal_gamma: float = 2.0,
    ) -> None:
        super().__init__()
        if kind not in LOSSES:
            raise XrmError(f"Unknown loss {kind!r}; choose from {LOSSES}.")
        self.kind = kind
        self.n_classes = n_classes
        w = (
            torch.ones(n_classes)
            if weights is None
            else torch.as_tensor(weights).float()
        )
        self.register_buffer("weights", w)
        # Dice weighs classes equally (it is already size-independent); batch
        # Dice so a rare class absent from one crop still counts in the batch.
        self.dice = DiceLoss(
            include_background=True,
            batch=True,
            weight=(w > 0).float(),
            smooth_nr=1e-3,
            smooth_dr=1e-3,
        )
        self.focal = FocalLoss(
            include_background=True,
            gamma=focal_gamma,
            weight=w,
            use_softmax=True,
            reduction="none",
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` (B, C, H, W) against ``target`` (B, H, W), ``-1`` ignored."""
        mask = (target != IGNORE)[:, None].to(logits.dtype)
        n = mask.sum()
        if n == 0:
            return logits.sum() * 0.0
        onehot = F.one_hot(target.clamp(min=0), self.n_classes).permute(0, 3, 1, 2)
        onehot = onehot.to(logits.dtype) * mask
        probs = logits.softmax(dim=1) * mask
        dice = self.dice(probs, onehot)
        if self.kind == "dice_ce":
            other = F.cross_entropy(
                logits, target, weight=self.weights, ignore_index=IGNORE
            )
        else:
            other = (self.focal(logits, onehot) * mask).sum() / n
        return dice + other
