"""Predicting slices too large for the memory limit in overlapping 2D tiles.

A tile is read (with its 2.5D context) from the lazy volume as a box: its
*core* plus a *margin* on each side at least the network's receptive-field
radius, with every box starting on a multiple of the network's padding
multiple (so strided layers see the same pixel grid as on the whole slice).
Only the core is kept. A convolutional network in eval mode gives each core
pixel exactly what it gives on the whole slice (up to float rounding), so the
stitched result equals untiled prediction. Networks with a global operation
(instance normalisation, squeeze-and-excitation pooling) cannot be tiled.

The memory figures here are estimates of the working set per pixel of one
forward pass (measured once per architecture on a small probe), used to pick
between slab and tile prediction and the tile size.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from napari_xrm_al.core.model.network import ModelConfig, SliceSegmenter
from napari_xrm_al.errors import XrmError, mib

#: Side of the square probe the footprint is measured on (a multiple of 32).
PROBE = 128
#: Measured peak resident memory of a forward pass over the tensor bytes alive
#: at its peak (allocator slack, oneDNN scratch and layout copies).
RSS_PER_TENSOR_BYTE = 1.5
#: Layers that mix information across the whole slice.
GLOBAL_LAYERS = (
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
)


@dataclass(frozen=True)
class Footprint:
    """What tiling needs to know about a network.

    Attributes
    ----------
    bytes_per_pixel
        Estimated resident memory of one forward pass per input pixel
        (activations, input and output tensors).
    radius
        Receptive-field radius in pixels (an upper bound); None when the
        network has a global layer and cannot be tiled.
    multiple
        Slice sides the network pads to; tile boxes start on multiples of it.
    """

    bytes_per_pixel: float
    radius: int | None
    multiple: int

    @property
    def margin(self) -> int:
        """Overlap kept on each side of a tile core: the radius, rounded up to
        :attr:`multiple`."""
        return -(-int(self.radius or 0) // self.multiple) * self.multiple


class _LiveBytes:
    """Tracks the peak bytes of tensor storage alive during a forward pass.

    Every layer's inputs and outputs are counted until they are freed; what a
    layer allocates and drops inside its own forward is not seen (the factor
    :data:`RSS_PER_TENSOR_BYTE` covers it). Forward hooks, rather than a
    dispatch mode over every operation, because the first operation under a
    Python dispatch mode imports some 800 modules (sympy, torch.fx, ...): 70 MB
    of resident memory for the rest of the process.
    """

    def __init__(self) -> None:
        self.live = self.peak = 0
        self._alive: set[int] = set()

    def track(self, *values: object) -> None:
        """Count the storage of each tensor in ``values`` until it is freed."""
        for t in values:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr():
                key, size = t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()
                if key not in self._alive:
                    self._alive.add(key)
                    self.live += size
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(t, self._free, key, size)

    def _free(self, key: int, size: int) -> None:
        if key in self._alive:
            self._alive.discard(key)
            self.live -= size


def _reach(module: nn.Module, size_in: int, size_out: int) -> float | None:
    """Pixels a layer widens the receptive field by (None: a global layer)."""
    if isinstance(module, GLOBAL_LAYERS):
        return None
    s_in = PROBE / size_in
    s_out = PROBE / size_out
    resampled = s_out if s_out != s_in else 0.0
    if isinstance(module, nn.ConvTranspose2d):
        return math.ceil(module.kernel_size[0] / module.stride[0]) * s_in + s_in
    if isinstance(module, nn.Conv2d):
        k, d = module.kernel_size[0], module.dilation[0]
        return math.ceil((k - 1) * d / 2) * s_in + resampled
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        k = module.kernel_size
        return (k if isinstance(k, int) else k[0]) * s_in + resampled
    if isinstance(module, nn.Upsample):
        return 2 * s_out
    return 0.0


@lru_cache(maxsize=8)
def footprint(cfg: ModelConfig) -> Footprint:
    """The :class:`Footprint` of networks of architecture ``cfg`` (weights do
    not matter), from one forward pass over a small probe on the CPU."""
    model = SliceSegmenter(cfg).eval()
    reaches: list[float | None] = []
    live = _LiveBytes()

    def hook(module: nn.Module, args: tuple, out: object) -> None:
        live.track(*args, out)
        x = args[0] if args else None
        if (
            isinstance(x, torch.Tensor)
            and x.dim() == 4
            and isinstance(out, torch.Tensor)
        ):
            reaches.append(_reach(module, x.shape[-1], out.shape[-1]))

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    probe = torch.zeros(1, cfg.in_channels, PROBE, PROBE)
    probe = probe.contiguous(memory_format=torch.channels_last)
    model.to(memory_format=torch.channels_last)
    live.track(probe)
    try:
        with torch.inference_mode():
            live.track(model(probe).float().softmax(dim=1))
    finally:
        for handle in handles:
            handle.remove()
    radius = None if None in reaches else math.ceil(sum(reaches))  # type: ignore[arg-type]
    per_pixel = (live.peak * RSS_PER_TENSOR_BYTE + probe.nbytes) / PROBE**2
    return Footprint(float(per_pixel), radius, int(model.multiple))


def pixel_bytes(fp: Footprint, context: int, dtype: np.dtype, n_classes: int) -> float:
    """Working set per pixel of predicting one tile or slice: the raw planes
    read (and decoded), the forward pass, pixel statistics and outputs."""
    raw = (2 * context + 1) * 2 * np.dtype(dtype).itemsize
    stats = 4 * n_classes + 16  # probabilities kept, entropy, margin, label, temps
    outputs = 2 + n_classes  # labels, uncertainty, probabilities (uint8)
    return fp.bytes_per_pixel + raw + stats + outputs


@dataclass(frozen=True)
class Tile:
    """One tile: the box read (``read``) and the part of it kept (``core``),
    both as ``(rows, cols)`` slices in slice coordinates."""

    read: tuple[slice, slice]
    core: tuple[slice, slice]

    @property
    def core_in_read(self) -> tuple[slice, slice]:
        """:attr:`core` relative to :attr:`read`."""
        return tuple(  # type: ignore[return-value]
            slice(c.start - r.start, c.stop - r.start)
            for c, r in zip(self.core, self.read, strict=True)
        )


def _spans(n: int, core: int, margin: int) -> list[tuple[slice, slice]]:
    """``(read, core)`` ranges covering ``0..n`` with cores of ``core`` pixels."""
    if core >= n:
        return [(slice(0, n), slice(0, n))]
    return [
        (
            slice(max(0, a - margin), min(n, a + core + margin)),
            slice(a, min(n, a + core)),
        )
        for a in range(0, n, core)
    ]


@dataclass(frozen=True)
class TilePlan:
    """Tiles covering a slice of ``shape`` (rows, cols), with cores of ``core``
    pixels, ``margin`` pixels of overlap and boxes starting on multiples of
    ``multiple``."""

    shape: tuple[int, int]
    core: int
    margin: int
    multiple: int

    def __iter__(self) -> Iterator[Tile]:
        rows = _spans(self.shape[0], self.core, self.margin)
        cols = _spans(self.shape[1], self.core, self.margin)
        for r_read, r_core in rows:
            for c_read, c_core in cols:
                yield Tile((r_read, c_read), (r_core, c_core))

    def __len__(self) -> int:
        return math.prod(math.ceil(n / self.core) for n in self.shape)

    @property
    def read_side(self) -> int:
        """Largest side of a tile's box read."""
        return self.core + 2 * self.margin


