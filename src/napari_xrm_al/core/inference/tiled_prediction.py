"""Prediction of slices larger than the memory limit, tile by tile.

Each slice is predicted in the tiles of a :class:`~napari_xrm_al.core.inference.tiling.TilePlan`:
only a tile's box (with context planes) is read from the lazy volume, only
its core is written to the outputs, and the per-slice summaries (means over
the slice's pixels, BALD, pooled embeddings) are accumulated tile by tile, so
they equal those of untiled prediction. See :mod:`napari_xrm_al.core.inference.tiling`
for why the stitched result is the same.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from napari_xrm_al.core.events import Progress
from napari_xrm_al.core.inference.prediction_outputs import PredictionOutputs
from napari_xrm_al.core.inference.slice_inference import SliceInference
from napari_xrm_al.core.inference.summaries import SliceSummary, pixel_stats, summarise
from napari_xrm_al.core.inference.tiling import Tile, TilePlan
from napari_xrm_al.core.process_memory import trim_heap
from napari_xrm_al.core.slices import axis_name, read_slices

if TYPE_CHECKING:
    from napari_xrm_al.core.inference.predict import PredictConfig


def calibrate_tiled(
    engine: SliceInference,
    data: Any,
    axis: int,
    index: int,
    context: int,
    plan: TilePlan,
) -> None:
    """Resolve ``'auto'`` precision on the middle tile of slice ``index``."""
    if engine.precision is None:
        tiles = list(plan)
        tile = tiles[len(tiles) // 2]
        raw = read_slices(data, [index], axis, context, tile.read)
        engine.calibrate(engine.prepare(raw))


def _crop(t: torch.Tensor, region: tuple[slice, slice]) -> torch.Tensor:
    return t[..., region[0], region[1]]


class _SliceSums:
    """Sums over a slice's pixels (and bottleneck cells), tile by tile."""

    def __init__(self) -> None:
        self.pixels = self.cells = 0
        self.sums: dict[str, np.ndarray] = {}
        self.bald = 0.0
        self.embedding: np.ndarray | None = None

    def add(self, means: dict[str, np.ndarray], pixels: int) -> None:
        for key, value in means.items():
            self.sums[key] = self.sums.get(key, 0) + value * pixels
        self.pixels += pixels

    def summary(self, index: int, bald: bool) -> SliceSummary:
        mean = {k: v / self.pixels for k, v in self.sums.items()}
        return SliceSummary(
            index=np.array([index]),
            **mean,
            bald=np.array([self.bald / self.pixels]) if bald else None,
            embedding=(
                (self.embedding / self.cells).astype(np.float32)[None]
                if self.embedding is not None
                else None
            ),
        )


def _embedding_cells(
    engine: SliceInference, x: torch.Tensor, tile: Tile, multiple: int
) -> tuple[np.ndarray, int]:
    """Sum over the bottleneck cells of the tile's core, and their count."""
    feats = engine.features(x)[0]
    padded = -(-x.shape[-1] // multiple) * multiple
    scale = padded // feats.shape[-1]
    rows, cols = tile.core_in_read
    cells = (
        slice(rows.start // scale, -(-rows.stop // scale)),
        slice(cols.start // scale, -(-cols.stop // scale)),
    )
    part = _crop(feats, cells)
    return part.sum(dim=(-2, -1)).double().cpu().numpy(), part[0].numel()


def predict_tiled(
    engine: SliceInference,
    data: Any,
    axis: int,
    indices: np.ndarray,
    context: int,
    plan: TilePlan,
    outputs: PredictionOutputs,
    counts: np.ndarray,
    config: PredictConfig,
) -> Generator[Progress, None, list[SliceSummary]]:
    """Predict slices ``indices`` tile by tile; yields :class:`Progress` per tile.

    Writes each core to ``outputs``, adds the predicted classes to ``counts``
    and returns one :class:`SliceSummary` per slice (when ``config.summaries``;
    with BALD and embeddings as ``config`` says).
    """
    mc_samples = config.mc_samples
    parts: list[SliceSummary] = []
    total = indices.size * len(plan)
    t0, done = time.perf_counter(), 0
    for index in (int(i) for i in indices):
        sums = _SliceSums()
        for t, tile in enumerate(plan):
            x = engine.prepare(read_slices(data, [index], axis, context, tile.read))
            core = tile.core_in_read
            stats = pixel_stats(_crop(engine.probabilities(x), core))
            outputs.write_region(index, tile.core, stats)
            counts += np.bincount(
                stats.label.flatten().cpu().numpy(), minlength=counts.size
            )
            if config.summaries:
                pixels = stats.label[0].numel()
                sums.add(summarise(stats), pixels)
                if mc_samples > 1:
                    seed = config.seed + index
                    bald = _crop(engine.bald_map(x, mc_samples, seed), core)
                    sums.bald += float(bald.double().sum())
                if config.embeddings:
                    part, cells = _embedding_cells(engine, x, tile, plan.multiple)
                    sums.embedding = (
                        part if sums.embedding is None else sums.embedding + part
                    )
                    sums.cells += cells
            del x, stats
            trim_heap()
            done += 1
            elapsed = time.perf_counter() - t0
            yield Progress(
                "predict",
                done,
                total,
                eta_seconds=elapsed / done * (total - done),
                message=f"{axis_name(axis)} {index} tile {t + 1}/{len(plan)}, "
                f"{engine.precision}",
            )
        if config.summaries:
            parts.append(sums.summary(index, mc_samples > 1))
    return parts
