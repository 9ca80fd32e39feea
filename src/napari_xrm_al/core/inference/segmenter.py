"""A trained segmenter: its network with the checkpoint that describes it.

Prediction needs the network and, from its checkpoint, the class table, the
intensity normalisation, the slice axis and the 2.5D context:
:class:`Segmenter` keeps them together, from loading
(:meth:`Segmenter.from_checkpoint`) to prediction (:meth:`Segmenter.predict_volume`,
streamed by :mod:`~napari_xrm_al.core.inference.predict`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.inference.predict import (
    PredictConfig,
    check_volume,
    predict_volume,
)
from napari_xrm_al.core.inference.slice_inference import (
    SliceInference,
    default_batch_size,
)
from napari_xrm_al.core.model.checkpoint import Checkpoint, load_checkpoint
from napari_xrm_al.core.model.ensemble import build_network
from napari_xrm_al.core.model.network import ModelConfig, pick_device
from napari_xrm_al.core.model.normalization import Normalisation
from napari_xrm_al.core.slices import read_slices
from napari_xrm_al.errors import InputError, XrmError


class Segmenter:
    """A segmenter network and its checkpoint.

    Parameters
    ----------
    net
        The network (``forward`` gives logits, ``encoder_features`` the
        bottleneck), e.g. a :class:`~napari_xrm_al.core.model.network.SliceSegmenter`.
    checkpoint
        Its segmenter checkpoint (classes, normalisation, axis, provenance).

    Raises
    ------
    XrmError
        When ``checkpoint`` is not a segmenter's, or ``net`` is configured
        otherwise.
    """

    def __init__(self, net: nn.Module, checkpoint: Checkpoint) -> None:
        _check_kind(checkpoint)
        cfg = getattr(net, "cfg", None)
        if cfg is not None and cfg != checkpoint.model_config:
            raise XrmError("The model does not match its checkpoint's configuration.")
        self.net = net
        self.checkpoint = checkpoint

    @classmethod
    def build(
        cls, checkpoint: Checkpoint, device: torch.device | str | None = None
    ) -> Segmenter:
        """The network of ``checkpoint`` with its weights, in eval mode on
        ``device`` (default: CUDA when present)."""
        _check_kind(checkpoint)
        net = build_network(checkpoint.model_config)
        try:
            net.load_state_dict(checkpoint.state_dict)
        except RuntimeError:
            raise XrmError(
                "The checkpoint's weights do not fit its model configuration "
                "(damaged checkpoint)."
            ) from None
        return cls(net.to(pick_device(device)).eval(), checkpoint)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        device: torch.device | str | None = None,
        *,
        checkpoint: Checkpoint | None = None,
    ) -> Segmenter:
        """Load a segmenter checkpoint and its network (eval mode, on ``device``).

        ``checkpoint``, when the caller has already read ``path``, is used
        instead of reading the file again (errors still name ``path``).

        Raises
        ------
        InputError
            One sentence naming ``path`` when it is not a usable segmenter.
        """
        ckpt = checkpoint or load_checkpoint(path, kind="segmenter")
        try:
            return cls.build(ckpt, device)
        except XrmError as exc:
            message = str(exc)
            raise InputError(
                path, message[0].lower() + message[1:].rstrip(".")
            ) from None

    @property
    def classes(self) -> ClassTable:
        """The class table (class ``i`` is annotation id ``i + 1``)."""
        return self.checkpoint.classes

    @property
    def model_config(self) -> ModelConfig:
        """The network's configuration."""
        return self.checkpoint.model_config

    @property
    def normalisation(self) -> Normalisation:
        """The intensity normalisation fitted on the training volume."""
        return self.checkpoint.normalisation

    @property
    def axis(self) -> str:
        """The slice axis it was trained on, ``'z'``, ``'y'`` or ``'x'``."""
        return self.checkpoint.axis

    @property
    def context(self) -> int:
        """Neighbouring slices on each side given as input channels (2.5D)."""
        return self.checkpoint.model_config.context

    @property
    def device(self) -> torch.device:
        """Where the network's weights are."""
        param = next(self.net.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    def inference(
        self,
        device: str | torch.device | None = None,
        precision: str = "auto",
        tta: str = "none",
        normalisation: Normalisation | None = None,
    ) -> SliceInference:
        """A :class:`~napari_xrm_al.core.inference.slice_inference.SliceInference`
        engine of the network (a context manager; ``device`` None: where the
        network is; ``normalisation`` None: the checkpoint's)."""
        return SliceInference(
            self.net, normalisation or self.normalisation, device, precision, tta
        )

    #: ``segmenter.predict_volume(data, config, out=..., ...)``: the function
    #: :func:`~napari_xrm_al.core.inference.predict.predict_volume` as a method
    #: (its first argument, the segmenter, is ``self``).
    predict_volume = predict_volume

    def predict_slices(
        self, data: Any, indices: Sequence[int], config: PredictConfig | None = None
    ) -> np.ndarray:
        """Class probabilities ``(N, C, H, W)`` (float32) of slices ``indices``,
        in order.

        For small uses (pre-filling a slice, tests): the slices are read at
        once. Of ``config`` it uses ``axis``, ``batch_size``, ``device``,
        ``precision``, ``tta`` and ``normalisation``. Volumes go through :meth:`predict_volume`.
        """
        config = config or PredictConfig()
        check_volume(data)
        ax = config.slice_axis(self.axis)
        raw = read_slices(data, indices, ax, self.context)
        batch = int(config.batch_size or default_batch_size(raw.shape[-2:]))
        engine = self.inference(
            config.device, config.precision, config.tta, config.normalisation
        )
        with engine:
            if engine.precision is None and len(raw):
                middle = len(raw) // 2
                engine.calibrate(engine.prepare(raw[middle : middle + batch]))
            parts = [
                engine.probabilities(engine.prepare(raw[i : i + batch])).cpu().numpy()
                for i in range(0, len(raw), batch)
            ]
        if not parts:
            return np.zeros((0, len(self.classes), *raw.shape[-2:]), np.float32)
        return np.concatenate(parts)


def _check_kind(checkpoint: Checkpoint) -> None:
    if checkpoint.kind != "segmenter":
        raise XrmError(
            f"Expected a segmenter checkpoint, got an {checkpoint.kind} checkpoint."
        )
