"""2D slices (with 2.5D context) of a 3D volume along any axis.

Volumes are (z, y, x) array-likes that support basic slicing (numpy, memmap,
zarr, dask, tifffile stores) and may not fit in memory: only the planes asked
for are read, and of them only the ``region`` (rows, cols) asked for.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from napari_xrm_al.errors import XrmError
from napari_xrm_al.io.array_reads import read_block

AXES = {"z": 0, "y": 1, "x": 2}
AXIS_NAMES = ("z", "y", "x")
#: One item of a slice list: an index or an inclusive range ``first-last``.
SLICE_ITEM = re.compile(r"(\d+)(?:-(\d+))?")


def parse_slice_list(text: str, what: str, *, allow_empty: bool = False) -> list[int]:
    """``"3, 17 40-45"`` → sorted unique slice indices.

    Indices and inclusive ranges, separated by commas or spaces. ``what``
    names the field or option in error messages (e.g. ``"--slices"``).
    """
    out: set[int] = set()
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        match = SLICE_ITEM.fullmatch(part)
        if match is None:
            raise XrmError(
                f"{what} must be slice numbers or ranges separated by commas, "
                f"like 3,17,40-45; got {text!r}."
            )
        first, last = match.groups()
        if last is not None and int(last) < int(first):
            raise XrmError(f"{what}: the range {part} runs backwards.")
        out.update(range(int(first), int(last or first) + 1))
    if not out and not allow_empty:
        raise XrmError(f"{what} is empty.")
    return sorted(out)


def axis_index(axis: str | int) -> int:
    """``'z'``/``'y'``/``'x'`` (or 0/1/2) → array axis 0/1/2."""
    if isinstance(axis, str) and axis.lower() in AXES:
        return AXES[axis.lower()]
    if isinstance(axis, int | np.integer) and 0 <= int(axis) <= 2:
        return int(axis)
    raise XrmError(f"Slice axis must be one of z, y, x (or 0, 1, 2), got {axis!r}.")


def axis_name(axis: str | int) -> str:
    """Canonical name ``'z'``, ``'y'`` or ``'x'`` of ``axis``."""
    return AXIS_NAMES[axis_index(axis)]


def n_slices(shape: Sequence[int], axis: str | int) -> int:
    """Number of slices of a volume of ``shape`` along ``axis``."""
    return int(shape[axis_index(axis)])


def slice_shape(shape: Sequence[int], axis: str | int) -> tuple[int, int]:
    """(H, W) of one slice along ``axis``."""
    ax = axis_index(axis)
    return tuple(int(s) for i, s in enumerate(shape) if i != ax)  # type: ignore[return-value]


#: In-plane ``(rows, cols)`` of a slice to read; None = the whole slice.
Region = tuple[slice, slice] | None


def _read_range(data, ax: int, start: int, stop: int, region: Region) -> np.ndarray:
    """Planes ``start..stop-1`` along ``ax`` (their ``region``), moved to the
    front: (n, H, W)."""
    key = list(region or (slice(None), slice(None)))
    key.insert(ax, slice(start, stop))
    # Contiguous first: a plane across the last axis of an in-memory volume is
    # a gather with a stride of a whole row, five times slower to copy out.
    return np.moveaxis(np.ascontiguousarray(read_block(data, tuple(key))), ax, 0)


def region_shape(
    shape: Sequence[int], axis: str | int, region: Region
) -> tuple[int, int]:
    """(H, W) of ``region`` of a slice along ``axis`` (the whole slice if None)."""
    hw = slice_shape(shape, axis)
    if region is None:
        return hw
    return tuple(len(range(*r.indices(n))) for r, n in zip(region, hw, strict=True))  # type: ignore[return-value]


def _runs(values: np.ndarray) -> list[tuple[int, int]]:
    """Sorted unique ints → list of contiguous ``(start, stop)`` runs."""
    breaks = np.flatnonzero(np.diff(values) != 1) + 1
    return [(int(r[0]), int(r[-1]) + 1) for r in np.split(values, breaks)]


def read_slices(
    data,
    indices: Sequence[int],
    axis: str | int = "z",
    context: int = 0,
    region: Region = None,
) -> np.ndarray:
    """Raw slices with their neighbours as channels.

    Returns an array of shape ``(N, 2*context+1, H, W)`` in ``data``'s dtype:
    channel ``j`` of item ``n`` is slice ``indices[n] - context + j``, with the
    volume's edge slices replicated beyond its ends; ``region`` (rows, cols)
    reads part of each slice. Each needed plane is read once, in contiguous runs.
    """
    ax = axis_index(axis)
    size = int(data.shape[ax])
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= size):
        bad = idx[(idx < 0) | (idx >= size)][0]
        raise XrmError(
            f"Slice {int(bad)} is outside 0..{size - 1} along axis {axis_name(ax)}."
        )
    if context < 0:
        raise XrmError(f"Context must be >= 0, got {context}.")
    h, w = region_shape(data.shape, ax, region)
    offsets = np.arange(-context, context + 1)
    wanted = np.clip(idx[:, None] + offsets[None, :], 0, size - 1)  # (N, K)
    needed = np.unique(wanted)
    out = np.empty((idx.size, offsets.size, h, w), dtype=data.dtype)
    if not needed.size:
        return out
    planes = {}
    for start, stop in _runs(needed):
        block = _read_range(data, ax, start, stop, region)
        for k in range(stop - start):
            planes[start + k] = block[k]
    for n in range(idx.size):
        for j in range(offsets.size):
            out[n, j] = planes[int(wanted[n, j])]
    return out


def read_planes(
    data, indices: Sequence[int], axis: str | int = "z", region: Region = None
) -> np.ndarray:
    """Planes ``indices`` (ascending, unique) along ``axis`` as ``(N, H, W)``
    (their ``region`` only, if given).

    Read in contiguous runs; a single run is returned as read (no further copy).
    """
    ax = axis_index(axis)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    runs = _runs(idx) if idx.size else []
    if len(runs) == 1:
        return _read_range(data, ax, *runs[0], region)
    out = np.empty((idx.size, *region_shape(data.shape, ax, region)), dtype=data.dtype)
    at = 0
    for start, stop in runs:
        out[at : at + stop - start] = _read_range(data, ax, start, stop, region)
        at += stop - start
    return out


def read_label_slices(
    data, indices: Sequence[int], axis: str | int = "z"
) -> np.ndarray:
    """Label slices ``(N, H, W)`` along ``axis`` (no context)."""
    return read_slices(data, indices, axis, 0)[:, 0]
