"""Contrastive (SimCLR) pretraining of the segmenter's encoder on the scan itself.

Before any labels exist, the encoder learns from the unlabelled volume: two
randomly augmented views of the same 2D region are pulled together and away
from the other regions of the batch (NT-Xent loss, MONAI ``ContrastiveLoss``)
through a small projection head that is discarded afterwards (method.md).
Regions come from a pool read once (a few hundred MB at most, within the
memory limit): whole slices, or boxes of slices too large for it, so a huge
slice is never read whole. Regions favour structure: half of the candidate regions, the flattest,
are dropped, because crops of featureless silicon are indistinguishable
negatives. Views use XRM-suited augmentation: random crop and rescale, flips,
90° rotations, a mild monotone contrast curve, grey-level scale/shift/gamma,
Gaussian noise and slight blur.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

import numpy as np
import torch
from monai.losses import ContrastiveLoss
from torch import nn

from napari_xrm_al.core.events import Progress
from napari_xrm_al.core.model.checkpoint import (
    Checkpoint,
)
from napari_xrm_al.core.model.network import SliceSegmenter, pick_device
from napari_xrm_al.core.slices import (
    axis_index,
    axis_name,
    n_slices,
    read_slices,
    slice_shape,
)
from napari_xrm_al.core.training.augment import contrastive_view
from napari_xrm_al.core.training.configs import PretrainConfig
from napari_xrm_al.core.training.schedule import StepClock
from napari_xrm_al.core.training.step_loop import (
    RunOptions,
    config_record,
    run_steps,
    seeded_generators,
)
from napari_xrm_al.core.training.trainset import pad_slices
from napari_xrm_al.errors import XrmError, mib
from napari_xrm_al.io.array_reads import chunk_shape

#: Side of the boxes the region pool reads from slices larger than it.
POOL_BOX = 1024


class ProjectionHead(nn.Sequential):
    """SimCLR's MLP head on the pooled encoder output (discarded afterwards)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        hidden = max(out_dim, in_dim)
        super().__init__(
            nn.Linear(in_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_dim),
        )


