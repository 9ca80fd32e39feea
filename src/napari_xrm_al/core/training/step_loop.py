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

import dataclasses
import os
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from napari_xrm_al.core.events import Progress
from napari_xrm_al.core.model.checkpoint import (
    Checkpoint,
    checkpoint_bytes,
    save_or_keep,
)
from napari_xrm_al.core.model.normalization import Normalisation, fit_normalisation
from napari_xrm_al.core.training.schedule import StepClock, adamw
from napari_xrm_al.core.training.trainset import TRAIN_MAX_MEMORY
from napari_xrm_al.io.output_paths import check_writable


@dataclass(frozen=True)
class RunOptions:
    """How a training or pretraining run is set up, beside its config.

    Attributes
    ----------
    seed
        Seed of the run's random generators (:func:`seeded_generators`) and of
        the normalisation it fits.
    device
        Where to train; None: CUDA when present
        (:func:`~napari_xrm_al.core.model.network.pick_device`).
    normalisation
        Intensity normalisation; None: fitted on the training volume.
    provenance
        Stored in the checkpoint (see :func:`~napari_xrm_al.core.model.checkpoint.make_provenance`).
    out
        If given, the checkpoint is saved there (atomically) when the run ends
        *or* when the caller closes the generator early. Its folder is checked
        for writability and room before the work (:meth:`check_room`); should
        the save still fail, the checkpoint is kept elsewhere
        (:func:`~napari_xrm_al.core.model.checkpoint.save_or_keep`).
    max_memory
        Bytes the data the run reads may hold (training: the labelled and
        validation slices; pretraining: the pool of regions); more is refused
        before it is read.
    """

    seed: int = 0
    device: str | torch.device | None = None
    normalisation: Normalisation | None = None
    provenance: dict[str, Any] | None = None
    out: str | os.PathLike[str] | None = None
    max_memory: int = TRAIN_MAX_MEMORY

    def normalisation_for(self, image_data: Any) -> Normalisation:
        """:attr:`normalisation`, or one fitted (seeded) on ``image_data``."""
        return self.normalisation or fit_normalisation(image_data, seed=self.seed)

    def check_room(self, what: str, state_dict: dict[str, torch.Tensor]) -> None:
        """Before the work: whether :attr:`out` (if any) can take ``what``, a
        checkpoint of ``state_dict`` (:class:`~napari_xrm_al.errors.InputError`
        if not)."""
        if self.out is not None:
            check_writable(self.out, what, checkpoint_bytes(state_dict))


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
    every field, a nested configuration (the augmentation) as a dict."""
    return dataclasses.asdict(config)


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
