"""The settings of training and pretraining, each described once.

:class:`TrainConfig` (for :func:`~napari_xrm_al.core.training.train.train`) and
:class:`PretrainConfig` (for :func:`~napari_xrm_al.core.training.pretrain.pretrain`)
add their fields to the network's
(:class:`~napari_xrm_al.core.model.network.NetworkSettings`). Each field carries
its label, range and help (:func:`~napari_xrm_al.core.settings.setting`), from
which the dock's forms and the command line's options are built.
"""

from __future__ import annotations

from dataclasses import dataclass

from napari_xrm_al.core.inference.slice_inference import PRECISIONS
from napari_xrm_al.core.model.network import NetworkSettings
from napari_xrm_al.core.settings import Setting, setting
from napari_xrm_al.core.training.augment import AugmentConfig
from napari_xrm_al.core.training.losses import LOSSES

#: Settings of training and pretraining alike (their defaults differ).
TIME_BUDGET = Setting(
    label="Time limit (s)",
    help="Stop after this many seconds (the schedule adapts); None = no limit.",
    minimum=0,
    maximum=86_400,
    step=30,
    special="no limit",
    special_on_cli=True,
    flag="--time-budget",
)
LEARNING_RATE = Setting(
    label="Learning rate",
    help="Peak learning rate of AdamW.",
    minimum=1e-5,
    maximum=1.0,
    step=1e-4,
    decimals=5,
    advanced=True,
)
WEIGHT_DECAY = Setting(
    label="Weight decay",
    help="AdamW weight decay.",
    minimum=0.0,
    advanced=True,
)
WARMUP = Setting(
    label="Warm-up share",
    help="Share of the run spent warming the learning rate up.",
    minimum=0.0,
    maximum=1.0,
    advanced=True,
)

#: Augmentation of contrastive views: the supervised training's (the views are
#: already rescaled crops, so no zoom; unlabelled, so every view's grey levels
#: change). Stronger grey-level changes, noise and
#: blur (±20 % scale, gamma 0.6–1.6, σ ≤ 0.08 noise, blur up to 1.5 px, an
#: earlier default) taught the encoder to ignore what tells copper from solder
#: (grey level) and voids from their surroundings (small dark spots): training
#: from it was worse than from scratch and now and then lost the voids
#: (docs/engine.md, "How strong should the views be?").
VIEW_AUGMENT = AugmentConfig(zoom=(1.0, 1.0))


