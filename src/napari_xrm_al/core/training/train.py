"""Training a slice segmenter on sparsely annotated slices.

The user annotates a few 2D slices (annotation ids ``1..C``, 0 = not
annotated). Training draws random crops from those slices only, centring a
share of them on pixels of the rarest labelled classes, augments them on the
batch, and minimises a class-weighted Dice + cross-entropy (or Dice + focal)
loss over annotated pixels only, with AdamW and a warm-up + cosine learning
rate. With ``rare_paste`` (on by default), labelled rare-class objects
are pasted into crops (:mod:`~napari_xrm_al.core.training.rare_paste`). The number of
steps grows with the number of labelled slices; an optional time budget ends
training early (the schedule follows whichever ends first).
Every run starts from the pretrained encoder when one is given (method.md).
The best weights seen (validation mIoU when validation slices are given, else
the lowest smoothed loss) are what is returned, and what is saved when the
caller stops the generator early.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import torch
from torch import nn

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.events import Progress
from napari_xrm_al.core.inference.slice_inference import training_precision
from napari_xrm_al.core.model.checkpoint import Checkpoint
from napari_xrm_al.core.model.ensemble import build_network, split_loss
from napari_xrm_al.core.model.network import pick_device
from napari_xrm_al.core.slice_refs import SliceRef
from napari_xrm_al.core.training.augment import augment_pair
from napari_xrm_al.core.training.configs import TrainConfig
from napari_xrm_al.core.training.losses import MaskedSegLoss, class_weights
from napari_xrm_al.core.training.rare_paste import cut_stamps, paste_stamps
from napari_xrm_al.core.training.schedule import StepClock, snapshot
from napari_xrm_al.core.training.step_loop import (
    RunOptions,
    config_record,
    run_steps,
    seeded_generators,
)
from napari_xrm_al.core.training.trainset import (
    load_labelled,
)
from napari_xrm_al.core.training.validation import validate
from napari_xrm_al.errors import XrmError

#: Validation image, labels and slices (a plain index is along the training axis).
Validation = tuple[Any, Any, Sequence[SliceRef | int]]


def initial_model(
    init: Checkpoint | None, classes: ClassTable, config: TrainConfig
) -> nn.Module:
    """A fresh model (of ``config.ensemble`` members), from the pretrained
    encoder ``init`` if given; or the segmenter ``init`` to train further."""
    n = len(classes)
    if init is None:
        return build_network(replace(config.model_config(n), members=config.ensemble))
    if init.kind == "encoder":
        cfg = replace(
            init.model_config.with_classes(n),
            dropout=config.dropout,
            members=config.ensemble,
        )
        model = build_network(cfg)
        model.load_encoder_state_dict(init.state_dict)
        return model
    init.check_classes(classes, "the initial model")
    model = build_network(init.model_config)
    model.load_state_dict(init.state_dict)
    return model


#: The weight average's horizon ``1 / (1 - decay)`` is at most this share of
#: the run, so a short run averages its own last steps, not its first weights.
AVERAGE_SHARE = 0.25


def effective_decay(decay: float, steps: int) -> float:
    """``decay`` capped at ``1 - 1 / (AVERAGE_SHARE * steps)``: 0.995 for 800
    steps (the measured setting), 0.99 for 400; 0 stays 0 (no average)."""
    if decay <= 0:
        return 0.0
    if decay >= 1:
        raise XrmError(f"ema_decay must be in [0, 1), got {decay}.")
    return min(decay, max(0.0, 1.0 - 1.0 / (AVERAGE_SHARE * max(1, steps))))


def weight_average(
    model: nn.Module, decay: float, steps: int
) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of ``model``'s weights and batch-norm
    statistics over a run of ``steps`` (torch's ``AveragedModel``; the decay
    capped by :func:`effective_decay`), or None when ``decay`` is 0."""
    decay = effective_decay(decay, steps)
    if decay <= 0:
        return None
    return torch.optim.swa_utils.AveragedModel(
        model,
        multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay),
        use_buffers=True,
    )


