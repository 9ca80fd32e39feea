"""Fast batched inference of a :class:`SliceSegmenter` on normalised slices.

What makes a small U-Net fast on a CPU (see ``docs/benchmarks.md``): eval mode
and ``torch.inference_mode`` (no autograd bookkeeping), channels-last tensors
(oneDNN's native convolution layout), small batches (four 256² slices), and
bfloat16 autocast on CPUs with native bf16 instructions (AVX512-BF16 or AMX),
up to twice the float32 throughput. bfloat16 is only used when, on a typical
batch of the data at hand, its class map agrees with float32 on at least
:data:`BF16_AGREEMENT` of the pixels; otherwise everything runs in float32.

Optional test-time augmentation (:data:`TTA_MODES`) averages the probabilities
of in-plane flipped (and 90°-rotated) copies of each batch, mapped back: on
the quality benchmark it raises mIoU by about 0.013 (flips, 3–4× the
inference time) to 0.015 (dihedral, 7–8×).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from napari_xrm_al.core.inference.summaries import mutual_information
from napari_xrm_al.core.model.network import enable_mc_dropout, pick_device
from napari_xrm_al.core.model.normalization import Normalisation
from napari_xrm_al.errors import XrmError

PRECISIONS = ("auto", "float32", "bfloat16")
#: Test-time augmentation: none; the 4 flips (any slice shape); the 8 flips and
#: 90° rotations (the dihedral group; rotated slices swap height and width).
TTA_MODES = ("none", "flips", "dihedral")
#: Minimum fraction of pixels whose class must agree between bf16 and float32.
BF16_AGREEMENT = 0.995
#: Pixels per batch the batch-size heuristic aims at (4 slices of 256²):
#: larger batches of full-resolution activations fall out of the CPU caches
#: and run slower per slice (docs/benchmarks.md, "Inference speed").
BATCH_PIXELS = 4 * 256 * 256
MAX_BATCH = 32


def default_batch_size(slice_shape: tuple[int, int]) -> int:
    """Slices per batch: about :data:`BATCH_PIXELS` pixels, 1 to :data:`MAX_BATCH`."""
    h, w = slice_shape
    return int(max(1, min(MAX_BATCH, BATCH_PIXELS // max(1, h * w))))


@lru_cache(maxsize=1)
def native_bf16_cpu() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16).

    Read from ``/proc/cpuinfo``; elsewhere bfloat16 would be emulated (slower
    than float32), so it is reported as unsupported.
    """
    cpuinfo = Path("/proc/cpuinfo")
    if not sys.platform.startswith("linux") or not cpuinfo.is_file():
        return False
    flags = set()
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool({"avx512_bf16", "amx_bf16"} & flags) and bool(
        torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def tta_transforms(mode: str) -> list[tuple[int, bool]]:
    """``(quarter turns, flip last axis)`` pairs of test-time augmentation ``mode``."""
    if mode not in TTA_MODES:
        raise XrmError(
            f"Unknown test-time augmentation {mode!r}; choose from {TTA_MODES}."
        )
    if mode == "none":
        return [(0, False)]
    turns = (0, 2) if mode == "flips" else (0, 1, 2, 3)  # flips: rot180 = both flips
    return [(k, f) for k in turns for f in (False, True)]


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 autocast is worth trying on ``device``."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return device.type == "cpu" and native_bf16_cpu()


def check_precision(precision: str, device: torch.device) -> None:
    """:class:`XrmError` for an unknown precision or bfloat16 without support."""
    if precision not in PRECISIONS:
        raise XrmError(f"Unknown precision {precision!r}; choose from {PRECISIONS}.")
    if precision == "bfloat16" and not bf16_supported(device):
        raise XrmError("This device has no native bfloat16 support; use float32.")


def training_precision(precision: str, device: torch.device) -> str:
    """The precision training steps run in on ``device``: ``'bfloat16'`` autocast
    for ``'bfloat16'``, and for ``'auto'`` where the device computes it natively;
    else ``'float32'``. (Weights, gradients and the optimiser stay float32.)"""
    check_precision(precision, device)
    if precision == "bfloat16" or (precision == "auto" and bf16_supported(device)):
        return "bfloat16"
    return "float32"


class SliceInference:
    """Class probabilities of batches of raw slices, as fast as the device allows.

    Use as a context manager: on entry the model is put in eval mode and
    channels-last layout on ``device``; on exit its mode and layout are
    restored.

    Parameters
    ----------
    model
        The segmenter (its ``forward`` gives logits, ``encode`` embeddings).
    normalisation
        Intensity normalisation of the checkpoint.
    device
        Where to run; default the model's device.
    precision
        ``'auto'`` (bfloat16 where supported and accurate, see
        :data:`BF16_AGREEMENT`), ``'float32'`` or ``'bfloat16'``.
    tta
        Test-time augmentation of :meth:`probabilities` (:data:`TTA_MODES`);
        MC-dropout passes and embeddings use the plain input.
    """

    def __init__(
        self,
        model: nn.Module,
        normalisation: Normalisation,
        device: str | torch.device | None = None,
        precision: str = "auto",
        tta: str = "none",
    ) -> None:
        self.transforms = tta_transforms(tta)
        check_precision(precision, pick_device(device))
        self.model = model
        self.normalisation = normalisation
        param = next(model.parameters(), None)
        self.device = (
            pick_device(device) if device is not None or param is None else param.device
        )
        #: Precision in use; ``'auto'`` is resolved on the first batch.
        self.precision = precision if precision != "auto" else None
        self.agreement: float | None = None
        self._restore: tuple[bool, torch.device, bool] | None = None

    # -- context -----------------------------------------------------------
    def __enter__(self) -> SliceInference:
        param = next(self.model.parameters(), None)
        was_cl = (
            param is not None
            and param.dim() == 4
            and param.is_contiguous(memory_format=torch.channels_last)
        )
        where = param.device if param is not None else self.device
        self._restore = (self.model.training, where, was_cl)
        self.model.to(self.device, memory_format=torch.channels_last).eval()
        return self

    def __exit__(self, *exc: object) -> None:
        training, where, was_cl = self._restore or (False, self.device, True)
        fmt = torch.channels_last if was_cl else torch.contiguous_format
        self.model.to(where, memory_format=fmt).train(training)

    # -- batches -----------------------------------------------------------
    def prepare(self, raw: np.ndarray) -> torch.Tensor:
        """Raw ``(B, K, H, W)`` slices → normalised channels-last tensor on device."""
        x = torch.from_numpy(self.normalisation.apply(raw))
        return x.to(self.device).contiguous(memory_format=torch.channels_last)

    @contextmanager
    def _autocast(self, bf16: bool) -> Iterator[None]:
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16),
        ):
            yield

    def _probs(self, x: torch.Tensor, bf16: bool, tta: bool = True) -> torch.Tensor:
        with self._autocast(bf16):
            if not tta or len(self.transforms) == 1:
                return self.model(x).float().softmax(dim=1)
            total: torch.Tensor | None = None
            for k, flip in self.transforms:
                xt = (x.flip(-1) if flip else x).rot90(k, (-2, -1))
                xt = xt.contiguous(memory_format=torch.channels_last)
                p = self.model(xt).float().softmax(dim=1).rot90(-k, (-2, -1))
                p = p.flip(-1) if flip else p
                total = p if total is None else total + p
            return total / len(self.transforms)

    def calibrate(self, x: torch.Tensor) -> torch.Tensor:
        """Resolve ``'auto'`` precision on batch ``x``; returns its probabilities.

        bfloat16 is kept when the device supports it and its class map of
        ``x`` agrees with float32's on at least :data:`BF16_AGREEMENT` of the
        pixels (give a typical batch, e.g. from the middle of the volume).
        """
        if self.precision is not None:  # fixed by the caller or already resolved
            return self.probabilities(x)
        p32 = self._probs(x, False)
        if not bf16_supported(self.device):
            self.precision = "float32"
            return p32
        p16 = self._probs(x, True)
        self.agreement = float((p16.argmax(1) == p32.argmax(1)).float().mean())
        use = self.agreement >= BF16_AGREEMENT
        self.precision = "bfloat16" if use else "float32"
        return p16 if use else p32

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, C, H, W)`` (float32) of a prepared batch."""
        if self.precision is None:
            return self.calibrate(x)
        return self._probs(x, self.precision == "bfloat16")

    def mc_probabilities(self, x: torch.Tensor, samples: int) -> torch.Tensor:
        """``(T, B, C, H, W)`` probabilities of ``samples`` passes with dropout on."""
        if self.precision is None:
            self.calibrate(x)
        bf16 = self.precision == "bfloat16"
        with enable_mc_dropout(self.model):
            out = [self._probs(x, bf16, tta=False) for _ in range(samples)]
        return torch.stack(out)

    def bald_map(self, x: torch.Tensor, samples: int, seed: int) -> torch.Tensor:
        """Per-pixel BALD ``(B, H, W)`` of ``samples`` MC-dropout passes seeded
        with ``seed`` (dropout masks do not depend on H, W: tiles of a slice
        seeded alike share them)."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            mc = self.mc_probabilities(x, samples)
        return mutual_information(mc)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder bottleneck feature map ``(B, D, h, w)`` (float32)."""
        with self._autocast(self.precision == "bfloat16"):
            return self.model.encoder_features(x).float()

    def embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled encoder embeddings ``(B, D)`` (float32)."""
        return self.features(x).mean(dim=(-2, -1))

    def embeddings_and_spread(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled encoder embeddings ``(B, D)`` and each slice's feature spread
        ``(B,)``: the variance of the feature map over the slice, averaged over
        channels (high where a slice holds many different structures)."""
        f = self.features(x)
        return f.mean(dim=(-2, -1)), f.var(dim=(-2, -1), correction=0).mean(dim=1)
