"""Helpers shared by every test folder."""

from __future__ import annotations

import pytest
import torch

from napari_xrm_al.core.checkpoint import Checkpoint, save_checkpoint
from napari_xrm_al.core.classes import ClassTable
from napari_xrm_al.core.model import ModelConfig, SliceSegmenter
from napari_xrm_al.core.normalization import Normalisation


def save_tiny_model(path, seed: int = 0):
    """A real (untrained) tiny segmenter checkpoint at ``path``, in well under 1 s."""
    torch.manual_seed(seed)
    config = ModelConfig(n_classes=4, context=1, features=(4, 8))
    model = SliceSegmenter(config)
    ckpt = Checkpoint(
        "segmenter",
        config,
        model.state_dict(),
        Normalisation(0, 1),
        "z",
        ClassTable.hbm(),
    )
    return save_checkpoint(path, ckpt)


@pytest.fixture
def tiny_model_file():
    """``tiny_model_file(path, seed=0)``: write a real tiny segmenter checkpoint."""
    return save_tiny_model
