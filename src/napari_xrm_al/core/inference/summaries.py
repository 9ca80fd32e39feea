"""Per-slice summaries of a prediction: what acquisition ranks slices by.

They are computed on the fly from each batch's class probabilities, so ranking
never needs a probability volume. Entropies are in nats.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from napari_xrm_al.errors import InputError
from napari_xrm_al.io._source import reading
from napari_xrm_al.io.atomic import atomic_path

_TINY = 1e-12


@dataclass
class SliceSummary:
    """Per-slice quantities along the slice axis, for acquisition.

    Attributes
    ----------
    index
        ``(S,)`` slice indices scored, ascending.
    mean_entropy
        ``(S,)`` mean pixel entropy ``-Σ_c p_c log p_c``.
    mean_margin
        ``(S,)`` mean of ``1 - (p1 - p2)`` (top two probabilities).
    class_fraction
        ``(S, C)`` fraction of pixels predicted (argmax) as each class.
    entropy_by_class
        ``(S, C)`` mean over pixels of ``entropy * [argmax == c]``; summed over
        ``c`` it is ``mean_entropy``.
    bald
        ``(S,)`` mean MC-dropout mutual information (when sampled).
    embedding
        ``(S, D)`` pooled encoder embeddings (when computed).
    """

    index: np.ndarray
    mean_entropy: np.ndarray
    mean_margin: np.ndarray
    class_fraction: np.ndarray
    entropy_by_class: np.ndarray
    bald: np.ndarray | None = None
    embedding: np.ndarray | None = None

    def __len__(self) -> int:
        return int(len(self.index))

    @classmethod
    def concat(cls, parts: Sequence[SliceSummary]) -> SliceSummary:
        """Join summaries of consecutive batches."""

        def join(name: str) -> np.ndarray | None:
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else np.concatenate(values)

        return cls(**{f.name: join(f.name) for f in fields(cls)})

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to an ``.npz`` file atomically (e.g. a session's cache)."""
        arrays = {f.name: getattr(self, f.name) for f in fields(self)}
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **{k: v for k, v in arrays.items() if v is not None})
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SliceSummary:
        """Read a summary written by :meth:`save`; :class:`InputError` if it is
        unreadable (truncated, damaged) or lacks a field."""
        optional = {"bald", "embedding"}
        names = [f.name for f in fields(cls)]
        arrays = read_arrays(
            path, [n for n in names if n not in optional], "a slice summary", optional
        )
        return cls(**{n: arrays.get(n) for n in names})


def read_arrays(
    path: str | os.PathLike[str],
    required: Sequence[str],
    what: str,
    optional: Iterable[str] = (),
) -> dict[str, np.ndarray]:
    """The ``required`` (and present ``optional``) arrays of an ``.npz`` file.

    Every array is read whole, so damaged bytes (a CRC mismatch, a cut file)
    show here. Raises :class:`InputError` naming the file if it cannot be
    read as ``what`` or lacks a required array; pickled objects are refused.
    """
    path = Path(path)
    with reading(path, what), np.load(path) as npz:
        missing = [name for name in required if name not in npz.files]
        if missing:
            raise InputError(path, f"is not {what} (no {', '.join(missing)})")
        wanted = [*required, *(n for n in optional if n in npz.files)]
        return {name: npz[name] for name in wanted}


def pixel_entropy(probs: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Entropy (nats) of probabilities along ``dim``.

    Summed class by class with in-place operations: several times faster on
    a CPU than the vectorised form, which allocates full-size temporaries.
    """
    out = torch.zeros_like(probs.select(dim, 0))
    term = torch.empty_like(out)
    for c in range(probs.shape[dim]):
        pc = probs.select(dim, c)
        torch.clamp_min(pc, _TINY, out=term).log_().mul_(pc)
        out.sub_(term)
    return out


@dataclass
class PixelStats:
    """Per-pixel quantities of a batch, computed once for summaries and outputs.

    Attributes
    ----------
    probs
        ``(B, C, H, W)`` float32 probabilities (contiguous).
    entropy, margin
        ``(B, H, W)`` entropy (nats) and ``1 - (p1 - p2)``.
    label
        ``(B, H, W)`` dense argmax (the first class on ties).
    """

    probs: torch.Tensor
    entropy: torch.Tensor
    margin: torch.Tensor
    label: torch.Tensor


def pixel_stats(probs: torch.Tensor) -> PixelStats:
    """:class:`PixelStats` of probabilities ``(B, C, H, W)``.

    The class axis is short, so the top two probabilities and the argmax are
    tracked with a few in-place element-wise operations per class: an order
    of magnitude faster on a CPU than ``argmax``/``topk`` over ``dim=1``.
    """
    probs = probs.float().contiguous()
    n = probs.shape[1]
    best = probs[:, 0].clone()
    second = torch.zeros_like(best)
    tmp = torch.empty_like(best)
    for c in range(1, n):
        pc = probs[:, c]
        torch.maximum(second, torch.minimum(best, pc, out=tmp), out=second)
        torch.maximum(best, pc, out=best)
    dtype = torch.uint8 if n <= 256 else torch.int32
    label = torch.zeros(best.shape, dtype=dtype, device=best.device)
    hit = torch.empty(best.shape, dtype=torch.bool, device=best.device)
    keep = torch.empty_like(label)
    for c in reversed(range(n)):  # arithmetic, not masked writes (slow on CPU)
        is_max = torch.eq(probs[:, c], best, out=hit).to(dtype)
        label.mul_(torch.sub(1, is_max, out=keep)).add_(is_max * c)
    margin = second.sub_(best).add_(1.0)
    return PixelStats(probs, pixel_entropy(probs), margin, label)


def summarise(stats: PixelStats) -> dict[str, np.ndarray]:
    """Per-slice summaries of a batch.

    Returns ``mean_entropy`` and ``mean_margin`` ``(B,)``, ``class_fraction``
    and ``entropy_by_class`` ``(B, C)``, as float64 numpy arrays.
    """
    b, c = stats.probs.shape[:2]
    pixels = stats.entropy[0].numel()
    offset = c * torch.arange(b, device=stats.label.device)[:, None]
    key = (stats.label.flatten(1).long() + offset).flatten()
    counts = torch.bincount(key, minlength=b * c).view(b, c)
    by_class = torch.bincount(key, weights=stats.entropy.flatten(), minlength=b * c)
    out = {
        "mean_entropy": stats.entropy.flatten(1).mean(1),
        "mean_margin": stats.margin.flatten(1).mean(1),
        "class_fraction": counts.double() / pixels,
        "entropy_by_class": by_class.view(b, c).double() / pixels,
    }
    return {k: v.double().cpu().numpy() for k, v in out.items()}


def mutual_information(samples: torch.Tensor) -> torch.Tensor:
    """Per-pixel BALD score of MC samples ``(T, B, C, H, W)`` → ``(B, H, W)``.

    ``H(mean_t p_t) - mean_t H(p_t)``: zero when all samples agree (e.g. T = 1).
    """
    mean_entropy = pixel_entropy(samples, dim=2).mean(0)
    return (pixel_entropy(samples.mean(0), dim=1) - mean_entropy).clamp_min(0.0)