def too_large(hw: tuple[int, int], need: float, max_memory: int, what: str) -> str:
    """The start of the message refusing a slice that needs ``need`` bytes."""
    return (
        f"One {hw[0]} × {hw[1]} slice needs about {mib(need)} to {what}, more than "
        f"the memory limit of {mib(max_memory)}"
    )


def plan_tiles(
    hw: tuple[int, int], fp: Footprint, per_pixel: float, max_memory: int, what: str
) -> TilePlan:
    """The largest tiles whose box read fits ``max_memory``.

    :class:`XrmError` with the figures when the network cannot be tiled, or
    when even the smallest tile (one multiple of core plus the margins) does
    not fit; ``what`` names the work in the message.
    """
    refusal = too_large(hw, per_pixel * hw[0] * hw[1], max_memory, what)
    if fp.radius is None:
        raise XrmError(
            f"{refusal}, and this network (global pooling or instance "
            "normalisation) cannot be split into tiles; raise the limit (--max-memory)."
        )
    m, margin = fp.multiple, fp.margin
    side = math.isqrt(int(max_memory / per_pixel))
    core = (side - 2 * margin) // m * m
    if core < m:
        smallest = per_pixel * (m + 2 * margin) ** 2
        raise XrmError(
            f"{refusal}, and even its smallest tile ({m + 2 * margin}² pixels with "
            f"the network's {margin}-pixel margins) needs {mib(smallest)}; raise the "
            "limit (--max-memory)."
        )
    return TilePlan(hw, int(core), margin, m)
