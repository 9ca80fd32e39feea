"""Ranking every slice of a scan for labelling, from a model or the encoder.

What "Suggest slices" and ``napari-xrm-al rank`` run: one prediction pass
gives per-slice summaries (cached in the session against the model file), an
acquisition strategy scores them, and the batch picker takes the next slices.
Before any model is trained, the pretrained encoder's embeddings pick the
first slices (core-set).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from napari_xrm_al.core.acquisition import (
    DEFAULT_MIN_DISTANCE,
    AcquisitionContext,
    Pick,
    first_picks,
    get_strategy,
    select,
)
from napari_xrm_al.core.checkpoint import Checkpoint, load_checkpoint, load_segmenter
from napari_xrm_al.core.discovery import DiscoveryPlan
from napari_xrm_al.core.embedding import embed_slices
from napari_xrm_al.core.events import Progress
from napari_xrm_al.core.predict import DEFAULT_MAX_MEMORY, predict_volume
from napari_xrm_al.core.session import Session
from napari_xrm_al.core.summaries import SliceSummary, read_arrays
from napari_xrm_al.errors import InputError, XrmError
from napari_xrm_al.io.atomic import atomic_path

#: MC-dropout passes used when a strategy needs BALD.
BALD_SAMPLES = 8

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass
class Ranking:
    """Scores of every slice and the picked batch.

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


def _file_key(path: Path, *parts: Any) -> str:
    digest = hashlib.sha256(path.read_bytes())
    digest.update(repr(parts).encode())
    return digest.hexdigest()[:16]


def summarise(
    model_path: Path,
    image_data: Any,
    *,
    mc_samples: int = 1,
    cache_dir: Path | None = None,
    device: str | torch.device | None = None,
    checkpoint: Checkpoint | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
) -> Generator[Progress, None, SliceSummary]:
    """Per-slice prediction summaries of every slice, cached per model file.

    ``checkpoint``: the model already read from ``model_path``, if the caller
    has it; ``max_memory``: see :func:`~napari_xrm_al.core.predict.predict_volume`.
    """
    cache = None
    if cache_dir is not None:
        cache = cache_dir / f"summary-{_file_key(model_path, mc_samples)}.npz"
        saved = _read_cache(cache, SliceSummary.load)
        if saved is not None:
            return saved
    model, ckpt = load_segmenter(model_path, device=device, checkpoint=checkpoint)
    result = yield from predict_volume(
        model,
        ckpt,
        image_data,
        axis=ckpt.axis,
        mc_samples=mc_samples,
        device=device,
        max_memory=max_memory,
    )
    summary = result.summary
    if cache is not None:
        cache.parent.mkdir(exist_ok=True)
        summary.save(cache)
    return summary


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
    """Score every slice of ``summary`` with ``strategy`` and pick ``k``."""
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
    encoder_path: Path,
    image_data: Any,
    k: int,
    *,
    labelled: Sequence[int] = (),
    min_distance: int = DEFAULT_MIN_DISTANCE,
    cache_dir: Path | None = None,
    device: str | torch.device | None = None,
    model: str = "",
    checkpoint: Checkpoint | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
) -> Generator[Progress, None, Ranking]:
    """Slices to label first, from a pretrained encoder: core-set on its embeddings.

    Each slice's score is its embedding distance to the nearest labelled or
    picked slice. Embeddings are cached per encoder file in ``cache_dir``.
    ``checkpoint``: the encoder already read from ``encoder_path``, if the
    caller has it; ``max_memory``: see
    :func:`~napari_xrm_al.core.embedding.embed_slices`.
    """
    cache = None
    if cache_dir is not None:
        cache = cache_dir / f"embedding-{_file_key(encoder_path)}.npz"
    saved = _read_cache(cache, _load_embedding) if cache is not None else None
    if saved is not None:
        index, embedding = saved["index"], saved["embedding"]
    else:
        ckpt = checkpoint or load_checkpoint(encoder_path)
        index, embedding = yield from embed_slices(
            ckpt, image_data, device=device, max_memory=max_memory
        )
        if cache is not None:
            cache.parent.mkdir(exist_ok=True)
            with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, index=index, embedding=embedding)
    scores, picks = first_picks(
        index, embedding, k, labelled=labelled, min_distance=min_distance
    )
    return Ranking("coreset", index, scores, picks, None, None, model)


def _load_embedding(path: Path) -> dict[str, np.ndarray]:
    """The cached ``index`` and ``embedding`` of :func:`first_ranking`."""
    return read_arrays(path, ("index", "embedding"), "an embedding cache")


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


def rank_session(
    session: Session,
    image_data: Any,
    strategy: str = "rareness",
    k: int = 5,
    min_distance: int = DEFAULT_MIN_DISTANCE,
    device: str | torch.device | None = None,
    exclude: Sequence[int] = (),
) -> Generator[Progress, None, Ranking]:
    """Rank every slice of the scan with the latest model; nothing is saved but a cache.

    Before any model is trained, the pretrained encoder picks the first slices
    (core-set, :func:`first_ranking`) whatever ``strategy`` is asked for.
    ``exclude``: slices never to suggest besides those done (validation
    slices); picks keep ``min_distance`` from them too.
    """
    taken = sorted(set(session.done) | {int(s) for s in exclude})
    model_path = session.latest_model
    if model_path is None:
        encoder = session.path_of(session.pretrained)
        if encoder is None:
            raise XrmError(
                "Pretrain (for a first, diverse set of slices) or train a model "
                "before asking for suggestions."
            )
        return (
            yield from first_ranking(
                encoder,
                image_data,
                k,
                labelled=taken,
                min_distance=min_distance,
                cache_dir=session.folder / "cache",
                device=device,
                model=session.relative(encoder),
            )
        )
    mc = BALD_SAMPLES if "bald" in get_strategy(strategy).needs else 1
    summary = yield from summarise(
        model_path,
        image_data,
        mc_samples=mc,
        cache_dir=session.folder / "cache",
        device=device,
    )
    return rank_summary(
        summary,
        strategy,
        k,
        labelled=taken,
        labelled_counts=session.labelled_counts(),
        min_distance=min_distance,
        seed=len(session.cycles),
        model=session.relative(model_path),
    )
