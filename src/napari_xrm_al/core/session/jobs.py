"""The active-learning loop on a session: pretrain, rank, train, predict.

These generators are what the dock widgets run on a worker thread and what
the command line drives: each works on a :class:`~napari_xrm_al.core.session.session.Session`
and an image array, yields :class:`~napari_xrm_al.core.events.Progress`, saves
its results into the session folder, and returns them. Closing a generator
early leaves the session as it was before the job started.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.al.acquisition import DEFAULT_MIN_DISTANCE, get_strategy
from napari_xrm_al.core.al.batch_picking import Pick, pick_record
from napari_xrm_al.core.al.discovery import rare_label
from napari_xrm_al.core.al.ranking import (
    BALD_SAMPLES,
    Ranking,
    first_ranking,
    rank_summary,
    summarise,
)
from napari_xrm_al.core.events import Progress
from napari_xrm_al.core.model.checkpoint import (
    Checkpoint,
    load_checkpoint,
    save_or_keep,
)
from napari_xrm_al.core.session.schema import SuggestionRecord
from napari_xrm_al.core.session.session import (
    CycleRecord,
    ImageRef,
    Session,
    default_session_dir,
)
from napari_xrm_al.core.slice_refs import SliceRef, as_refs, slice_codes
from napari_xrm_al.core.training.configs import PretrainConfig, TrainConfig
from napari_xrm_al.core.training.pretrain import pretrain
from napari_xrm_al.core.training.step_loop import RunOptions
from napari_xrm_al.core.training.train import final_metrics, train
from napari_xrm_al.errors import XrmError
from napari_xrm_al.io.array_reads import volume_fingerprint

ENCODER_FILE = "encoder.pt"


@dataclass(frozen=True)
class LastSettings:
    """The settings a project's models were made with, for the dock's forms.

    ``train``: the latest model's training settings (as its checkpoint keeps
    them, nested ones as dicts), ``seed`` its training seed; ``pretrain``: the
    encoder's. None where the project has no such model or it cannot be read.
    """

    train: dict[str, Any] | None = None
    seed: int | None = None
    pretrain: dict[str, Any] | None = None


def last_settings(session: Session) -> LastSettings:
    """What the latest model and the encoder of ``session`` were made with."""

    model = session.latest_model
    if model is None:
        train, seed = None, None
    else:
        train = session.model_settings(model)
        seed = {session.folder / c.model: c.seed for c in session.cycles}.get(model)
    pretrain = None
    encoder = session.paths.path_of(session.pretrained)
    if encoder is not None:
        with contextlib.suppress(XrmError):  # a damaged encoder records nothing
            pretrain = load_checkpoint(encoder).settings
    return LastSettings(train=train, seed=seed, pretrain=pretrain)


def session_for(
    image_path: str | Path | None,
    image_data: Any,
    classes: ClassTable,
    axis: str = "z",
    folder: str | Path | None = None,
) -> tuple[Session, list[str]]:
    """Reopen the session of an image, or create it.

    Parameters
    ----------
    image_path
        The scan on disk (None for an in-memory layer; then ``folder`` is needed).
    folder
        Session folder; defaults to ``<scan>.xrmal`` beside the scan.

    Returns
    -------
    session, warnings
        Warnings name what the user should know (e.g. the scan changed on disk).
    """
    if folder is None:
        if image_path is None:
            raise XrmError(
                "An image that is not a file needs a session folder to be chosen."
            )
        folder = default_session_dir(image_path)
    folder = Path(folder)
    fingerprint = volume_fingerprint(image_data)
    if Session.exists(folder):
        session = Session.open(folder)
        warnings = session.check_image(image_data.shape, fingerprint)
        return session, [*session.warnings, *warnings]
    image = ImageRef(
        path=str(Path(image_path).resolve()) if image_path else "",
        shape=tuple(int(s) for s in image_data.shape),
        dtype=str(np.dtype(image_data.dtype)),
        fingerprint=fingerprint,
    )
    return Session.create(folder, image, classes, axis), []


def pretrained_encoder(session: Session) -> Checkpoint | None:
    """The session's pretrained encoder, if pretraining has run."""
    path = session.paths.path_of(session.pretrained)
    return load_checkpoint(path, "encoder") if path is not None else None


def pretrain_session(
    session: Session,
    image_data: Any,
    config: PretrainConfig | None = None,
    device: str | torch.device | None = None,
) -> Generator[Progress, None, Checkpoint]:
    """Pretrain the encoder on the session's scan and record it.

    The encoder is saved only when pretraining completes: a cancelled run
    leaves the session's previous encoder (if any) in place.
    """
    ckpt = yield from pretrain(
        image_data,
        axis=session.axis,
        config=config,
        run=RunOptions(device=device, provenance=session.provenance()),
    )
    out = save_or_keep(session.paths.model_path(ENCODER_FILE), ckpt)
    session.set_pretrained(out)
    return ckpt