def region_pool(
    data,
    axis: str,
    context: int,
    region: int,
    max_voxels: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Raw boxes ``(N, K, h, w)`` spread evenly along ``axis``, padded to ``region``.

    Slices that fit a box of :data:`POOL_BOX` a side (and the pool) are read
    whole, each once. From larger slices, only boxes of that side (smaller
    if ``max_voxels`` holds less, never below ``region``) are read, at random
    places aligned to the stored chunks, so the pool holds about
    ``max_voxels`` whatever the slice size.
    """
    size = n_slices(data.shape, axis)
    h, w = slice_shape(data.shape, axis)
    k = 2 * context + 1
    side = max(region, min(POOL_BOX, math.isqrt(max_voxels // k)))
    bh, bw = min(h, side), min(w, side)
    places = size * math.ceil(h / bh) * math.ceil(w / bw)
    n = int(np.clip(max_voxels // (k * bh * bw), 1, places))
    step = size / n
    idx = np.minimum((np.arange(n) * step + rng.uniform(0, step)).astype(int), size - 1)
    if (bh, bw) == (h, w):
        boxes = [(int(i), None) for i in np.unique(idx)]
    else:
        plane = [c for a, c in enumerate(chunk_shape(data)) if a != axis_index(axis)]
        starts = [
            [s - s % c if c < b else s for s in rng.integers(0, n_px - b + 1, n)]
            for n_px, b, c in zip((h, w), (bh, bw), plane, strict=True)
        ]
        boxes = [
            (int(i), (slice(r, r + bh), slice(c, c + bw)))
            for i, r, c in zip(idx, *starts, strict=True)
        ]
    pool = np.empty((len(boxes), k, bh, bw), dtype=data.dtype)
    for j, (i, box) in enumerate(boxes):
        pool[j] = read_slices(data, [i], axis, context, box)[0]
    return pad_slices(pool, region)


def pool_voxels(config: PretrainConfig, dtype: np.dtype, max_memory: int) -> int:
    """Voxels the region pool may hold within ``max_memory`` bytes.

    :class:`XrmError` with the figures if not even one region fits.
    """
    itemsize = np.dtype(dtype).itemsize
    one = config.region_size**2 * (2 * config.context + 1) * itemsize
    if one > max_memory:
        raise XrmError(
            f"One {config.region_size} × {config.region_size} region (with "
            f"{config.context} context slices each side) needs {mib(one)}, more "
            f"than the memory limit of {mib(max_memory)}; raise the limit "
            "(--max-memory)."
        )
    return min(config.pool_voxels, max_memory // itemsize)


def sample_regions(
    pool: np.ndarray, n: int, size: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` regions of side ``size``: the more structured half of ``2n`` candidates."""
    count, k, h, w = pool.shape
    s = rng.integers(count, size=2 * n)
    r = rng.integers(h - size + 1, size=2 * n)
    c = rng.integers(w - size + 1, size=2 * n)
    regions = np.stack(
        [
            pool[a, :, b : b + size, d : d + size]
            for a, b, d in zip(s, r, c, strict=True)
        ]
    )
    spread = regions[:, k // 2].reshape(2 * n, -1).astype(np.float32).std(axis=1)
    return regions[np.argsort(spread)[n:]]


def pretrain(
    image_data,
    *,
    axis: str = "z",
    config: PretrainConfig | None = None,
    run: RunOptions | None = None,
) -> Generator[Progress, None, Checkpoint]:
    """Pretrain an encoder on unlabelled ``image_data``; yields :class:`Progress`.

    Parameters
    ----------
    image_data
        The (z, y, x) volume.
    axis
        Slice axis (the one training and prediction will use).
    run
        Seed, device, normalisation, provenance, where to save and memory
        (:class:`~napari_xrm_al.core.training.step_loop.RunOptions`; None: its
        defaults). The pool of regions holds at most ``run.max_memory`` bytes
        (and ``config.pool_voxels``); refused before anything is read if one
        region does not fit.

    Returns
    -------
    Checkpoint
        An ``'encoder'`` checkpoint.
    """
    config = config or PretrainConfig()
    run = run or RunOptions()
    axis = axis_name(axis)
    budget = pool_voxels(config, image_data.dtype, run.max_memory)
    rng, gen = seeded_generators(run.seed)
    dev = pick_device(run.device)
    norm = run.normalisation_for(image_data)
    model = SliceSegmenter(config.model_config()).to(dev)
    run.check_room("the encoder", model.encoder_state_dict())
    head = ProjectionHead(model.embedding_dim, config.projection_dim).to(dev)
    encoder_params = [p for n, p in model.named_parameters() if model.is_encoder_key(n)]
    loss_fn = ContrastiveLoss(temperature=config.temperature)
    pool = region_pool(
        image_data,
        axis,
        config.context,
        config.region_size,
        budget,
        rng,
    )
    clock = StepClock(config.steps, config.time_budget_s)
    history: dict[str, Any] = {
        "config": config_record(config),
        "pool_boxes": len(pool),
        "loss": [],
    }

    def result() -> Checkpoint:
        return Checkpoint(
            kind="encoder",
            model_config=model.cfg,
            state_dict=model.encoder_state_dict(),
            normalisation=norm,
            axis=axis,
            provenance=dict(run.provenance or {}),
            history=history,
        )

    def step_loss() -> torch.Tensor:
        regions = sample_regions(pool, config.batch_size, config.region_size, rng)
        x = torch.from_numpy(norm.apply(regions))
        views = [
            contrastive_view(
                x, config.view_size, config.crop_area, config.augment, gen
            ).to(dev)
            for _ in range(2)
        ]
        z = head(model.encode(torch.cat(views)))
        return loss_fn(z[: len(x)], z[len(x) :])

    model.train()
    head.train()
    return (
        yield from run_steps(
            "pretrain",
            config,
            clock,
            [*encoder_params, *head.parameters()],
            step_loss,
            result,
            history,
            out=run.out,
        )
    )
