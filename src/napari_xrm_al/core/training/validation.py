"""Scoring a model on whole labelled slices while it trains."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.model.normalization import Normalisation
from napari_xrm_al.core.training.metrics import confusion_matrix, scores
from napari_xrm_al.core.training.trainset import LabelledSet


@torch.no_grad()
def segment_slices(
    model: nn.Module, images: np.ndarray, device: torch.device, batch: int = 4
) -> np.ndarray:
    """Dense class ids ``(N, H, W)`` of normalised slices ``(N, K, H, W)`` (eval mode)."""
    was = model.training
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch])).to(device)
        out.append(model(x).argmax(dim=1).cpu().numpy().astype(np.int16))
    model.train(was)
    return np.concatenate(out) if out else np.zeros((0, *images.shape[2:]), np.int16)


def validate(
    model: nn.Module,
    val: LabelledSet,
    norm: Normalisation,
    classes: ClassTable,
    device: torch.device,
) -> dict[str, float]:
    """Scores of ``model`` on whole validation slices (of every axis together)."""
    cm = sum(
        confusion_matrix(
            segment_slices(model, norm.apply(g.images), device), g.labels, len(classes)
        )
        for g in val.groups
    )
    return scores(cm, classes)
