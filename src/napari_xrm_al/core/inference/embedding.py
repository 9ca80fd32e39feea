"""Slice embeddings from the pretrained encoder, before any model is trained.

Core-set needs only the encoder: pooled bottleneck features of every slice, and
how much those features vary within the slice. They let the very first slices
to label be picked for coverage (k-centre greedy weighted towards slices that
hold many structures, see :func:`~napari_xrm_al.core.al.first_picks.first_picks`)
instead of at random, which on a thick-die scan often misses the one thin
solder layer entirely.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_xrm_al.core.events import Progress
from napari_xrm_al.core.inference.predict import DEFAULT_MAX_MEMORY
from napari_xrm_al.core.inference.segmenter import Segmenter
from napari_xrm_al.core.inference.slice_inference import (
    SliceInference,
    default_batch_size,
)
from napari_xrm_al.core.inference.tiling import footprint, pixel_bytes, too_large
from napari_xrm_al.core.model.checkpoint import Checkpoint
from napari_xrm_al.core.model.network import SliceSegmenter
from napari_xrm_al.core.slices import axis_index, axis_name, read_slices, slice_shape
from napari_xrm_al.errors import XrmError


def encoder_network(ckpt: Checkpoint) -> nn.Module:
    """The network of a checkpoint, in eval mode (an encoder's decoder untrained)."""
    if ckpt.kind != "encoder":
        return Segmenter.build(ckpt).net
    model = SliceSegmenter(ckpt.model_config)
    model.load_encoder_state_dict(ckpt.state_dict)
    return model.eval()


def embed_slices(
    ckpt: Checkpoint,
    data: Any,
    *,
    axis: str | int | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Pooled encoder embedding and feature spread of every slice along ``axis``.

    Reads ``data`` (lazy or in memory) one batch of slices at a time, as many
    as fit ``max_memory``; a slice that alone does not fit is refused up front
    (:class:`XrmError` with the figures).

    Returns
    -------
    index, embedding, spread
        ``(S,)`` slice indices, ``(S, D)`` float32 embeddings and ``(S,)``
        feature spreads
        (:meth:`~napari_xrm_al.core.inference.slice_inference.SliceInference.embeddings_and_spread`),
        as ``StopIteration.value``.
    """
    ax = axis_index(ckpt.axis if axis is None else axis)
    n = int(data.shape[ax])
    hw = slice_shape(data.shape, ax)
    context = ckpt.model_config.context
    fp = footprint(ckpt.model_config)
    need = pixel_bytes(fp, context, data.dtype, 0) * math.prod(hw)
    if need > max_memory:
        raise XrmError(
            f"{too_large(hw, need, max_memory, 'embed')}; raise the limit "
            "(--max-memory) or rank with a trained model (predicted in tiles)."
        )
    batch = int(min(batch_size or default_batch_size(hw), max_memory // need))
    index = np.arange(n)
    parts: list[np.ndarray] = []
    spreads: list[np.ndarray] = []
    t0 = time.perf_counter()
    # float32: bf16 calibration compares class maps, which an untrained decoder
    # does not give.
    engine = SliceInference(
        encoder_network(ckpt), ckpt.normalisation, device, "float32"
    )
    with engine:
        for b0 in range(0, n, batch):
            x = engine.prepare(read_slices(data, index[b0 : b0 + batch], ax, context))
            embedding, spread = engine.embeddings_and_spread(x)
            parts.append(embedding.cpu().numpy())
            spreads.append(spread.cpu().numpy())
            done = min(n, b0 + batch)
            elapsed = time.perf_counter() - t0
            yield Progress(
                "embed",
                done,
                n,
                eta_seconds=elapsed / done * (n - done),
                message=f"{axis_name(ax)} {b0}",
            )
    if not parts:
        return index, np.zeros((0, 0), np.float32), np.zeros(0, np.float32)
    return index, np.concatenate(parts), np.concatenate(spreads)
