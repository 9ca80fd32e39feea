"""Whole-volume prediction as chunk-parallel tasks on a dask cluster.

:func:`predict_volume_dask` splits the slice axis into parts aligned to the
output chunks and runs one task per part on ``dask.distributed`` workers: a
local cluster started for the run, or an existing one (``tcp://host:8786``)
for scans that outgrow one machine. Each task runs
:meth:`~napari_xrm_al.core.inference.segmenter.Segmenter.predict_volume` on its
slices with the run's :class:`~napari_xrm_al.core.inference.predict.PredictConfig`,
so the result is the same as a single-process run, slice for slice.

Nothing large travels through the scheduler: each worker opens the image and
the model **from their paths** (cached per worker thread) and writes its part
straight into the output stores, which are created (hidden) by the caller and
renamed into place only when every part is done. The paths must therefore be
the same, readable and writable, on the workers and on the caller (one
machine, or a shared file system).
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from collections.abc import Generator, Sequence
from contextlib import closing, suppress
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from napari_xrm_al.core.events import Progress, run_to_end
from napari_xrm_al.core.inference.predict import (
    PredictConfig,
    PredictionResult,
    batch_for,
    calibrate,
    open_outputs,
)
from napari_xrm_al.core.inference.segmenter import Segmenter
from napari_xrm_al.core.inference.slab_prediction import MIN_SLAB
from napari_xrm_al.core.inference.summaries import SliceSummary
from napari_xrm_al.core.model.checkpoint import load_checkpoint
from napari_xrm_al.core.model.normalization import Normalisation
from napari_xrm_al.core.slices import axis_name, slice_shape
from napari_xrm_al.errors import InputError, XrmError
from napari_xrm_al.io.array_reads import chunk_shape
from napari_xrm_al.io.volumes import Volume, open_volume

#: Seconds to wait for running tasks to notice a cancellation.
CANCEL_TIMEOUT_S = 120.0
#: What :func:`predict_volume_dask` does unless told: no per-slice summaries.
DASK_CONFIG = PredictConfig(summaries=False, embeddings=False)


class Cancelled(Exception):
    """Raised in a task whose run was cancelled."""


# -- worker side ------------------------------------------------------------
def _stamp(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


@lru_cache(maxsize=4)
def _cached_model(
    path: str, stamp: int, device: str | torch.device | None, thread: int
) -> Segmenter:
    segmenter = Segmenter.from_checkpoint(path, device=device)
    # Kept channels-last so SliceInference has nothing to convert per task.
    segmenter.net.to(memory_format=torch.channels_last)
    return segmenter


@lru_cache(maxsize=4)
def _cached_volume(path: str, stamp: int) -> Volume:
    return open_volume(path)


def _where() -> str:
    from distributed import get_worker

    try:
        return f"dask worker {get_worker().address}"
    except ValueError:  # not in a worker (synchronous debugging)
        return "this process"


def _open(
    model_path: str, image_path: str, device: str | torch.device | None
) -> tuple[Segmenter, Volume]:
    """The segmenter and volume of a task, opened once per worker thread."""
    try:
        segmenter = _cached_model(
            model_path, _stamp(model_path), device, threading.get_ident()
        )
        volume = _cached_volume(image_path, _stamp(image_path))
    except InputError as exc:
        raise XrmError(
            f"On {_where()}: {exc} Workers need the image, model and outputs at "
            "the same paths as this machine (e.g. on a shared file system)."
        ) from None
    return segmenter, volume


def _set_threads(threads: int | None) -> None:
    from distributed import get_worker

    if threads is None:
        try:
            per_worker = get_worker().state.nthreads
        except ValueError:
            per_worker = 1
        threads = max(1, (os.cpu_count() or 1) // per_worker)
    torch.set_num_threads(threads)


def _calibrate_task(
    model_path: str,
    image_path: str,
    axis: int,
    indices: np.ndarray,
    batch: int,
    device: str | torch.device | None,
    threads: int | None,
    normalisation: Normalisation | None,
) -> str:
    """The precision ``'auto'`` resolves to, decided once for every task."""
    _set_threads(threads)
    segmenter, volume = _open(model_path, image_path, device)
    with segmenter.inference(device, "auto", normalisation=normalisation) as engine:
        calibrate(engine, volume.data, axis, indices, batch, segmenter.context)
    return str(engine.precision)


def _predict_task(
    model_path: str,
    image_path: str,
    indices: np.ndarray,
    targets: dict[str, zarr.Array],
    shape: tuple[int, ...],
    cancel: str | None,
    config: PredictConfig,
    threads: int | None,
) -> PredictionResult:
    """Predict slices ``indices`` into ``targets`` (their own chunks only)."""
    from distributed import Event

    event = Event(cancel) if cancel else None
    if event is not None and event.is_set():
        raise Cancelled
    _set_threads(threads)
    segmenter, volume = _open(model_path, image_path, config.device)
    if volume.shape != shape:
        raise XrmError(
            f"On {_where()}, {image_path} has shape {volume.shape}, not {shape}: "
            "the workers see another file at that path."
        )

    def stop_when_cancelled(_: Progress) -> None:
        if event is not None and event.is_set():
            raise Cancelled

    run = segmenter.predict_volume(
        volume.data,
        config,
        out=targets.get("labels"),
        uncertainty_out=targets.get("uncertainty"),
        probabilities_out=targets.get("probabilities"),
        indices=indices,
    )
    with closing(run):
        return run_to_end(run, stop_when_cancelled)


# -- caller side ------------------------------------------------------------
def part_size(
    targets: dict[str, zarr.Array],
    axis: int,
    batch: int,
    image_chunks: Sequence[int],
    slab: int | None = None,
) -> int:
    """Slices per task: whole output chunks and whole batches along ``axis``.

    Parts start at multiples of the output chunk depth (no two tasks write one
    chunk) and of ``batch`` (batches hold the same slices as in one process).
    The default covers the image's chunk depth, and at least
    :data:`~napari_xrm_al.core.inference.slab_prediction.MIN_SLAB` slices.
    """
    unit = batch
    for kind, array in targets.items():
        unit = math.lcm(unit, int(array.chunks[axis + (kind == "probabilities")]))
    want = slab or max(int(image_chunks[axis]), MIN_SLAB)
    return unit * max(1, math.ceil(want / unit))


def _combine(results: list[PredictionResult]) -> tuple[SliceSummary | None, Any]:
    results = sorted(results, key=lambda r: r.summary.index[0] if r.summary else 0)
    parts = [r.summary for r in results if r.summary is not None]
    total = sum(r.n_slices for r in results)
    fraction = sum(r.class_fraction * r.n_slices for r in results) / max(1, total)
    return (SliceSummary.concat(parts) if parts else None), fraction


def _stop(client: Any, futures: list, event: Any) -> None:
    """Ask running tasks to stop, wait until they have, drop the rest."""
    from distributed import wait

    event.set()
    with suppress(TimeoutError):
        wait(futures, timeout=CANCEL_TIMEOUT_S)
    client.cancel(futures)


def predict_volume_dask(
    model_path: str | os.PathLike[str],
    image_path: str | os.PathLike[str],
    config: PredictConfig | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    uncertainty_out: str | os.PathLike[str] | None = None,
    probabilities_out: str | os.PathLike[str] | None = None,
    client: Any = None,
    n_workers: int = 2,
    torch_threads: int | None = None,
    slab: int | None = None,
    provenance: dict[str, Any] | None = None,
) -> Generator[Progress, None, PredictionResult]:
    """Predict a volume chunk-parallel on dask workers; yields :class:`Progress`.

    Parameters
    ----------
    model_path, image_path
        A trained segmenter and the scan, opened by every worker from these
        paths (which must be the same for the workers as here).
    config
        How every task predicts, as in one process; None:
        :data:`DASK_CONFIG` (no per-slice summaries). ``'auto'`` precision is
        resolved once, on a worker, and used by every task.
    out, uncertainty_out, probabilities_out
        Output paths as in :func:`~napari_xrm_al.core.inference.predict.predict_volume`;
        they appear only when every part has been written.
    client
        A ``distributed.Client`` of an existing cluster; None starts a
        ``LocalCluster`` of ``n_workers`` processes for the run.
    torch_threads
        Torch threads per task; default the CPU cores of a worker's machine
        divided by its task threads (by ``n_workers`` for the local cluster).
    slab
        Slices per task, rounded up to whole output chunks and batches
        (:func:`part_size`).
    provenance
        Metadata of the outputs.

    Returns
    -------
    PredictionResult
        As ``StopIteration.value``, as a single-process run would give it.
        Closing the generator early (or an error) stops the tasks and removes
        the outputs.
    """
    from distributed import Client, Event, LocalCluster, as_completed

    t0 = time.perf_counter()
    model_path, image_path = (
        str(Path(model_path).absolute()),
        str(Path(image_path).absolute()),
    )
    config = config or DASK_CONFIG
    ckpt = load_checkpoint(model_path, "segmenter")
    volume = open_volume(image_path, max_memory=config.max_memory)
    ax = config.slice_axis(ckpt.trained_axes[0])
    shape = volume.shape
    batch = batch_for(config.batch_size, slice_shape(shape, ax))
    precision = config.precision
    own = None
    if client is None:
        own = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        client = Client(own)
        if torch_threads is None:  # the workers share this machine's cores
            torch_threads = max(1, (os.cpu_count() or 1) // n_workers)
    event = Event(f"napari-xrm-al-cancel-{uuid.uuid4().hex}", client=client)
    futures: list = []
    outputs = None
    try:
        if precision == "auto":
            yield Progress("predict", 0, shape[ax], message="choosing the precision")
            precision = client.submit(
                _calibrate_task,
                model_path,
                image_path,
                ax,
                np.arange(shape[ax]),
                batch,
                config.device,
                torch_threads,
                config.normalisation,
                pure=False,
            ).result()
        outputs = open_outputs(
            ckpt,
            shape,
            config,
            (out, uncertainty_out, probabilities_out),
            voxel_size=volume.voxel_size,
            provenance=provenance,
        )
        targets = outputs.arrays()
        step = part_size(targets, ax, batch, chunk_shape(volume.data), slab)
        every_task = replace(config, axis=ax, batch_size=batch, precision=precision)
        futures = [
            client.submit(
                _predict_task,
                model_path,
                image_path,
                np.arange(start, min(start + step, shape[ax])),
                targets,
                shape,
                event.name,
                every_task,
                torch_threads,
                pure=False,
            )
            for start in range(0, shape[ax], step)
        ]
        results, done = [], 0
        for future in as_completed(futures):
            results.append(future.result())
            done += results[-1].n_slices
            elapsed = time.perf_counter() - t0
            yield Progress(
                "predict",
                done,
                shape[ax],
                eta_seconds=elapsed / done * (shape[ax] - done),
                message=f"{len(results)}/{len(futures)} parts, {precision}",
            )
        outputs.commit()
    except BaseException:
        _stop(client, futures, event)
        if outputs is not None:
            outputs.abort()
        raise
    finally:
        event.clear()
        if own is not None:
            client.close()
            own.close()
    summary, fraction = _combine(results)
    return PredictionResult(
        summary=summary,
        class_fraction=fraction,
        classes=ckpt.classes,
        axis=axis_name(ax),
        n_slices=done,
        seconds=time.perf_counter() - t0,
        precision=precision,
        batch_size=batch,
        slab=step,
        paths=outputs.paths,
    )
