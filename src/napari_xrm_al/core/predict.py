"""Whole-volume prediction, streamed slab by slab over a lazy volume.

A volume larger than memory is never loaded whole: slices are read along the
slice axis in *slabs* (a few dozen slices plus the 2.5D context neighbours),
predicted in batches (:class:`~napari_xrm_al.core.inference.SliceInference`),
summarised per slice (:mod:`~napari_xrm_al.core.summaries`) and written slab by
slab to the outputs (:mod:`~napari_xrm_al.core.prediction_outputs`), which only
appear under their final names when the whole run succeeded.

Slab size: a multiple of the batch size covering at least one stored chunk
along the slice axis (so each chunk is decompressed once), capped by
``max_memory``. Predicting along ``y`` or ``x`` on a volume chunked in ``z``
reads whole ``(z, slab, x)`` boxes: cheap when the slab covers the store's chunk
depth along that axis, otherwise every chunk is decompressed
``chunk depth / slab`` times (a TIFF stored page by page is read in full once
per slab along ``y`` or ``x``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_xrm_al.core.checkpoint import Checkpoint
from napari_xrm_al.core.classes import ClassTable
from napari_xrm_al.core.events import Progress
from napari_xrm_al.core.inference import SliceInference, default_batch_size
from napari_xrm_al.core.prediction_outputs import PredictionOutputs
from napari_xrm_al.core.process_memory import trim_heap
from napari_xrm_al.core.slices import (
    axis_index,
    axis_name,
    read_planes,
    read_slices,
    slice_shape,
)
from napari_xrm_al.core.summaries import (
    PixelStats,
    SliceSummary,
    mutual_information,
    pixel_stats,
    summarise,
)
from napari_xrm_al.errors import XrmError
from napari_xrm_al.io.volumes import chunk_shape

#: Default cap on the memory held by one slab (raw slices, context, outputs).
DEFAULT_MAX_MEMORY = 256 * 2**20
#: Batches of at least this many pixels return freed memory after each batch,
#: smaller ones once per slab: large buffers fragment glibc's heap (+100 MB of
#: peak on 1024² slices), while trimming often costs time on small ones.
TRIM_EACH_BATCH_PIXELS = 2**20
#: Slabs cover at least this many slices when memory allows (fewer re-reads
#: of context neighbours on page-per-slice TIFF stacks).
MIN_SLAB = 32


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


def _check(model: nn.Module, ckpt: Checkpoint, data: Any, mc_samples: int) -> None:
    if ckpt.kind != "segmenter" or ckpt.classes is None:
        raise XrmError(
            f"Prediction needs a trained segmenter, not an {ckpt.kind} checkpoint."
        )
    cfg = getattr(model, "cfg", None)
    if cfg is not None and cfg != ckpt.model_config:
        raise XrmError("The model does not match its checkpoint's configuration.")
    if len(getattr(data, "shape", ())) != 3 or 0 in data.shape:
        raise XrmError(
            f"Prediction needs a non-empty 3D (z, y, x) volume, got shape "
            f"{tuple(getattr(data, 'shape', ()))}."
        )
    if int(mc_samples) != mc_samples or mc_samples < 1:
        raise XrmError(f"MC-dropout samples must be an integer >= 1, got {mc_samples}.")


def _indices(indices: Sequence[int] | None, size: int, axis: str) -> np.ndarray:
    if indices is None:
        return np.arange(size)
    idx = np.unique(np.asarray(indices, dtype=np.int64).reshape(-1))
    if idx.size and (idx[0] < 0 or idx[-1] >= size):
        bad = idx[0] if idx[0] < 0 else idx[-1]
        raise XrmError(f"Slice {bad} is outside 0..{size - 1} along axis {axis}.")
    return idx


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


def _mc_bald(
    engine: SliceInference, x: torch.Tensor, samples: int, seed: int
) -> np.ndarray:
    """Per-slice mean BALD of ``samples`` MC-dropout passes, reproducible per batch."""
    devices = [engine.device] if engine.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        mc = engine.mc_probabilities(x, samples)
    return mutual_information(mc).flatten(1).mean(1).double().cpu().numpy()


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
        bald=_mc_bald(engine, x, mc_samples, seed) if mc_samples > 1 else None,
        embedding=engine.embeddings(x).cpu().numpy() if embeddings else None,
    )


def batch_for(batch_size: int | None, hw: tuple[int, int]) -> int:
    """Slices per forward pass: ``batch_size`` or the default for slices ``hw``."""
    batch = int(batch_size or default_batch_size(hw))
    if batch < 1:
        raise XrmError(f"Batch size must be >= 1, got {batch_size}.")
    return batch


def per_slice_bytes(hw: tuple[int, int], dtype: Any, n_classes: int) -> int:
    """Slab memory per slice: its raw plane (read, and decoded into) and outputs."""
    return hw[0] * hw[1] * (2 * np.dtype(dtype).itemsize + 2 + n_classes)


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
    axis: int,
    *,
    out: Any,
    uncertainty_out: Any,
    probabilities_out: Any,
    mc_samples: int,
    voxel_size: tuple[float, ...] | None,
    provenance: dict[str, Any] | None,
) -> PredictionOutputs:
    """The outputs of a prediction of a ``shape`` volume along ``axis``."""
    record = {
        "made_by": "napari-xrm-al predict",
        "axis": axis_name(axis),
        "mc_samples": int(mc_samples),
        "model": ckpt.provenance,
        **(provenance or {}),
    }
    return PredictionOutputs(
        out,
        uncertainty_out,
        probabilities_out,
        shape=shape,
        axis=axis,
        classes=ckpt.classes,
        voxel_size=voxel_size,
        provenance=record,
    )


def predict_volume(
    model: nn.Module,
    ckpt: Checkpoint,
    data: Any,
    *,
    axis: str | int | None = None,
    batch_size: int | None = None,
    out: Any = None,
    probabilities_out: Any = None,
    uncertainty_out: Any = None,
    mc_samples: int = 1,
    summaries: bool = True,
    embeddings: bool = True,
    indices: Sequence[int] | None = None,
    device: str | torch.device | None = None,
    precision: str = "auto",
    tta: str = "none",
    max_memory: int = DEFAULT_MAX_MEMORY,
    seed: int = 0,
    voxel_size: tuple[float, ...] | None = None,
    provenance: dict[str, Any] | None = None,
) -> Generator[Progress, None, PredictionResult]:
    """Predict ``data`` slice by slice; yields :class:`Progress` per batch.

    Parameters
    ----------
    model, ckpt
        The segmenter and its checkpoint (normalisation, classes, context).
    data
        Lazy ``(z, y, x)`` array-like (numpy, memmap, zarr, dask, TIFF store).
    axis
        Slice axis; default the checkpoint's.
    batch_size
        Slices per forward pass; default about 4 slices of 256².
    out
        Class map (annotation ids ``1..C``): a ``.ome.zarr``/``.zarr``/``.tif``
        path, or an array-like to fill. Unscored slices are left as they are.
    probabilities_out, uncertainty_out
        ``.zarr`` paths (``uint8``, value × 255) or arrays to fill with
        probabilities ``(C, z, y, x)`` and entropy / ln C ``(z, y, x)``.
    mc_samples
        T > 1 adds BALD from T MC-dropout passes (besides the deterministic
        pass that gives everything else).
    summaries, embeddings
        Compute per-slice summaries, and encoder embeddings in them.
    indices
        Slices to predict (default all); e.g. acquisition scoring a subset.
    device, precision, tta
        See :class:`~napari_xrm_al.core.inference.SliceInference`; ``tta``
        (test-time augmentation) multiplies the cost by 4 or 8.
    max_memory
        Bytes one slab may hold (the volume is never read whole).
    seed
        Seed of the MC-dropout masks.
    voxel_size, provenance
        Metadata for outputs given as paths.

    Returns
    -------
    PredictionResult
        As ``StopIteration.value``. Outputs given as paths are committed only
        at the end; closing the generator early (or an error) removes them.
    """
    _check(model, ckpt, data, mc_samples)
    ax = axis_index(ckpt.axis if axis is None else axis)
    name = axis_name(ax)
    shape = tuple(int(s) for s in data.shape)
    hw = slice_shape(shape, ax)
    idx = _indices(indices, shape[ax], name)
    context = ckpt.model_config.context
    n_classes = len(ckpt.classes)
    batch = batch_for(batch_size, hw)
    per_slice = per_slice_bytes(hw, data.dtype, n_classes)
    slab = slab_size(data, ax, batch, per_slice, int(max_memory))
    per_plane = chunk_shape(data)[ax] == 1
    trim_each_batch = batch * math.prod(hw) >= TRIM_EACH_BATCH_PIXELS
    engine = SliceInference(model, ckpt.normalisation, device, precision, tta)
    outputs = open_outputs(
        ckpt,
        shape,
        ax,
        out=out,
        uncertainty_out=uncertainty_out,
        probabilities_out=probabilities_out,
        mc_samples=mc_samples,
        voxel_size=voxel_size,
        provenance=provenance,
    )
    parts: list[SliceSummary] = []
    counts = np.zeros(n_classes, dtype=np.float64)
    t0, done = time.perf_counter(), 0
    try:
        with engine:
            calibrate(engine, data, ax, idx, batch, context)
            for group in _groups(idx, slab):
                needed, planes = _read_planes(data, ax, group, context, per_plane)
                outputs.start(len(group), hw)
                for b0 in range(0, len(group), batch):
                    raw = _stacks(
                        needed, planes, group[b0 : b0 + batch], context, shape[ax]
                    )
                    x = engine.prepare(raw)
                    del raw
                    stats = pixel_stats(engine.probabilities(x))
                    outputs.fill(b0, stats)
                    first = int(group[b0])
                    if summaries:
                        parts.append(
                            _summary(
                                engine,
                                x,
                                stats,
                                group[b0 : b0 + batch],
                                mc_samples,
                                seed + first,
                                embeddings,
                            )
                        )
                    counts += np.bincount(
                        stats.label.flatten().cpu().numpy(), minlength=n_classes
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
                        message=f"{name} {first}, {engine.precision}",
                    )
                outputs.flush(group)
                del planes
                trim_heap()
        outputs.commit()
    except BaseException:
        outputs.abort()
        raise
    return PredictionResult(
        summary=SliceSummary.concat(parts) if parts else None,
        class_fraction=counts / max(1.0, counts.sum()),
        classes=ckpt.classes,
        axis=name,
        n_slices=done,
        seconds=time.perf_counter() - t0,
        precision=engine.precision or "float32",
        batch_size=batch,
        slab=slab,
        paths=outputs.paths,
    )


def predict_slices(
    model: nn.Module,
    ckpt: Checkpoint,
    data: Any,
    indices: Sequence[int],
    axis: str | int | None = None,
    *,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    precision: str = "auto",
    tta: str = "none",
) -> np.ndarray:
    """Class probabilities ``(N, C, H, W)`` (float32) of slices ``indices``, in order.

    For small uses (tests, simulation); volumes go through :func:`predict_volume`.
    """
    _check(model, ckpt, data, 1)
    ax = axis_index(ckpt.axis if axis is None else axis)
    raw = read_slices(data, indices, ax, ckpt.model_config.context)
    batch = int(batch_size or default_batch_size(raw.shape[-2:]))
    with SliceInference(model, ckpt.normalisation, device, precision, tta) as engine:
        if engine.precision is None and len(raw):
            middle = len(raw) // 2
            engine.calibrate(engine.prepare(raw[middle : middle + batch]))
        parts = [
            engine.probabilities(engine.prepare(raw[i : i + batch])).cpu().numpy()
            for i in range(0, len(raw), batch)
        ]
    if not parts:
        return np.zeros((0, len(ckpt.classes), *raw.shape[-2:]), np.float32)
    return np.concatenate(parts)
