"""From what a format opener found to a ``(z, y, x)`` volume: pick the channel,
drop singleton axes, put the stack axis first and refuse what is not a 3D
volume of numbers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_xrm_al.errors import InputError
from napari_xrm_al.io._source import RawVolume

_DTYPE_KINDS = {
    "b": "boolean",
    "c": "complex",
    "O": "Python-object",
    "V": "structured (record)",
    "U": "text",
    "S": "byte-string",
    "M": "date-time",
    "m": "time-delta",
}


class MultichannelError(InputError):
    """A volume with several channels (or RGB samples) and no channel chosen."""

    def __init__(
        self, path: str | os.PathLike[str], problem: str, n: int, rgb: bool
    ) -> None:
        super().__init__(path, problem)
        self.n_channels = n
        self.rgb = rgb


def channel_note(channel: int, n: int) -> str:
    """The note a volume opened with ``channel=`` carries."""
    return f"Channel {channel} of {n} is used."


def _lazy_view(array: Any, index: tuple[Any, ...], order: tuple[int, ...]) -> Any:
    """``array[index].transpose(order)`` without reading any data."""
    if all(i == slice(None) for i in index) and order == tuple(range(len(order))):
        return array
    if isinstance(array, np.ndarray):
        return array[index].transpose(order)
    import dask.array as da

    return da.from_array(array, chunks=array.chunks, lock=False)[index].transpose(order)


def _describe(shape: Sequence[int], axes: str) -> str:
    return f"shape {tuple(shape)}, axes {axes}"


def resolve_axes(
    path: Path, raw: RawVolume, channel: int | None
) -> tuple[list[Any], list[str]]:
    """Pick the channel, drop singleton axes and order the rest as (z, y, x)."""
    shape = tuple(int(n) for n in raw.levels[0].shape)
    axes = raw.axes
    notes: list[str] = []
    kept = [
        i
        for i, (n, a) in enumerate(zip(shape, axes, strict=True))
        if n > 1 or a in "YX"
    ]
    channels = [i for i in kept if axes[i] in "CS"]
    stack = [i for i in kept if axes[i] not in "CSYX"]
    if "Y" not in axes or "X" not in axes or len(channels) > 1 or len(stack) > 1:
        raise InputError(
            path,
            f"has {len(kept)} dimensions ({_describe(shape, axes)}); only 3D "
            "volumes (z, y, x), optionally with one channel axis, are supported",
        )
    if not stack and channels and axes[channels[0]] == "C":
        # No 2D multichannel image is usable; files written by tifffile with
        # imagej=True and no axes store stacks this way.
        stack, channels = channels, []
        notes.append(
            f"The metadata name {shape[stack[0]]} channels and no slices; the "
            "channels are read as z slices."
        )
    what = "an RGB" if raw.rgb else "a multichannel"
    if not stack:
        plane = " × ".join(str(shape[axes.index(a)]) for a in "YX")
        kind = f"{what} 2D image" if channels else "a 2D image"
        raise InputError(
            path,
            f"is {kind} ({plane}), not a volume; open a 3D stack or a folder "
            "of 2D slices instead",
        )
    index: list[Any] = [slice(None) if i in kept else 0 for i in range(len(shape))]
    if channels:
        n = shape[channels[0]]
        if channel is None:
            raise MultichannelError(
                path,
                f"is {what} stack with {n} channels ({_describe(shape, axes)}); "
                "choose one with channel=N (command line: --channel N); napari "
                "opens each channel as its own image layer",
                n,
                raw.rgb,
            )
        if not 0 <= channel < n:
            raise InputError(
                path,
                f"has {n} channels (0 to {n - 1}); channel {channel} does not exist",
            )
        index[channels[0]] = channel
        notes.append(channel_note(channel, n))
    elif channel not in (None, 0):
        raise InputError(
            path, f"has a single channel; channel {channel} does not exist"
        )
    if axes[stack[0]] == "T":
        notes.append(f"The time axis ({shape[stack[0]]} frames) is read as z.")
    remaining = [i for i in range(len(shape)) if isinstance(index[i], slice)]
    order = tuple(
        remaining.index(i) for i in (stack[0], axes.index("Y"), axes.index("X"))
    )
    return [_lazy_view(level, tuple(index), order) for level in raw.levels], notes


def check_dtype(path: Path, dtype: np.dtype) -> None:
    if dtype.kind in "uif" and dtype.fields is None:
        return
    kind = _DTYPE_KINDS.get(dtype.kind, "non-numeric")
    raise InputError(
        path,
        f"holds {kind} data ({dtype}); only integer or real floating-point "
        "volumes can be opened",
    )
