"""The settings of training and pretraining.

:class:`TrainConfig` (for :func:`~napari_xrm_al.core.training.train.train`) and
:class:`PretrainConfig` (for :func:`~napari_xrm_al.core.training.pretrain.pretrain`)
add their fields to the network's
(:class:`~napari_xrm_al.core.model.network.NetworkSettings`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from napari_xrm_al.core.model.network import NetworkSettings
from napari_xrm_al.core.training.augment import AugmentConfig

#: Augmentation of contrastive views: the supervised training's (the views are
#: already rescaled crops, so no zoom). Stronger grey-level changes, noise and
#: blur (±20 % scale, gamma 0.6–1.6, σ ≤ 0.08 noise, blur up to 1.5 px, an
#: earlier default) taught the encoder to ignore what tells copper from solder
#: (grey level) and voids from their surroundings (small dark spots): training
#: from it was worse than from scratch and now and then lost the voids
#: (docs/engine.md, "How strong should the views be?").
VIEW_AUGMENT = AugmentConfig(zoom=(1.0, 1.0))


@dataclass(frozen=True)
class TrainConfig(NetworkSettings):
    """Settings of one training run (each line doubles as a tooltip).

    Parameters
    ----------
    (network fields)
        See :class:`~napari_xrm_al.core.model.NetworkSettings`; the architecture
        fields are used only without an init checkpoint, ``dropout`` always.
    steps
        Number of optimiser steps; None = ``steps_per_slice`` × labelled slices,
        clipped to [``min_steps``, ``max_steps``].
    steps_per_slice
        Steps per labelled slice when ``steps`` is None.
    min_steps
        Fewest steps when ``steps`` is None.
    max_steps
        Most steps when ``steps`` is None.
    time_budget_s
        Stop after this many seconds (the schedule adapts); None = no limit.
    batch_size
        Crops per step.
    crop_size
        Side of the square training crops in pixels.
    lr
        Peak learning rate of AdamW.
    weight_decay
        AdamW weight decay.
    warmup_fraction
        Share of the run spent warming the learning rate up.
    loss
        'dice_ce' (Dice + cross-entropy) or 'dice_focal' (Dice + focal).
    class_weight_power
        Cross-entropy class weights ∝ labelled frequency^-power (0 = unweighted).
    rare_crop_fraction
        Share of crops centred on pixels of rarer classes (class picked ∝ frequency^-½).
    rare_paste
        Share of crops into which labelled objects of the rare classes are pasted
        onto their surrounding class (copy-paste, see
        :mod:`~napari_xrm_al.core.training.rare_paste`; 0 = off, the default). It
        helped with a handful of labelled voids (8 y slices: void IoU 0.60 →
        0.66) but hurt the active-learning benchmark (docs/engine.md).
    augment
        Data augmentation strengths.
    precision
        'auto' (bfloat16 autocast where the device computes it natively, else
        float32), 'float32' or 'bfloat16'. Weights, optimiser and loss stay float32.
    validate_every
        Steps between validations when validation slices are given (None = 10 per run).
    loss_smoothing
        Exponential smoothing of the reported loss (0 = none).
    ema_decay
        Keep an exponential moving average of the weights with this decay per
        step and return it instead of the last weights (0 = off). Averaging
        makes a retrain on the same slices give nearly the same model whatever
        the seed (docs/benchmarks.md, "Stable retraining").
    ensemble
        Networks trained side by side, each on its share of every batch, whose
        probabilities are averaged (1 = one network). Training costs about the
        same; prediction and ranking cost one pass per member.
    """

    steps: int | None = None
    steps_per_slice: int = 100
    min_steps: int = 400
    max_steps: int = 800
    time_budget_s: float | None = None
    batch_size: int = 16
    crop_size: int = 96
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    loss: str = "dice_ce"
    class_weight_power: float = 0.5
    rare_crop_fraction: float = 0.5
    rare_paste: float = 0.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    precision: str = "auto"
    validate_every: int | None = None
    loss_smoothing: float = 0.95
    ema_decay: float = 0.0
    ensemble: int = 1

    def n_steps(self, n_slices: int) -> int:
        """Planned number of steps for ``n_slices`` labelled slices."""
        if self.steps is not None:
            return max(1, int(self.steps))
        auto = self.steps_per_slice * n_slices
        return int(min(max(auto, self.min_steps), self.max_steps))


@dataclass(frozen=True)
class PretrainConfig(NetworkSettings):
    """Settings of contrastive pretraining (each line doubles as a tooltip).

    Parameters
    ----------
    (network fields)
        See :class:`~napari_xrm_al.core.model.network.NetworkSettings`; training
        started from this encoder uses the same architecture.
    steps
        Number of optimiser steps.
    time_budget_s
        Stop after this many seconds (the schedule adapts); None = no limit.
    batch_size
        Regions per step (each gives two views).
    region_size
        Side of the square regions cut from slices, in pixels.
    view_size
        Side of each augmented view fed to the encoder, in pixels.
    crop_area
        Range of the area fraction of a region each view covers.
    temperature
        NT-Xent temperature.
    projection_dim
        Output size of the projection head.
    lr
        Peak learning rate of AdamW.
    weight_decay
        AdamW weight decay.
    warmup_fraction
        Share of the run spent warming the learning rate up.
    pool_voxels
        Most voxels held in memory to cut regions from (whole slices, or
        boxes of large ones).
    augment
        Grey-level and geometric augmentation of the views.
    """

    steps: int = 600
    time_budget_s: float | None = 240.0
    batch_size: int = 32
    region_size: int = 96
    view_size: int = 64
    crop_area: tuple[float, float] = (0.3, 1.0)
    temperature: float = 0.2
    projection_dim: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    pool_voxels: int = 32_000_000
    augment: AugmentConfig = field(default_factory=lambda: VIEW_AUGMENT)