def rank_session(
    session: Session,
    image_data: Any,
    strategy: str = "rareness",
    k: int = 5,
    min_distance: int = DEFAULT_MIN_DISTANCE,
    device: str | torch.device | None = None,
    exclude: Sequence[SliceRef | int] = (),
    axes: Sequence[str | int] | None = None,
) -> Generator[Progress, None, Ranking]:
    """Rank every slice of the scan with the latest model; the picks are kept in
    the session as its suggestion (:attr:`Session.suggestion`), summaries in its cache.

    Candidates are the slices along ``axes`` (default: the session's axis).
    Before any model is trained, the pretrained encoder picks the first slices
    (core-set, :func:`first_ranking`) whatever ``strategy`` is asked for.
    ``exclude``: slices never to suggest besides those done (validation
    slices; a plain index is along the session axis); picks keep
    ``min_distance`` from them too.
    """
    axes = axes or [session.axis]
    taken = slice_codes(as_refs([*session.done, *exclude], session.axis)).tolist()
    model_path = session.latest_model
    if model_path is None:
        encoder = session.paths.path_of(session.pretrained)
        if encoder is None:
            raise XrmError(
                "Pretrain (for a first, diverse set of slices) or train a model "
                "before asking for suggestions."
            )
        ranking = yield from first_ranking(
            encoder,
            image_data,
            k,
            axes=axes,
            labelled=taken,
            min_distance=min_distance,
            cache_dir=session.folder / "cache",
            device=device,
            model=session.paths.relative(encoder),
        )
        return _suggested(session, ranking)
    mc = BALD_SAMPLES if "bald" in get_strategy(strategy).needs else 1
    summary = yield from summarise(
        model_path,
        image_data,
        axes=axes,
        mc_samples=mc,
        cache_dir=session.folder / "cache",
        device=device,
    )
    ranking = rank_summary(
        summary,
        strategy,
        k,
        labelled=taken,
        labelled_counts=session.labelled_counts(),
        min_distance=min_distance,
        seed=len(session.cycles),
        model=session.paths.relative(model_path),
    )
    return _suggested(session, ranking)


def _suggested(session: Session, ranking: Ranking) -> Ranking:
    """Keep ``ranking``'s picks as the session's suggestion; return it."""
    plan = (
        ranking.plan.describe(session.classes.names, rare_label(session.classes))
        if ranking.plan is not None
        else None
    )
    session.record_suggestion(
        SuggestionRecord(
            strategy=ranking.strategy,
            picks=[pick_record(p) for p in ranking.picks],
            model=ranking.model or None,
            plan=plan,
        )
    )
    return ranking


def train_session(
    session: Session,
    image_data: Any,
    config: TrainConfig | None = None,
    device: str | torch.device | None = None,
    *,
    strategy: str | None = None,
    picks: Sequence[Pick] | None = None,
    validation_slices: Sequence[SliceRef | int] = (),
    seed: int = 0,
) -> Generator[Progress, None, CycleRecord]:
    """Train on the slices marked done (along every axis), from the pretrained
    encoder, with training seed ``seed``; add a cycle.

    The cycle records ``strategy`` and ``picks``; left out, those of the
    session's suggestion (``"manual"`` and none without one), which the cycle
    then uses up.

    The model is written to ``models/cycle-NNN.pt`` only when training ends,
    so a cancelled run keeps the previous model as the latest.
    """
    labelled = list(session.done)
    if not labelled:
        raise XrmError("Mark at least one painted slice as done before training.")
    init = pretrained_encoder(session)
    suggestion = session.suggestion
    number = len(session.cycles) + 1
    validation = (
        (image_data, session.annotations.array, list(validation_slices))
        if validation_slices
        else None
    )
    start = time.perf_counter()
    ckpt = yield from train(
        image_data,
        session.annotations.array,
        labelled,
        session.classes,
        axis=session.axis,
        init=init,
        config=config,
        validation=validation,
        run=RunOptions(
            seed=seed,
            device=device,
            normalisation=init.normalisation if init else None,
            provenance=session.provenance(),
        ),
    )
    seconds = time.perf_counter() - start
    path = session.paths.model_path(f"cycle-{number:03d}.pt")
    save_or_keep(path, ckpt)
    record = CycleRecord(
        cycle=number,
        strategy=strategy or (suggestion.strategy if suggestion else "manual"),
        labelled=[ref.pair() for ref in labelled],
        picks=(
            [pick_record(p) for p in picks]
            if picks is not None
            else list(suggestion.picks if suggestion else [])
        ),
        model=session.paths.relative(path),
        metrics=final_metrics(ckpt.history),
        seconds={"train": round(seconds, 2)},
        seed=seed,
    )
    session.add_cycle(record)
    return record


def learning_curve(session: Session) -> list[dict[str, Any]]:
    """One row per cycle: cycle, strategy, labelled slices and the cycle's metrics."""
    return [
        {
            "cycle": c.cycle,
            "strategy": c.strategy,
            "n_labelled": len(c.labelled),
            **c.metrics,
        }
        for c in session.cycles
    ]
