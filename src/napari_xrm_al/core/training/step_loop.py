"""The optimisation loop that training and pretraining share.

Both run the same skeleton: seed every generator, step an AdamW optimiser
under a :class:`~napari_xrm_al.core.training.schedule.StepClock` (learning-rate
schedule, ETA, time budget), smooth and record the loss, yield a
:class:`~napari_xrm_al.core.events.Progress` after each step, and save the
result when the run ends *or* when the caller closes the generator early.
What differs (the parameters, the batch and loss of a step, validation, weight
averaging, the checkpoint) comes in as arguments and callables.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterable
from typing import Any, Protocol

import numpy as np
import torch

from napari_xrm_al.core.events import Progress
from napari_xrm_al.core.model.checkpoint import Checkpoint, save_or_keep
from napari_xrm_al.core.training.schedule import StepClock, adamw


class OptimiserSettings(Protocol):
    """The settings of a run that the loop reads (training's and pretraining's
    configs have them)."""

    @property
    def lr(self) -> float:
        """Peak learning rate."""

    @property
    def weight_decay(self) -> float:
        """AdamW weight decay."""

    @property
    def warmup_fraction(self) -> float:
        """Share of the run spent warming the learning rate up."""


def seeded_generators(seed: int) -> tuple[np.random.Generator, torch.Generator]:
    """Seed torch's global generator; a numpy and a torch generator from ``seed``."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed), torch.Generator().manual_seed(seed)


def config_record(config: Any) -> dict[str, Any]:
    """What a checkpoint's history keeps of a run's (dataclass) ``config``:
    every field but the augmentation."""
    return {k: v for k, v in config.__dict__.items() if k != "augment"}


def run_steps(
    stage: str,
    settings: OptimiserSettings,
    clock: StepClock,
    params: Iterable[torch.nn.Parameter],
    step_loss: Callable[[], torch.Tensor],
    result: Callable[[], Checkpoint],
    history: dict[str, Any],
    *,
    smoothing: float = 0.95,
    after_update: Callable[[], None] | None = None,
    after_step: Callable[[float | None, bool], dict[str, float] | None] | None = None,
    out: str | os.PathLike[str] | None = None,
) -> Generator[Progress, None, Checkpoint]:
    """Optimise until ``clock`` is done; yields :class:`Progress` per step.

    Parameters
    ----------
    stage
        The ``Progress.stage`` (``"train"``, ``"pretrain"``).
    settings
        Learning rate (the peak of the schedule), weight decay and warm-up
        share of the AdamW optimiser (:func:`~napari_xrm_al.core.training.schedule.adamw`).
    clock
        Step total and time budget; drives the learning rate.
    params
        The parameters to optimise.
    step_loss
        Draws a batch and returns its loss (with a graph to back-propagate).
    result
        Builds the checkpoint from the current state (called on the way out,
        also when cancelled).
    history
        The checkpoint's history: ``"loss"`` gets every step's loss,
        ``"stopped"`` why the run ended early, and before ``result`` is called
        ``"steps"`` and ``"seconds"`` the steps run and the time they took.
    smoothing
        Weight of the past in the exponentially smoothed loss that ``Progress``
        reports.
    after_update
        Called right after each optimiser step (e.g. to update a weight average).
    after_step
        Called after each step with the smoothed loss and whether it was the
        last step; may return metrics to report (e.g. validation). Called once
        more with ``last=True`` when the time budget ends the run between steps
        (or before the first).
    out
        Where the checkpoint is saved (atomically, kept elsewhere should that
        fail, :func:`~napari_xrm_al.core.model.checkpoint.save_or_keep`).

    Returns
    -------
    Checkpoint
        What ``result`` builds at the end.
    """
    optimiser = adamw(params, settings.lr, settings.weight_decay)
    smooth: float | None = None
    last = False
    history.setdefault("loss", [])

    def finish() -> Checkpoint:
        history.update(steps=clock.step, seconds=round(clock.elapsed, 2))
        return result()

    try:
        while not clock.done:
            clock.set_lr(optimiser, settings.lr, settings.warmup_fraction)
            loss = step_loss()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if after_update is not None:
                after_update()
            clock.tick()
            value = float(loss.detach())
            smooth = (
                value
                if smooth is None
                else smoothing * smooth + (1 - smoothing) * value
            )
            history["loss"].append(round(value, 5))
            last = clock.done
            metrics = after_step(smooth, last) if after_step is not None else None
            yield Progress(
                stage, clock.step, clock.expected_total, smooth, clock.eta, metrics
            )
            if last:
                break
    except GeneratorExit:
        history["stopped"] = "cancelled"
        if out is not None:
            save_or_keep(out, finish())
        raise
    if clock.out_of_time:
        history["stopped"] = "time budget"
    if not last and after_step is not None:
        after_step(smooth, True)
    ckpt = finish()
    if out is not None:
        save_or_keep(out, ckpt)
    return ckpt
