"""Ranking every slice of a scan for labelling, from a model or the encoder.

What "Suggest slices" (through :func:`~napari_xrm_al.core.session.jobs.rank_session`)
and ``napari-xrm-al rank`` run: one prediction pass
per slice axis gives per-slice summaries (cached in the session against the
model file), an acquisition strategy scores them, and the batch picker takes
the next slices. Before any model is trained, the pretrained encoder's
embeddings pick the first slices (core-set).

Candidates may lie along z, y and x at once. Every summary is a mean over a
slice's pixels (entropy, margin, class fractions), so slices of different
sizes compare on the same scale; slices are identified by their codes
(:mod:`~napari_xrm_al.core.slice_refs`) from the summaries on.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace
from functools import cache, cached_property
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from napari_xrm_al.core.al.acquisition import (
    DEFAULT_MIN_DISTANCE,
    AcquisitionContext,
    Pick,
    select,
)
from napari_xrm_al.core.al.discovery import DiscoveryPlan
from napari_xrm_al.core.al.first_picks import first_picks
from napari_xrm_al.core.events import Progress, one_of_parts
from napari_xrm_al.core.inference.embedding import embed_slices
from napari_xrm_al.core.inference.predict import DEFAULT_MAX_MEMORY, PredictConfig
from napari_xrm_al.core.inference.segmenter import Segmenter
from napari_xrm_al.core.inference.summaries import SliceSummary, read_arrays
from napari_xrm_al.core.model.checkpoint import Checkpoint, load_checkpoint
from napari_xrm_al.core.model.normalization import Normalisation
from napari_xrm_al.core.slice_refs import SliceRef, ref_of_code, slice_codes
from napari_xrm_al.core.slices import axis_index, axis_name
from napari_xrm_al.errors import InputError
from napari_xrm_al.io.atomic import atomic_path

#: MC-dropout passes used when a strategy needs BALD.
BALD_SAMPLES = 8

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass
class Ranking:
    """Scores of every slice and the picked batch.

    ``index`` holds slice codes (:attr:`refs`: the slices by axis and index).
    ``class_fraction`` and ``mean_entropy`` are None for first picks made from
    the pretrained encoder alone (:func:`first_ranking`); ``plan`` says how a
    discovery strategy split the batch (None for the others).
    """

    strategy: str
    index: np.ndarray
    scores: np.ndarray
    picks: list[Pick]
    class_fraction: np.ndarray | None
    mean_entropy: np.ndarray | None
    model: str
    plan: DiscoveryPlan | None = None

    @cached_property
    def refs(self) -> list[SliceRef]:
        """The scored slices, aligned with :attr:`scores` (decoded once)."""
        return [ref_of_code(c) for c in self.index]

    @property
    def axes(self) -> list[str]:
        """Names of the axes scored, in z, y, x order."""
        return [axis_name(a) for a in sorted({r.axis for r in self.refs})]


def _coded(index: np.ndarray, axis: int) -> np.ndarray:
    """Slice codes of ``index`` along ``axis``."""
    return slice_codes(SliceRef(axis, int(i)) for i in index)


def _file_key(path: Path, *parts: Any) -> str:
    digest = hashlib.sha256(path.read_bytes())
    digest.update(repr(parts).encode())
    return digest.hexdigest()[:16]


def summarise(
    model_path: Path | None,
    image_data: Any,
    *,
    axes: Sequence[str | int] | None = None,
    mc_samples: int = 1,
    cache_dir: Path | None = None,
    device: str | torch.device | None = None,
    checkpoint: Checkpoint | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
    normalisation: Normalisation | None = None,
) -> Generator[Progress, None, SliceSummary]:
    """Per-slice prediction summaries of every slice along ``axes`` (default:
    the model's axis), indexed by slice code; cached per model file and axis.

    ``checkpoint``: the model already read from ``model_path``, if the caller
    has it (then ``model_path`` may be None without ``cache_dir``);
    ``mc_samples``, ``device``, ``max_memory``, ``normalisation`` (not part of
    the cache key: a project's scan is its model's): see
    :class:`~napari_xrm_al.core.inference.predict.PredictConfig`.
    """
    # The model is read once, if some axis is not cached; the precision its first
    # pass chose is kept: one model on one volume is calibrated once, not per axis.
    model = cache(
        lambda: Segmenter.from_checkpoint(
            model_path, device=device, checkpoint=checkpoint
        )
    )
    precision = "auto"

    def predict(ax: int | None) -> Generator[Progress, None, SliceSummary]:
        nonlocal precision
        segmenter = model()
        along = axis_index(segmenter.axis) if ax is None else ax
        config = PredictConfig(
            axis=along, mc_samples=mc_samples, device=device, max_memory=max_memory,
            precision=precision, normalisation=normalisation,
        )  # fmt: skip
        result = yield from segmenter.predict_volume(image_data, config)
        precision = result.precision
        return replace(result.summary, index=_coded(result.summary.index, along))

    parts = yield from _per_axis(
        axes,
        image_data.shape,
        lambda ax: (
            cache_dir / f"summary-{_file_key(model_path, mc_samples, ax)}.npz"
            if cache_dir is not None
            else None
        ),
        SliceSummary.load,
        lambda summary, path: summary.save(path),
        predict,
    )
    return SliceSummary.concat(parts)


def _per_axis(
    axes: Sequence[str | int] | None,
    shape: Sequence[int],
    cache_for: Callable[[int | None], Path | None],
    load: Callable[[Path], T],
    save: Callable[[T, Path], Any],
    compute: Callable[[int | None], Generator[Progress, None, T]],
) -> Generator[Progress, None, list[T]]:
    """``compute(axis)`` for each of ``axes`` (in z, y, x order; None: once,
    for the model's own axis), read from and written to ``cache_for(axis)``
    (a file that holds slice codes, so it never depends on the default axis).
    Several axes make one progress bar over the slices of all (``shape``)."""
    parts = []
    order = sorted({axis_index(a) for a in axes}) if axes else [None]
    sizes = [shape[a] for a in order if a is not None]
    for i, ax in enumerate(order):
        cache = cache_for(ax)
        part = _read_cache(cache, load) if cache is not None else None
        if part is None:
            job = compute(ax)
            if len(order) > 1:
                job = one_of_parts(job, sizes, i, f"along {axis_name(ax)}")
            part = yield from job
            if cache is not None:
                cache.parent.mkdir(exist_ok=True)
                save(part, cache)
        parts.append(part)
    return parts


def rank_summary(
    summary: SliceSummary,
    strategy: str,
    k: int,
    *,
    labelled: Sequence[int],
    labelled_counts: np.ndarray,
    min_distance: int = DEFAULT_MIN_DISTANCE,
    seed: int = 0,
    model: str = "",
) -> Ranking:
    """Score every slice of ``summary`` with ``strategy`` and pick ``k``.

    ``labelled``: slice codes, like ``summary.index``.
    """
    ctx = AcquisitionContext.from_summary(
        summary, labelled_counts, labelled=list(labelled), seed=seed
    )
    scores, picks, plan = select(strategy, ctx, k, min_distance=min_distance)
    return Ranking(
        strategy=strategy,
        index=ctx.index,
        scores=scores,
        picks=picks,
        class_fraction=ctx.class_fraction,
        mean_entropy=ctx.mean_entropy,
        model=model,
        plan=plan,
    )


def first_ranking(
    encoder_path: Path | None,
    image_data: Any,
    k: int,
    *,
    axes: Sequence[str | int] | None = None,
    labelled: Sequence[int] = (),
    min_distance: int = DEFAULT_MIN_DISTANCE,
    cache_dir: Path | None = None,
    device: str | torch.device | None = None,
    model: str = "",
    checkpoint: Checkpoint | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
) -> Generator[Progress, None, Ranking]:
    """Slices to label first, from a pretrained encoder: core-set on its
    embeddings, weighted by each slice's feature spread (:func:`first_picks`).

    Candidates are the slices along ``axes`` (default: the encoder's axis);
    ``labelled`` are slice codes. Each slice's score is its embedding distance
    to the nearest labelled or picked slice. Embeddings are cached per encoder
    file and axis in ``cache_dir``.
    ``checkpoint``: the encoder already read from ``encoder_path``, if the
    caller has it (then ``encoder_path`` may be None without ``cache_dir``);
    ``max_memory``: see :func:`~napari_xrm_al.core.inference.embedding.embed_slices`.
    """

    # Read once, if some axis is not cached.
    encoder = cache(lambda: checkpoint or load_checkpoint(encoder_path))

    def embed(ax: int | None) -> Generator[Progress, None, dict[str, np.ndarray]]:
        ckpt = encoder()
        along = axis_index(ckpt.axis) if ax is None else ax
        index, embedding, spread = yield from embed_slices(
            ckpt, image_data, axis=along, device=device, max_memory=max_memory
        )
        return {"index": _coded(index, along), "embedding": embedding, "spread": spread}

    def save(part: dict[str, np.ndarray], path: Path) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **part)

    parts = yield from _per_axis(
        axes,
        image_data.shape,
        lambda ax: (
            cache_dir / f"embedding-{_file_key(encoder_path, ax)}.npz"
            if cache_dir is not None
            else None
        ),
        _load_embedding,
        save,
        embed,
    )
    index = np.concatenate([p["index"] for p in parts])
    embedding = np.concatenate([p["embedding"] for p in parts])
    spread = np.concatenate([p["spread"] for p in parts])
    scores, picks = first_picks(
        index,
        embedding,
        k,
        spread=spread,
        labelled=labelled,
        min_distance=min_distance,
    )
    return Ranking("coreset", index, scores, picks, None, None, model)


def _load_embedding(path: Path) -> dict[str, np.ndarray]:
    """The cached ``index``, ``embedding`` and ``spread`` of
    :func:`first_ranking` (a cache without ``spread``, from an older version,
    is recomputed)."""
    return read_arrays(path, ("index", "embedding", "spread"), "an embedding cache")


def _read_cache(path: Path, read: Callable[[Path], T]) -> T | None:
    """What ``read`` gets from the cache file ``path``; None when the file is
    absent or unreadable (truncated, damaged: one warning), so the caller
    recomputes it and overwrites the file."""
    if not path.is_file():
        return None
    try:
        return read(path)
    except InputError as exc:
        log.warning("%s; it is recomputed and overwritten", exc)
        return None
