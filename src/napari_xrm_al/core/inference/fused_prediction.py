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

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.events import Progress, one_of_parts
from napari_xrm_al.core.inference.predict import PredictConfig, PredictionResult
from napari_xrm_al.core.inference.segmenter import Segmenter
from napari_xrm_al.core.inference.tiling import mib
from napari_xrm_al.core.model.checkpoint import Checkpoint
from napari_xrm_al.core.slices import axis_index, axis_name
from napari_xrm_al.errors import XrmError
from napari_xrm_al.io.masks import MaskWriter, label_dtype

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
    uncertainty: bool = False,
    max_fused_memory: int = FUSE_MAX_MEMORY,
) -> tuple[tuple[str, ...], str]:
    """The axes to predict a volume of ``shape`` along with a model: those of
    its training slices (fused when several), or the main one alone when an
    uncertainty map is wanted (it comes from one pass) or fusing would take
    more than ``max_fused_memory``.

    A model trained on y slices predicts best along y (it has seen only
    that view); one trained on several axes, fused along them
    (docs/benchmarks.md, Stable retraining).

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
    if uncertainty:
        return axes[:1], (
            f"predicted along {axes[0]} only, though trained on slices along "
            f"{trained}: the uncertainty map comes from one pass"
        )
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
    max_fused_memory: int = FUSE_MAX_MEMORY,
    voxel_size: tuple[float, ...] | None = None,
    provenance: dict[str, Any] | None = None,
) -> Generator[Progress, None, PredictionResult]:
    """Predict ``data`` along each of ``axes`` and write the class map of the
    mean probabilities to ``out`` (a mask path or an array to fill).

    Every pass runs as ``config`` says (device, precision, tta, batch_size,
    max_memory, ...), along its own axis and without per-slice summaries.

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
    total = np.zeros((n_classes, *shape), np.float32)
    probs = np.zeros_like(total)
    t0 = time.perf_counter()
    result = None
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
    del probs
    labels = _write_argmax(total, out, segmenter.classes, voxel_size, provenance)
    counts = np.bincount(labels.ravel(), minlength=n_classes + 1)[1:]
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
        paths={"labels": out} if not hasattr(out, "shape") else {},
    )


def _write_argmax(
    total: np.ndarray,
    out: Any,
    classes: ClassTable,
    voxel_size: tuple[float, ...] | None,
    provenance: dict[str, Any] | None,
) -> np.ndarray:
    """Annotation ids ``1..C`` of the most probable class, written to ``out``."""
    labels = (np.argmax(total, axis=0) + 1).astype(label_dtype(classes))
    if hasattr(out, "shape"):
        out[...] = labels
        return labels
    with MaskWriter(
        out, labels.shape, classes, dtype=labels.dtype, voxel_size=voxel_size,
        name="prediction", provenance=provenance,
    ) as writer:  # fmt: skip
        for z0 in range(0, labels.shape[0], WRITE_SLAB):
            writer[z0 : z0 + WRITE_SLAB] = labels[z0 : z0 + WRITE_SLAB]
    return labels