def train(
    image_data,
    labels_data,
    slices: Sequence[SliceRef | int],
    classes: ClassTable,
    *,
    axis: str = "z",
    dense_labels: bool = False,
    init: Checkpoint | None = None,
    config: TrainConfig | None = None,
    validation: Validation | None = None,
    run: RunOptions | None = None,
) -> Generator[Progress, None, Checkpoint]:
    """Train a segmenter on the annotated ``slices``; yields :class:`Progress`.

    Parameters
    ----------
    image_data, labels_data
        The (z, y, x) volume and its annotation volume (annotation ids ``1..C``,
        0 = not annotated; or dense ids ``0..C-1`` with ``dense_labels``).
    slices
        Labelled slices: :class:`~napari_xrm_al.core.slice_refs.SliceRef` along
        any axis (each read with its context along its own axis), or plain
        indices along ``axis``.
    axis
        The axis of plain indices; recorded in the checkpoint as the axis the
        model predicts along by default.
    classes
        The class table (``C`` classes).
    init
        Pretrained encoder (or earlier segmenter) to start from; None = scratch.
    validation
        Optional ``(image, labels, slices)`` (same label convention) scored during
        training; the best-scoring weights are kept.
    run
        Seed, device, normalisation, provenance, where to save and memory
        (:class:`~napari_xrm_al.core.training.step_loop.RunOptions`; None: its
        defaults). The labelled (and validation) slices hold at most
        ``run.max_memory`` bytes; more is refused before they are read
        (:func:`~napari_xrm_al.core.training.trainset.load_labelled`).

    Returns
    -------
    Checkpoint
        A ``'segmenter'`` checkpoint with the best weights.
    """
    config = config or TrainConfig()
    run = run or RunOptions()
    rng, gen = seeded_generators(run.seed)
    dev = pick_device(run.device)
    precision = training_precision(config.precision, dev)
    autocast = torch.autocast(
        dev.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"
    )
    # Channels-last is the fast layout of oneDNN/cuDNN convolutions (~10 % per step).
    model = initial_model(init, classes, config).to(
        dev, memory_format=torch.channels_last
    )
    run.check_room("the model", model.state_dict())
    context = model.cfg.context
    members = model.cfg.members
    if config.batch_size < members:
        raise XrmError(
            f"An ensemble of {members} networks needs at least one crop each; "
            f"fewer crops per step ({config.batch_size}) than networks."
        )
    norm = run.normalisation_for(image_data)
    data = load_labelled(
        image_data,
        labels_data,
        slices,
        classes,
        axis=axis,
        context=context,
        dense_labels=dense_labels,
        pad_to=config.crop_size,
        max_memory=run.max_memory,
    )
    val = (
        load_labelled(
            *validation,
            classes,
            axis=axis,
            context=context,
            dense_labels=dense_labels,
            max_memory=run.max_memory,
        )
        if validation is not None
        else None
    )
    stamps = (
        [
            stamp
            for g in data.groups
            for stamp in cut_stamps(g.images, g.labels, classes.rare_ids)
        ]
        if config.rare_paste > 0
        else []
    )
    common = [c for c in range(len(classes)) if c not in classes.rare_ids]
    weights = class_weights(data.counts, config.class_weight_power)
    loss_fn = MaskedSegLoss(len(classes), config.loss, weights).to(dev)
    clock = StepClock(config.n_steps(len(data.refs)), config.time_budget_s)
    check_every = config.validate_every or max(1, clock.total // 10)
    history: dict[str, Any] = {
        "slices": [ref.pair() for ref in data.refs],
        "axis": axis,
        "labelled_counts": data.counts.tolist(),
        "class_weights": weights.tolist(),
        "init": (init.provenance.get("image_fingerprint") if init else None),
        "init_kind": init.kind if init else None,
        "config": config_record(config),
        "precision": precision,
        "loss": [],
        "validation": [],
        "validation_slices": [ref.pair() for ref in val.refs] if val else [],
    }
    averaged = weight_average(model, config.ema_decay, clock.total)
    kept = averaged.module if averaged is not None else model
    best_state: dict[str, torch.Tensor] | None = None
    best_score = -math.inf

    def after_step(smooth: float | None, last: bool) -> dict[str, float] | None:
        """Every ``check_every`` steps and at the end: validate (or look at the
        smoothed loss) and keep the best weights; without validation, averaged
        weights are simply the latest."""
        nonlocal best_score, best_state
        if clock.step % check_every and not last:
            return None
        metrics = None
        if val is not None:
            metrics = validate(kept, val, norm, classes, dev)
            history["validation"].append({"step": clock.step, **metrics})
            score = metrics["miou"]
        elif averaged is not None:
            score = clock.step
        else:
            score = -smooth if smooth is not None else -math.inf
        if score > best_score or best_state is None:
            best_score, best_state = score, snapshot(kept)
        clock.restart_step_timer()
        return metrics

    def step_loss() -> torch.Tensor:
        x, y = data.batch(
            config.batch_size, config.crop_size, config.rare_crop_fraction, rng
        )
        paste_stamps(x, y, stamps, config.rare_paste, rng)
        x, y = augment_pair(
            torch.from_numpy(norm.apply(x)),
            torch.from_numpy(y),
            config.augment,
            gen,
            common,
        )
        x = x.to(dev).contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = model(x)
        return split_loss(loss_fn, logits.float(), y.to(dev).long(), members)

    def result() -> Checkpoint:
        return Checkpoint(
            kind="segmenter",
            model_config=model.cfg,
            state_dict=best_state if best_state is not None else snapshot(kept),
            normalisation=norm,
            axis=axis,
            classes=classes,
            provenance=dict(run.provenance or {}),
            history=history,
        )

    model.train()
    return (
        yield from run_steps(
            "train",
            config,
            clock,
            model.parameters(),
            step_loss,
            result,
            history,
            smoothing=config.loss_smoothing,
            after_update=(
                partial(averaged.update_parameters, model)
                if averaged is not None
                else None
            ),
            after_step=after_step,
            out=run.out,
        )
    )


def final_metrics(history: dict[str, Any]) -> dict[str, Any]:
    """The last loss (``final_loss``) and the last validation metrics of a
    training history, as a session's cycle records them."""
    metrics: dict[str, Any] = {}
    if history.get("loss"):
        metrics["final_loss"] = float(history["loss"][-1])
    if history.get("validation"):
        metrics.update(history["validation"][-1])
    return metrics
