"""Prediction slab by slab: many whole slices per read, batches per forward pass.

Slices are read along the slice axis in *slabs* (a few dozen slices plus the
2.5D context neighbours, each plane held once), predicted in batches and
written slab by slab to the outputs. Slab size: a multiple of the batch size
covering at least one stored chunk along the slice axis (so each chunk is
decompressed once), capped by the memory left beside one batch's forward pass.
Slices too large for that are predicted tile by tile instead
(:mod:`~napari_xrm_al.core.inference.tiled_prediction`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from napari_xrm_al.core.events import Progress
from napari_xrm_al.core.inference.prediction_outputs import PredictionOutputs
from napari_xrm_al.core.inference.slice_inference import SliceInference
from napari_xrm_al.core.inference.summaries import (
    PixelStats,
    SliceSummary,
    pixel_stats,
    summarise,
)
from napari_xrm_al.core.process_memory import trim_heap
from napari_xrm_al.core.slices import axis_name, read_planes, slice_shape
from napari_xrm_al.io.array_reads import chunk_shape

if TYPE_CHECKING:
    from napari_xrm_al.core.inference.predict import PredictConfig

#: Batches of at least this many pixels return freed memory after each batch,
#: smaller ones once per slab: large buffers fragment glibc's heap (+100 MB of
#: peak on 1024² slices), while trimming often costs time on small ones.
TRIM_EACH_BATCH_PIXELS = 2**20
#: Slabs cover at least this many slices when memory allows (fewer re-reads
#: of context neighbours on page-per-slice TIFF stacks).
MIN_SLAB = 32


def slab_size(
    data: Any, axis: int, batch: int, per_slice_bytes: int, max_memory: int
) -> int:
    """Slices per slab: batches covering a stored chunk, within ``max_memory``.

    When a whole chunk depth does not fit, the largest fitting divisor of it
    (a multiple of ``batch``) keeps slabs from straddling chunk boundaries.
    """
    depth = max(chunk_shape(data)[axis], MIN_SLAB)
    want = batch * math.ceil(depth / batch)
    fits = max_memory // max(1, per_slice_bytes) // batch * batch
    if want <= fits:
        return int(want)
    aligned = [d for d in range(fits, 0, -batch) if depth % d == 0]
    return int(max(batch, aligned[0] if aligned else fits))


def _groups(idx: np.ndarray, slab: int) -> list[np.ndarray]:
    """Ascending indices split into groups spanning fewer than ``slab`` slices."""
    groups, start = [], 0
    while start < idx.size:
        stop = int(np.searchsorted(idx, idx[start] + slab))
        groups.append(idx[start:stop])
        start = stop
    return groups


def _read_planes(
    data: Any, axis: int, group: np.ndarray, context: int, per_plane: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and raw planes ``(M, H, W)`` of what ``group`` needs, with context.

    Each plane is held once, not once per slice it is context of. Stores
    holding whole planes (TIFF pages, memmaps) read only the planes needed;
    chunked stores read the group's whole span in one go.
    """
    size = int(data.shape[axis])
    needed = np.unique(np.clip(group[:, None] + _offsets(context), 0, size - 1))
    if not per_plane:
        needed = np.arange(needed[0], needed[-1] + 1)
    return needed, read_planes(data, needed, axis)


def _offsets(context: int) -> np.ndarray:
    return np.arange(-context, context + 1)


def _stacks(
    needed: np.ndarray, planes: np.ndarray, batch: np.ndarray, context: int, size: int
) -> np.ndarray:
    """Raw ``(B, 2*context+1, H, W)`` stacks of the slices ``batch``."""
    wanted = np.clip(batch[:, None] + _offsets(context), 0, size - 1)
    return planes[np.searchsorted(needed, wanted)]


def _summary(
    engine: SliceInference,
    x: torch.Tensor,
    stats: PixelStats,
    index: np.ndarray,
    mc_samples: int,
    seed: int,
    embeddings: bool,
) -> SliceSummary:
    """Summary of one batch ``x`` whose pixel statistics are ``stats``."""
    return SliceSummary(
        index=index.copy(),
        **summarise(stats),
        bald=engine.bald_map(x, mc_samples, seed)
        .flatten(1)
        .mean(1)
        .double()
        .cpu()
        .numpy()
        if mc_samples > 1
        else None,
        embedding=engine.embeddings(x).cpu().numpy() if embeddings else None,
    )


def per_slice_bytes(hw: tuple[int, int], dtype: Any, n_classes: int) -> int:
    """Slab memory per slice: its raw plane (read, and decoded into) and outputs."""
    return hw[0] * hw[1] * (2 * np.dtype(dtype).itemsize + 2 + n_classes)


def predict_slabs(
    engine: SliceInference,
    data: Any,
    ax: int,
    idx: np.ndarray,
    context: int,
    batch: int,
    slab: int,
    outputs: PredictionOutputs,
    counts: np.ndarray,
    config: PredictConfig,
) -> Generator[Progress, None, list[SliceSummary]]:
    """Predict slices ``idx`` slab by slab, batch by batch; yields :class:`Progress`.

    Writes the outputs, adds the predicted classes to ``counts`` and returns
    the batches' summaries (when ``config.summaries``; with BALD and
    embeddings as ``config`` says).
    """
    size = int(data.shape[ax])
    hw = slice_shape(data.shape, ax)
    per_plane = chunk_shape(data)[ax] == 1
    trim_each_batch = batch * math.prod(hw) >= TRIM_EACH_BATCH_PIXELS
    parts: list[SliceSummary] = []
    t0, done = time.perf_counter(), 0
    for group in _groups(idx, slab):
        needed, planes = _read_planes(data, ax, group, context, per_plane)
        outputs.start(len(group), hw)
        for b0 in range(0, len(group), batch):
            raw = _stacks(needed, planes, group[b0 : b0 + batch], context, size)
            x = engine.prepare(raw)
            del raw
            stats = pixel_stats(engine.probabilities(x))
            outputs.fill(b0, stats)
            first = int(group[b0])
            if config.summaries:
                parts.append(
                    _summary(
                        engine,
                        x,
                        stats,
                        group[b0 : b0 + batch],
                        config.mc_samples,
                        config.seed + first,
                        config.embeddings,
                    )
                )
            counts += np.bincount(
                stats.label.flatten().cpu().numpy(), minlength=counts.size
            )
            done += len(x)
            del x, stats
            if trim_each_batch:
                trim_heap()
            elapsed = time.perf_counter() - t0
            yield Progress(
                "predict",
                done,
                idx.size,
                eta_seconds=elapsed / done * (idx.size - done),
                message=f"{axis_name(ax)} {first}, {engine.precision}",
            )
        outputs.flush(group)
        del planes
        trim_heap()
    return parts
