"""Whole-volume prediction, streamed over a lazy volume within a memory limit.

A volume larger than memory is never loaded whole. Slices that fit are read
in slabs and predicted in batches (:mod:`~napari_xrm_al.core.inference.slab_prediction`);
a slice whose forward pass alone exceeds the limit is predicted in overlapping
tiles with the same result (:mod:`~napari_xrm_al.core.inference.tiled_prediction`). Each
batch or tile is summarised per slice (:mod:`~napari_xrm_al.core.inference.summaries`)
and written to the outputs (:mod:`~napari_xrm_al.core.inference.prediction_outputs`),
which only appear under their final names when the whole run succeeded.
How the network runs (axis, batch, precision, test-time augmentation, memory,
MC dropout, summaries) is one :class:`PredictConfig`, the same for a run in
this process and on dask workers (:mod:`~napari_xrm_al.core.inference.distributed`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.events import Progress
from napari_xrm_al.core.inference.prediction_outputs import PredictionOutputs
from napari_xrm_al.core.inference.slab_prediction import (
    per_slice_bytes,
    predict_slabs,
    slab_size,
)
from napari_xrm_al.core.inference.slice_inference import (
    SliceInference,
    default_batch_size,
)
from napari_xrm_al.core.inference.summaries import SliceSummary
from napari_xrm_al.core.inference.tiled_prediction import calibrate_tiled, predict_tiled
from napari_xrm_al.core.inference.tiling import (
    TilePlan,
    footprint,
    pixel_bytes,
    plan_tiles,
)
from napari_xrm_al.core.model.checkpoint import Checkpoint
from napari_xrm_al.core.model.normalization import Normalisation, check_finite_sample
from napari_xrm_al.core.process_memory import map_large_allocations
from napari_xrm_al.core.slices import axis_index, axis_name, read_slices, slice_shape
from napari_xrm_al.errors import XrmError
from napari_xrm_al.io.array_reads import check_chunks_fit

if TYPE_CHECKING:
    from napari_xrm_al.core.inference.segmenter import Segmenter

#: Default cap on the memory held by one slab (raw slices, context, outputs).
DEFAULT_MAX_MEMORY = 256 * 2**20


@dataclass(frozen=True)
class PredictConfig:
    """How a volume is predicted, in this process or on dask workers.

    Attributes
    ----------
    axis
        Slice axis (``'z'``, ``'y'``, ``'x'`` or 0..2); None: for a volume,
        the axis most of the model's training slices lie along; for given
        slice indices, the model's own axis.
    batch_size
        Slices per forward pass; None: about 4 slices of 256²
        (:func:`~napari_xrm_al.core.inference.slice_inference.default_batch_size`).
    mc_samples
        T > 1 adds BALD from T MC-dropout passes (besides the deterministic
        pass that gives everything else).
    summaries
        Compute per-slice summaries (:class:`~napari_xrm_al.core.inference.summaries.SliceSummary`).
    embeddings
        Include the pooled encoder embeddings in the summaries.
    device
        Where to run (``'cpu'``, ``'cuda'``, ...); None: where the network is.
    precision
        ``'auto'`` (bfloat16 where supported and accurate), ``'float32'`` or
        ``'bfloat16'``; see :class:`~napari_xrm_al.core.inference.slice_inference.SliceInference`.
    tta
        Test-time augmentation, ``'none'``, ``'flips'`` or ``'dihedral'``
        (4 or 8 times the cost).
    max_memory
        Bytes one slab may hold (the volume is never read whole).
    seed
        Seed of the MC-dropout masks.
    normalisation
        Intensity normalisation to use instead of the model's, e.g. one fitted
        on another scan
        (:func:`~napari_xrm_al.core.model.normalization.normalisation_for_scan`);
        None: the model's.

    Raises
    ------
    XrmError
        When ``mc_samples`` is not an integer >= 1.
    """

    axis: str | int | None = None
    batch_size: int | None = None
    mc_samples: int = 1
    summaries: bool = True
    embeddings: bool = True
    device: str | torch.device | None = None
    precision: str = "auto"
    tta: str = "none"
    max_memory: int = DEFAULT_MAX_MEMORY
    seed: int = 0
    normalisation: Normalisation | None = None

    def __post_init__(self) -> None:
        if int(self.mc_samples) != self.mc_samples or self.mc_samples < 1:
            raise XrmError(
                f"MC-dropout samples must be an integer >= 1, got {self.mc_samples}."
            )

    def slice_axis(self, default: str) -> int:
        """The array axis (0..2) to slice along: :attr:`axis`, or when None
        ``default`` (a volume: the model's main training axis,
        :attr:`~napari_xrm_al.core.model.checkpoint.Checkpoint.trained_axes`)."""
        return axis_index(default if self.axis is None else self.axis)


@dataclass
class PredictionResult:
    """What :func:`predict_volume` returns.

    Attributes
    ----------
    summary
        Per-slice summaries (None when ``summaries=False``).
    class_fraction
        ``(C,)`` fraction of the predicted pixels given to each class.
    classes
        The model's class table.
    axis
        Slice axis name.
    n_slices
        Slices predicted.
    seconds
        Wall time of the run.
    precision
        ``'float32'`` or ``'bfloat16'``, as used.
    batch_size, slab
        Slices per batch and per slab.
    paths
        Outputs written, by kind (``'labels'``, ``'uncertainty'``, ``'probabilities'``).
    """

    summary: SliceSummary | None
    class_fraction: np.ndarray
    classes: ClassTable
    axis: str
    n_slices: int
    seconds: float
    precision: str
    batch_size: int
    slab: int
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def slices_per_second(self) -> float:
        return self.n_slices / self.seconds if self.seconds > 0 else float("inf")


def check_volume(data: Any) -> None:
    """:class:`XrmError` unless ``data`` is a non-empty 3D volume."""
    if len(getattr(data, "shape", ())) != 3 or 0 in data.shape:
        raise XrmError(
            f"Prediction needs a non-empty 3D (z, y, x) volume, got shape "
            f"{tuple(getattr(data, 'shape', ()))}."
        )


def _indices(indices: Sequence[int] | None, size: int, axis: str) -> np.ndarray:
    if indices is None:
        return np.arange(size)
    idx = np.unique(np.asarray(indices, dtype=np.int64).reshape(-1))
    if idx.size and (idx[0] < 0 or idx[-1] >= size):
        bad = idx[0] if idx[0] < 0 else idx[-1]
        raise XrmError(f"Slice {bad} is outside 0..{size - 1} along axis {axis}.")
    return idx


def batch_for(batch_size: int | None, hw: tuple[int, int]) -> int:
    """Slices per forward pass: ``batch_size`` or the default for slices ``hw``."""
    batch = int(batch_size or default_batch_size(hw))
    if batch < 1:
        raise XrmError(f"Batch size must be >= 1, got {batch_size}.")
    return batch


def memory_plan(
    segmenter: Segmenter,
    data: Any,
    axis: int,
    batch: int,
    max_memory: int,
) -> tuple[int, int, TilePlan | None]:
    """``(batch, slab, tiles)`` keeping one batch's forward pass and one slab
    within ``max_memory``; ``tiles`` is None unless one slice does not fit.

    :class:`XrmError` with the figures when neither fits (see
    :func:`~napari_xrm_al.core.inference.tiling.plan_tiles`).
    """
    check_chunks_fit(data, max_memory)
    hw = slice_shape(data.shape, axis)
    n_classes = len(segmenter.classes)
    fp = footprint(segmenter.model_config)
    per_pixel = pixel_bytes(fp, segmenter.context, data.dtype, n_classes)
    per_slice = per_slice_bytes(hw, data.dtype, n_classes)
    forward = per_pixel * math.prod(hw)  # one slice's forward pass
    if forward + per_slice > max_memory:
        return 1, 1, plan_tiles(hw, fp, per_pixel, max_memory, "predict")
    batch = int(min(batch, max(1, (max_memory - per_slice) // forward)))
    slab = slab_size(data, axis, batch, per_slice, int(max_memory - batch * forward))
    return batch, slab, None


def calibrate(
    engine: SliceInference,
    data: Any,
    axis: int,
    indices: np.ndarray,
    batch: int,
    context: int,
) -> None:
    """Resolve ``'auto'`` precision on the middle batch of ``indices``."""
    if engine.precision is None and indices.size:
        middle = indices[indices.size // 2 : indices.size // 2 + batch]
        engine.calibrate(engine.prepare(read_slices(data, middle, axis, context)))


def open_outputs(
    ckpt: Checkpoint,
    shape: tuple[int, int, int],
    config: PredictConfig,
    targets: tuple[Any, Any, Any],
    *,
    voxel_size: tuple[float, ...] | None,
    provenance: dict[str, Any] | None,
    max_memory: int | None = None,
) -> PredictionOutputs:
    """The outputs of a prediction of a ``shape`` volume as ``config`` says.

    ``targets`` are the class map, uncertainty and probabilities outputs
    (:class:`~napari_xrm_al.core.inference.prediction_outputs.PredictionOutputs`),
    ``voxel_size`` and ``provenance`` their metadata and ``max_memory`` the
    limit of a TIFF class map's page (None: no limit).
    """
    axis = config.slice_axis(ckpt.trained_axes[0])
    record = {
        "made_by": "napari-xrm-al predict",
        "axis": axis_name(axis),
        "mc_samples": int(config.mc_samples),
        "model": ckpt.provenance,
        **(provenance or {}),
    }
    return PredictionOutputs(
        *targets,
        shape=shape,
        axis=axis,
        classes=ckpt.classes,
        voxel_size=voxel_size,
        provenance=record,
        max_memory=max_memory,
    )


def predict_volume(
    segmenter: Segmenter,
    data: Any,
    config: PredictConfig | None = None,
    *,
    out: Any = None,
    uncertainty_out: Any = None,
    probabilities_out: Any = None,
    indices: Sequence[int] | None = None,
    voxel_size: tuple[float, ...] | None = None,
    provenance: dict[str, Any] | None = None,
) -> Generator[Progress, None, PredictionResult]:
    """Predict ``data`` slice by slice; yields :class:`Progress` per batch.

    Also the method :meth:`Segmenter.predict_volume
    <napari_xrm_al.core.inference.segmenter.Segmenter.predict_volume>`
    (``segmenter.predict_volume(data, ...)``).

    Parameters
    ----------
    segmenter
        The network with its checkpoint (normalisation, classes, context).
    data
        Lazy ``(z, y, x)`` array-like (numpy, memmap, zarr, dask, TIFF store).
    config
        How to predict; None: the defaults of :class:`PredictConfig`.
    out
        Class map (annotation ids ``1..C``): a ``.ome.zarr``/``.zarr``/``.tif``
        path, or an array-like to fill. Unscored slices are left as they are.
    uncertainty_out, probabilities_out
        ``.zarr`` paths (``uint8``, value × 255) or arrays to fill with
        entropy / ln C ``(z, y, x)`` and probabilities ``(C, z, y, x)``.
    indices
        Slices to predict (default all); e.g. acquisition scoring a subset.
    voxel_size, provenance
        Metadata for outputs given as paths.

    Returns
    -------
    PredictionResult
        As ``StopIteration.value``. Outputs given as paths are committed only
        at the end; closing the generator early (or an error) removes them.
    """
    config = config or PredictConfig()
    check_volume(data)
    ax = config.slice_axis(segmenter.checkpoint.trained_axes[0])
    name = axis_name(ax)
    shape = tuple(int(s) for s in data.shape)
    hw = slice_shape(shape, ax)
    idx = _indices(indices, shape[ax], name)
    context = segmenter.context
    n_classes = len(segmenter.classes)
    batch, slab, tiles = memory_plan(
        segmenter, data, ax, batch_for(config.batch_size, hw), int(config.max_memory)
    )
    if np.dtype(data.dtype).kind == "f":
        check_finite_sample(data)
    engine = segmenter.inference(
        config.device, config.precision, config.tta, config.normalisation
    )
    outputs = open_outputs(
        segmenter.checkpoint,
        shape,
        config,
        (out, uncertainty_out, probabilities_out),
        voxel_size=voxel_size,
        provenance=provenance,
        max_memory=config.max_memory,
    )
    counts = np.zeros(n_classes, dtype=np.float64)
    t0 = time.perf_counter()
    try:
        with engine:
            if tiles is None:
                calibrate(engine, data, ax, idx, batch, context)
                run = predict_slabs(
                    engine,
                    data,
                    ax,
                    idx,
                    context,
                    batch,
                    slab,
                    outputs,
                    counts,
                    config,
                )
            else:
                map_large_allocations()  # keeps the peak within the limit
                if idx.size:
                    middle = int(idx[idx.size // 2])
                    calibrate_tiled(engine, data, ax, middle, context, tiles)
                run = predict_tiled(
                    engine, data, ax, idx, context, tiles, outputs, counts, config
                )
            parts = yield from run
        outputs.commit()
    except BaseException:
        outputs.abort()
        raise
    return PredictionResult(
        summary=SliceSummary.concat(parts) if parts else None,
        class_fraction=counts / max(1.0, counts.sum()),
        classes=segmenter.classes,
        axis=name,
        n_slices=int(idx.size),
        seconds=time.perf_counter() - t0,
        precision=engine.precision or "float32",
        batch_size=batch,
        slab=slab,
        paths=outputs.paths,
    )
