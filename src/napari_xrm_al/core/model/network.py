"""The 2D (2.5D) segmentation network: a MONAI U-Net on slices of the volume.

One slice plus ``context`` neighbours on each side go in as channels; one logit
per class comes out per pixel. The default is MONAI's residual ``UNet`` with small feature
widths (chosen for accuracy per CPU second, see ``docs/engine.md``); MONAI's
``BasicUNet`` and ``FlexibleUNet`` (EfficientNet/ResNet encoder) are available
too. Each architecture exposes its *encoder*
(the contracting path) so contrastive pretraining can train it alone and the
segmenter can be initialised from it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.layers import SkipConnection
from monai.networks.nets import BasicUNet, FlexibleUNet, UNet
from torch import nn

from napari_xrm_al.core.settings import setting
from napari_xrm_al.errors import XrmError

ARCHS = ("unet", "basicunet", "flexunet")

#: Named width presets of the default architecture (MONAI ``UNet``, one
#: width per level, strides 2, two residual units per level).
PRESETS: dict[str, tuple[int, ...]] = {
    "small": (16, 32, 64, 128, 256),
    "medium": (24, 48, 96, 192, 384),
    "large": (32, 64, 128, 256, 512),
}

#: Default feature widths of each architecture.
DEFAULT_FEATURES: dict[str, tuple[int, ...]] = {
    "unet": PRESETS["small"],
    "basicunet": (16, 16, 32, 64, 128, 16),
    "flexunet": (64, 32, 16, 16, 8),
}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a :class:`SliceSegmenter`.

    Parameters
    ----------
    n_classes
        Number of classes (logits out).
    context
        Neighbouring slices on each side given as extra input channels
        (0 = plain 2D, 1 = three slices, ...).
    features
        Feature widths. ``unet``: one width per level (see :data:`PRESETS`);
        ``basicunet``: six numbers (five encoder levels, last decoder level);
        ``flexunet``: five decoder widths.
    dropout
        Channel-dropout probability at the bottleneck and before the
        classifier (regularisation and MC-dropout uncertainty).
    arch
        ``'unet'`` (default, MONAI ``UNet``), ``'basicunet'`` or ``'flexunet'``.
    norm
        Feature normalisation: ``'batch'`` or ``'instance'``.
    backbone
        Encoder of ``flexunet`` (e.g. ``'efficientnet-b0'``, ``'resnet10'``).
    res_units
        Residual units per level of ``unet``.
    members
        Networks of this architecture whose probabilities are averaged
        (:mod:`~napari_xrm_al.core.model.ensemble`; 1 = a single network).
    """

    n_classes: int
    context: int = 1
    features: tuple[int, ...] = PRESETS["small"]
    dropout: float = 0.1
    arch: str = "unet"
    norm: str = "batch"
    backbone: str = "efficientnet-b0"
    res_units: int = 2
    members: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(int(f) for f in self.features))
        if self.n_classes < 2:
            raise XrmError(
                f"A segmenter needs at least 2 classes, got {self.n_classes}."
            )
        if self.context < 0:
            raise XrmError(f"Context must be >= 0 slices, got {self.context}.")
        if self.arch not in ARCHS:
            raise XrmError(f"Unknown architecture {self.arch!r}; choose from {ARCHS}.")
        if self.norm not in ("batch", "instance"):
            raise XrmError(f"Unknown norm {self.norm!r}; choose 'batch' or 'instance'.")
        if self.members < 1:
            raise XrmError(f"An ensemble needs at least 1 member, got {self.members}.")
        if not 0.0 <= self.dropout < 1.0:
            raise XrmError(f"Dropout must be in [0, 1), got {self.dropout}.")
        need = {"basicunet": 6, "flexunet": 5}.get(self.arch)
        if (need and len(self.features) != need) or len(self.features) < 2:
            raise XrmError(
                f"Architecture {self.arch!r} needs {need or 'at least 2'} feature "
                f"widths, got {list(self.features)}."
            )

    @property
    def in_channels(self) -> int:
        """Input channels: the slice and its ``context`` neighbours each side."""
        return 2 * self.context + 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (stored in checkpoints)."""
        d = asdict(self)
        d["features"] = list(self.features)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(**{**data, "features": tuple(data["features"])})
        except (KeyError, TypeError) as exc:
            raise XrmError(f"Malformed model configuration ({exc!r}).") from None

    def with_classes(self, n_classes: int) -> ModelConfig:
        """The same architecture with another number of classes."""
        return ModelConfig.from_dict({**self.to_dict(), "n_classes": n_classes})


@dataclass(frozen=True)
class NetworkSettings:
    """Architecture fields shared by training and pretraining configurations
    (each described by its :func:`~napari_xrm_al.core.settings.setting`)."""

    context: int = setting(
        1,
        label="Context slices",
        help="Neighbouring slices each side given as channels (0 = plain 2D).",
        minimum=0,
        maximum=8,
        advanced=True,
    )
    features: tuple[int, ...] = setting(
        PRESETS["small"],
        label="Network widths",
        help="Network feature widths (see :class:`ModelConfig`).",
        advanced=True,
    )
    arch: str = setting(
        "unet",
        label="Architecture",
        help="Network architecture: 'basicunet', 'unet' or 'flexunet'.",
        choices=ARCHS,
        advanced=True,
    )
    norm: str = setting(
        "batch",
        label="Normalisation",
        help="Feature normalisation, 'batch' or 'instance'.",
        choices=("batch", "instance"),
        advanced=True,
    )
    dropout: float = setting(
        0.1,
        label="Dropout",
        help="Channel dropout at the bottleneck and before the classifier.",
        minimum=0.0,
        maximum=0.9,
        step=0.05,
        decimals=2,
        advanced=True,
    )
    res_units: int = setting(
        2,
        label="Residual units",
        help="Residual units per level ('unet' only).",
        minimum=0,
        advanced=True,
    )
    backbone: str = setting(
        "efficientnet-b0",
        label="Backbone",
        help="Encoder of 'flexunet'.",
        advanced=True,
    )

    def model_config(self, n_classes: int = 2) -> ModelConfig:
        """The :class:`ModelConfig` these settings describe."""
        return ModelConfig(
            n_classes=n_classes,
            context=self.context,
            features=self.features,
            dropout=self.dropout,
            arch=self.arch,
            norm=self.norm,
            backbone=self.backbone,
            res_units=self.res_units,
        )


def _norm(cfg: ModelConfig) -> tuple[str, dict[str, Any]]:
    return ("batch", {}) if cfg.norm == "batch" else ("instance", {"affine": True})


def _build(cfg: ModelConfig) -> tuple[nn.Module, int]:
    if cfg.arch == "basicunet":
        net = BasicUNet(
            spatial_dims=2,
            in_channels=cfg.in_channels,
            out_channels=cfg.n_classes,
            features=cfg.features,
            norm=_norm(cfg),
        )
        return net, 16
    if cfg.arch == "unet":
        net = UNet(
            spatial_dims=2,
            in_channels=cfg.in_channels,
            out_channels=cfg.n_classes,
            channels=cfg.features,
            strides=(2,) * (len(cfg.features) - 1),
            num_res_units=cfg.res_units,
            norm=_norm(cfg),
        )
        return net, 2 ** (len(cfg.features) - 1)
    try:
        net = FlexibleUNet(
            in_channels=cfg.in_channels,
            out_channels=cfg.n_classes,
            backbone=cfg.backbone,
            spatial_dims=2,
            decoder_channels=cfg.features,
            norm=_norm(cfg),
        )
    except ValueError as exc:
        raise XrmError(f"Cannot build FlexibleUNet: {exc}") from None
    return net, 32


_UNET_DECODER = re.compile(r"^model\.(1\.submodule\.)*2\.")
_BASIC_ENCODER = ("conv_0.", "down_1.", "down_2.", "down_3.", "down_4.")


class SliceSegmenter(nn.Module):
    """2D segmentation network on slices with context channels.

    ``forward`` takes ``(B, 2*context+1, H, W)`` normalised slices of any H, W
    (padded internally to the multiple the network needs) and returns logits
    ``(B, n_classes, H, W)``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.net, self.multiple = _build(cfg)
        # Dropout only where it is cheap and useful: whole feature maps at the
        # bottleneck and in front of the classifier. Dropout in every block
        # (MONAI's option) cost accuracy in our tests (docs/engine.md).
        self.bottleneck_dropout = nn.Dropout2d(cfg.dropout)
        self.head_dropout = nn.Dropout2d(cfg.dropout)
        self._bottleneck().register_forward_hook(self._drop_bottleneck)
        self._head().register_forward_pre_hook(self._drop_head)

    def _contracting_path(self) -> list[nn.Module]:
        """The encoder's modules in order, the bottleneck last."""
        if self.cfg.arch == "basicunet":
            return [getattr(self.net, name.rstrip(".")) for name in _BASIC_ENCODER]
        if self.cfg.arch == "flexunet":
            return [self.net.encoder]
        path, level = [], self.net.model  # UNet: Sequential(down, Skip(inner), up)
        while True:
            path.append(level[0])
            inner = level[1].submodule
            if not (
                isinstance(inner, nn.Sequential)
                and isinstance(inner[1], SkipConnection)
            ):
                return [*path, inner]
            level = inner

    def _bottleneck(self) -> nn.Module:
        return self._contracting_path()[-1]

    def _head(self) -> nn.Module:
        if self.cfg.arch == "basicunet":
            return self.net.final_conv
        if self.cfg.arch == "flexunet":
            return self.net.segmentation_head
        return self.net.model[2]

    def _drop_bottleneck(self, module, args, output):
        if isinstance(output, list | tuple):  # FlexibleUNet's encoder: all levels
            return [*output[:-1], self.bottleneck_dropout(output[-1])]
        return self.bottleneck_dropout(output)

    def _drop_head(self, module, args):
        return (self.head_dropout(args[0]), *args[1:])

    # -- padding ------------------------------------------------------------
    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x, h, w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, n_classes, H, W)``."""
        x, h, w = self._pad(x)
        return self.net(x)[..., :h, :w]

    # -- encoder ------------------------------------------------------------
    def encoder_features(self, x: torch.Tensor) -> torch.Tensor:
        """Bottleneck feature map of the contracting path (no decoder run)."""
        x, _, _ = self._pad(x)
        for module in self._contracting_path():
            x = module(x)
        return x[-1] if isinstance(x, list | tuple) else x  # FlexibleUNet: all levels

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled bottleneck embedding ``(B, D)`` (pretraining, core-set)."""
        return self.encoder_features(x).mean(dim=(-2, -1))

    @property
    def embedding_dim(self) -> int:
        """D of :meth:`encode`."""
        with torch.no_grad():
            was = self.training
            self.eval()
            d = self.encode(torch.zeros(1, self.cfg.in_channels, 32, 32)).shape[1]
            self.train(was)
        return int(d)

    def is_encoder_key(self, key: str) -> bool:
        """Whether state-dict entry ``key`` belongs to the encoder."""
        if not key.startswith("net."):
            return False
        key = key[4:]
        if self.cfg.arch == "basicunet":
            return key.startswith(_BASIC_ENCODER)
        if self.cfg.arch == "flexunet":
            return key.startswith("encoder.")
        return not _UNET_DECODER.match(key)

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The encoder's weights (what pretraining transfers), on the CPU."""
        return {
            k: v.detach().cpu().clone()
            for k, v in self.state_dict().items()
            if self.is_encoder_key(k)
        }

    def load_encoder_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load encoder weights; :class:`XrmError` if they do not fit."""
        own = {k: v for k, v in self.state_dict().items() if self.is_encoder_key(k)}
        if set(own) != set(state) or any(
            tuple(own[k].shape) != tuple(state[k].shape) for k in own
        ):
            raise XrmError(
                "The pretrained encoder does not fit this model "
                "(different architecture, features or context)."
            )
        self.load_state_dict(state, strict=False)


def pick_device(prefer: str | torch.device | None = None) -> torch.device:
    """CUDA when present (or asked for), else the CPU."""
    if prefer is not None:
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise XrmError("CUDA was asked for but no CUDA GPU is available.")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def enable_mc_dropout(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode except dropout layers, which sample (MC-dropout); restored after."""
    was_training = model.training
    model.eval()
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.train()
    try:
        yield model
    finally:
        model.train(was_training)