@dataclass(frozen=True)
class TrainConfig(NetworkSettings):
    """Settings of one training run: the network's (the architecture fields are
    used only without an init checkpoint, ``dropout`` always) and the fields
    below, each described by its :func:`~napari_xrm_al.core.settings.setting`."""

    steps: int | None = setting(
        None,
        label="Steps",
        help="Number of optimiser steps; None = ``steps_per_slice`` × labelled "
        "slices, clipped to [``min_steps``, ``max_steps``].",
        minimum=0,
        maximum=100_000,
        step=50,
        special="auto",
    )
    steps_per_slice: int = setting(
        100,
        label="Steps per slice (auto)",
        help="Steps per labelled slice when ``steps`` is None.",
        minimum=1,
        maximum=10_000,
        step=10,
        advanced=True,
    )
    min_steps: int = setting(
        400,
        label="Fewest steps (auto)",
        help="Fewest steps when ``steps`` is None.",
        minimum=1,
        advanced=True,
    )
    max_steps: int = setting(
        800,
        label="Most steps (auto)",
        help="Most steps when ``steps`` is None.",
        minimum=1,
        advanced=True,
    )
    time_budget_s: float | None = TIME_BUDGET.field(None)
    batch_size: int = setting(
        16,
        label="Batch size",
        help="Crops per step.",
        minimum=1,
        maximum=1024,
        step=2,
    )
    crop_size: int = setting(
        96,
        label="Crop size (px)",
        help="Side of the square training crops in pixels.",
        minimum=16,
        maximum=2048,
        step=16,
    )
    lr: float = LEARNING_RATE.field(3e-3)
    weight_decay: float = WEIGHT_DECAY.field(1e-4)
    warmup_fraction: float = WARMUP.field(0.05)
    loss: str = setting(
        "dice_ce",
        label="Loss",
        help="'dice_ce' (Dice + cross-entropy) or 'dice_focal' (Dice + focal).",
        choices=LOSSES,
        advanced=True,
    )
    class_weight_power: float = setting(
        0.5,
        label="Class weight power",
        help="Cross-entropy class weights ∝ labelled frequency^-power "
        "(0 = unweighted).",
        minimum=0.0,
        maximum=2.0,
        step=0.1,
        decimals=2,
        advanced=True,
    )
    rare_crop_fraction: float = setting(
        0.5,
        label="Rare-centred crops",
        help="Share of crops centred on pixels of rarer classes (class picked ∝ "
        "frequency^-½).",
        minimum=0.0,
        maximum=1.0,
        step=0.1,
        decimals=2,
        advanced=True,
    )
    rare_paste: float = setting(
        1.0,
        label="Rare-object pasting",
        help="Share of crops into which labelled objects of the rare classes are "
        "pasted onto their surrounding class (copy-paste, see "
        ":mod:`~napari_xrm_al.core.training.rare_paste`; 0 = off). With a handful "
        "of labelled voids it raises void IoU and makes a retrain on the same "
        "slices give nearly the same model whatever the seed "
        '(docs/benchmarks.md, "Stable retraining").',
        minimum=0.0,
        maximum=1.0,
        step=0.1,
        decimals=2,
        advanced=True,
    )
    augment: AugmentConfig = setting(
        default_factory=AugmentConfig,
        label="Augmentation",
        help="Data augmentation strengths.",
        advanced=True,
    )
    precision: str = setting(
        "auto",
        label="Precision",
        help="'auto' (bfloat16 autocast where the device computes it natively, "
        "else float32), 'float32' or 'bfloat16'. Weights, optimiser and loss stay "
        "float32.",
        choices=PRECISIONS,
        advanced=True,
    )
    validate_every: int | None = setting(
        None,
        label="Validation interval",
        help="Steps between validations when validation slices are given "
        "(None = 10 per run).",
        minimum=0,
        special="10 per run",
        advanced=True,
    )
    loss_smoothing: float = setting(
        0.95,
        label="Loss smoothing",
        help="Exponential smoothing of the reported loss (0 = none).",
        minimum=0.0,
        maximum=1.0,
        exclusive_maximum=True,
        advanced=True,
    )
    ema_decay: float = setting(
        0.0,
        label="Weight average decay",
        help="Keep an exponential moving average of the weights with this decay "
        "per step and return it instead of the last weights (0 = off); capped at "
        "1 - 4 / steps, so a short run averages its last quarter. Averaging "
        "makes a retrain on the same slices give nearly the same model whatever "
        'the seed (docs/benchmarks.md, "Stable retraining").',
        minimum=0.0,
        maximum=1.0,
        exclusive_maximum=True,
        step=0.001,
        decimals=4,
        advanced=True,
    )
    ensemble: int = setting(
        1,
        label="Ensemble members",
        help="Networks trained side by side, each on its share of every batch, "
        "whose probabilities are averaged (1 = one network). Training costs about "
        "the same; prediction and ranking cost one pass per member.",
        minimum=1,
        maximum=8,
    )

    def n_steps(self, n_slices: int) -> int:
        """Planned number of steps for ``n_slices`` labelled slices."""
        if self.steps is not None:
            return max(1, int(self.steps))
        auto = self.steps_per_slice * n_slices
        return int(min(max(auto, self.min_steps), self.max_steps))


@dataclass(frozen=True)
class PretrainConfig(NetworkSettings):
    """Settings of contrastive pretraining: the network's (training started from
    this encoder uses the same architecture) and the fields below, each
    described by its :func:`~napari_xrm_al.core.settings.setting`."""

    steps: int = setting(
        600,
        label="Steps",
        help="Number of optimiser steps.",
        minimum=1,
        maximum=100_000,
        step=50,
    )
    time_budget_s: float | None = TIME_BUDGET.field(240.0)
    batch_size: int = setting(
        32,
        label="Batch size",
        help="Regions per step (each gives two views).",
        minimum=2,
        maximum=1024,
        step=8,
    )
    region_size: int = setting(
        96,
        label="Region size (px)",
        help="Side of the square regions cut from slices, in pixels.",
        minimum=16,
        maximum=2048,
        step=16,
    )
    view_size: int = setting(
        64,
        label="View size (px)",
        help="Side of each augmented view fed to the encoder, in pixels.",
        minimum=16,
        maximum=2048,
        step=16,
    )
    crop_area: tuple[float, float] = setting(
        (0.3, 1.0),
        label="View area",
        help="Range of the area fraction of a region each view covers.",
        advanced=True,
    )
    temperature: float = setting(
        0.2,
        label="Temperature",
        help="NT-Xent temperature.",
        minimum=0.01,
        maximum=5.0,
        step=0.05,
        decimals=2,
        advanced=True,
    )
    projection_dim: int = setting(
        64,
        label="Projection size",
        help="Output size of the projection head.",
        minimum=1,
        advanced=True,
    )
    lr: float = LEARNING_RATE.field(1e-3)
    weight_decay: float = WEIGHT_DECAY.field(1e-4)
    warmup_fraction: float = WARMUP.field(0.05)
    pool_voxels: int = setting(
        32_000_000,
        label="Voxels in memory",
        help="Most voxels held in memory to cut regions from (whole slices, or "
        "boxes of large ones).",
        minimum=10_000,
        maximum=2_000_000_000,
        step=1_000_000,
        advanced=True,
    )
    augment: AugmentConfig = setting(
        default_factory=lambda: VIEW_AUGMENT,
        label="Augmentation",
        help="Grey-level and geometric augmentation of the views.",
        advanced=True,
    )
