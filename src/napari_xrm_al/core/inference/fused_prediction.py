"""One class map from the predictions along z, y and x (``predict --fuse-axes``).

The 2D network sees a slice and its context along one axis; predicting the
volume along each of several axes and averaging the class probabilities
voxel by voxel gives each voxel the view of every axis. The class map is the
most probable class of the mean. With one axis it is that axis's prediction.

The probabilities are summed in memory (two float32 volumes of ``C`` classes),
so fusing is refused, with the figures, above ``max_memory``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from napari_xrm_al.core.events import Progress, one_of_parts
from napari_xrm_al.core.inference.predict import PredictConfig, PredictionResult
from napari_xrm_al.core.inference.prediction_outputs import PredictionOutputs
from napari_xrm_al.core.inference.segmenter import Segmenter
from napari_xrm_al.core.inference.summaries import pixel_stats
from napari_xrm_al.core.inference.tiling import mib
from napari_xrm_al.core.model.checkpoint import Checkpoint
from napari_xrm_al.core.slices import axis_index, axis_name
from napari_xrm_al.errors import XrmError

#: Default memory the fused probabilities may take.
FUSE_MAX_MEMORY = 4 * 2**30
#: Slices along z written to the class map at a time.
WRITE_SLAB = 16


def fused_bytes(shape: Sequence[int], n_classes: int) -> int:
    """Memory :func:`predict_fused` holds: the sum and one axis's probabilities."""
    return 2 * n_classes * math.prod(shape) * np.dtype(np.float32).itemsize


def prediction_axes(
    checkpoint: Checkpoint,
    shape: Sequence[int],
    *,
    max_fused_memory: int = FUSE_MAX_MEMORY,
) -> tuple[tuple[str, ...], str]:
    """The axes to predict a volume of ``shape`` along with a model: those of
    its training slices (fused when several), or the main one alone when
    fusing would take more than ``max_fused_memory``.

    A model trained on y slices predicts best along y (it has seen only
    that view); one trained on several axes, fused along them
    (docs/benchmarks.md, "Which axes to predict along").

    Returns
    -------
    axes, note
        The axes, main one first, and why fewer than the training axes are
        used ("" when all are).
    """
    axes = checkpoint.trained_axes
    if len(axes) == 1:
        return axes, ""
    trained = ", ".join(axes)
    need = fused_bytes(shape, checkpoint.model_config.n_classes)
    if need > max_fused_memory:
        return axes[:1], (
            f"predicted along {axes[0]} only, though trained on slices along "
            f"{trained}: fusing them needs about {mib(need)}, more than "
            f"{mib(max_fused_memory)}"
        )
    return axes, ""


def predict_fused(
    segmenter: Segmenter,
    data: Any,
    axes: Sequence[str | int],
    config: PredictConfig | None = None,
    *,
    out: Any,
    uncertainty_out: Any = None,
    max_fused_memory: int = FUSE_MAX_MEMORY,
    voxel_size: tuple[float, ...] | None = None,
    provenance: dict[str, Any] | None = None,
) -> Generator[Progress, None, PredictionResult]:
    """Predict ``data`` along each of ``axes`` and write the class map of the
    mean probabilities to ``out`` (a mask path or an array to fill), and their
    pixel entropy to ``uncertainty_out`` when given (stored as a single pass
    stores it, :mod:`~napari_xrm_al.core.inference.prediction_outputs`).

    Every pass runs as ``config`` says (device, precision, tta, batch_size,
    max_memory, ...), along its own axis and without per-slice summaries; an
    ``'auto'`` precision is decided by the first pass and kept for the others.

    Returns
    -------
    PredictionResult
        Of the fused map: its class fractions and the time of every pass.
    """
    order = sorted({axis_index(a) for a in axes})
    shape = tuple(int(s) for s in data.shape)
    n_classes = len(segmenter.classes)
    need = fused_bytes(shape, n_classes)
    if need > max_fused_memory:
        raise XrmError(
            f"Fusing the predictions of the {shape} volume needs about {mib(need)} "
            f"for the class probabilities, more than {mib(max_fused_memory)}; "
            "predict along one axis, or crop the volume."
        )
    one_pass = replace(config or PredictConfig(), summaries=False, embeddings=False)
    # Opened first: a path that cannot be written fails before any pass.
    outputs = PredictionOutputs(
        out, uncertainty_out, None, shape=shape, axis=0, classes=segmenter.classes,
        voxel_size=voxel_size, provenance=provenance,
    )  # fmt: skip
    t0 = time.perf_counter()
    try:
        total = np.zeros((n_classes, *shape), np.float32)
        probs = np.zeros_like(total)
        for i, ax in enumerate(order):
            result = yield from one_of_parts(
                segmenter.predict_volume(
                    data, replace(one_pass, axis=ax), probabilities_out=probs
                ),
                [shape[a] for a in order],
                i,
                f"along {axis_name(ax)}",
            )
            total += probs
            # The first pass calibrated the precision; the others keep it.
            one_pass = replace(one_pass, precision=result.precision)
        del probs
        total /= len(order)
        counts = _write_mean(total, outputs)
        outputs.commit()
    except BaseException:  # an error, or the caller closed the generator
        outputs.abort()
        raise
    return PredictionResult(
        summary=None,
        class_fraction=counts / max(1, counts.sum()),
        classes=segmenter.classes,
        axis=",".join(axis_name(a) for a in order),
        n_slices=sum(shape[a] for a in order),
        seconds=time.perf_counter() - t0,
        precision=result.precision,
        batch_size=result.batch_size,
        slab=result.slab,
        paths=outputs.paths,
    )


def predict_along(
    segmenter: Segmenter,
    data: Any,
    axes: Sequence[str | int],
    config: PredictConfig | None = None,
    *,
    out: Any,
    uncertainty_out: Any = None,
    provenance: dict[str, Any] | None = None,
) -> Generator[Progress, None, PredictionResult]:
    """Predict ``data`` along the one axis of ``axes`` (streamed, slab by slab)
    or, when there are several, fused along them (:func:`predict_fused`)."""
    outputs = {"out": out, "uncertainty_out": uncertainty_out, "provenance": provenance}
    if len({axis_index(a) for a in axes}) > 1:
        return (yield from predict_fused(segmenter, data, axes, config, **outputs))
    one = replace(config or PredictConfig(), axis=axes[0])
    return (yield from segmenter.predict_volume(data, one, **outputs))


def _write_mean(mean: np.ndarray, outputs: PredictionOutputs) -> np.ndarray:
    """Write the outputs of the mean probabilities ``(C, z, y, x)`` slab by
    slab along z; the voxel count of each class."""
    counts = np.zeros(mean.shape[0], np.int64)
    for z0 in range(0, mean.shape[1], WRITE_SLAB):
        slab = torch.from_numpy(mean[:, z0 : z0 + WRITE_SLAB]).movedim(0, 1)
        stats = pixel_stats(slab.contiguous())
        counts += np.bincount(stats.label.numpy().ravel(), minlength=len(counts))
        outputs.start(len(slab), mean.shape[2:])
        outputs.fill(0, stats)
        outputs.flush(np.arange(z0, z0 + len(slab)))
    return counts
