"""Slices named by axis and index: ``z:40``, ``y:100``, ``x:7``.

A project paints slices along z, y and x of the same volume, so a slice is an
(axis, index) pair, :class:`SliceRef`. A plain index (``40``) means the
project's own axis, so lists of plain ints keep working everywhere.

Rankings and batch pickers work on one int per slice, its *code*
(:func:`slice_codes`): ``axis * CODE_STRIDE + index``. Slices of different
axes are then always far apart, so a minimum distance along an axis never
couples two axes, and a z-slice's code is its index.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from napari_xrm_al.core.slices import (
    AXIS_NAMES,
    SLICE_ITEM,
    axis_index,
    parse_slice_list,
)
from napari_xrm_al.errors import XrmError

#: Code offset between consecutive axes (more than any volume's slice count).
CODE_STRIDE = 1 << 32

_AXIS_PREFIX = re.compile(r"([zyxZYX]):(.+)")


class SliceRef(NamedTuple):
    """One slice of a volume: ``axis`` 0/1/2 (z/y/x) and ``index`` along it.

    Sorts in z, y, x order, then by index; ``str()`` gives ``'z:40'``.
    """

    axis: int
    index: int

    @classmethod
    def of(cls, axis: str | int, index: int) -> SliceRef:
        """``SliceRef.of('y', 3)``: the axis by name or number."""
        return cls(axis_index(axis), int(index))

    @property
    def axis_name(self) -> str:
        """``'z'``, ``'y'`` or ``'x'``."""
        return AXIS_NAMES[self.axis]

    @property
    def code(self) -> int:
        """The one int a ranking uses for this slice (see the module)."""
        return self.axis * CODE_STRIDE + self.index

    def pair(self) -> list[Any]:
        """``['z', 40]``: how ``session.json`` records it."""
        return [self.axis_name, self.index]

    def __str__(self) -> str:
        return f"{self.axis_name}:{self.index}"


def as_ref(item: SliceRef | int | Sequence[Any], default_axis: str | int) -> SliceRef:
    """``item`` as a :class:`SliceRef`: a plain index is along ``default_axis``;
    a pair ``('y', 3)`` or ``(1, 3)`` names its axis."""
    if isinstance(item, SliceRef):
        return item
    if isinstance(item, int | np.integer):
        return SliceRef.of(default_axis, int(item))
    axis, index = item
    return SliceRef.of(axis, int(index))


def as_refs(
    items: Iterable[SliceRef | int | Sequence[Any]], default_axis: str | int
) -> list[SliceRef]:
    """Sorted unique :class:`SliceRef` of ``items`` (see :func:`as_ref`)."""
    return sorted({as_ref(i, default_axis) for i in items})


def slice_codes(refs: Iterable[SliceRef]) -> np.ndarray:
    """``(N,)`` int64 codes of ``refs`` (see the module)."""
    return np.asarray([r.code for r in refs], dtype=np.int64)


def ref_of_code(code: int) -> SliceRef:
    """The slice a code stands for."""
    axis, index = divmod(int(code), CODE_STRIDE)
    return SliceRef(axis, index)


def axes_of(refs: Iterable[SliceRef]) -> list[int]:
    """The axes ``refs`` lie along, in z, y, x order."""
    return sorted({r.axis for r in refs})


def by_axis(refs: Iterable[SliceRef]) -> dict[int, list[int]]:
    """Indices of ``refs`` grouped by axis: ``{0: [3, 7], 1: [100]}``, sorted."""
    groups: dict[int, list[int]] = {}
    for ref in sorted(set(refs)):
        groups.setdefault(ref.axis, []).append(ref.index)
    return groups


def parse_axes(text: str, what: str) -> list[int]:
    """``"z,y,x"`` → ``[0, 1, 2]``: the axes named, in z, y, x order."""
    names = [p for p in re.split(r"[,\s]+", text.strip().lower()) if p]
    bad = [n for n in names if n not in AXIS_NAMES]
    if bad or not names:
        raise XrmError(
            f"{what} must name axes among z, y, x, like z,y,x; got {text!r}."
        )
    return sorted({axis_index(n) for n in names})


def parse_slice_refs(
    text: str, what: str, default_axis: str | int, *, allow_empty: bool = False
) -> list[SliceRef]:
    """``"40, y:100-102 x:7"`` → sorted unique :class:`SliceRef`.

    Each item is an index or an inclusive range, optionally after ``z:``,
    ``y:`` or ``x:``; a bare one is along ``default_axis``. Items are
    separated by commas or spaces; ``what`` names the option in errors.
    """
    out: set[SliceRef] = set()
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        match = _AXIS_PREFIX.fullmatch(part)
        axis, numbers = match.groups() if match else (None, part)
        if not SLICE_ITEM.fullmatch(numbers):
            raise XrmError(
                f"{what} must be slice numbers or ranges, each optionally after "
                f"z:, y: or x:, separated by commas, like 3,17,y:40-45; got {text!r}."
            )
        ax = axis_index(axis.lower() if axis else default_axis)
        indices = parse_slice_list(numbers, what, allow_empty=True)
        out.update(SliceRef(ax, i) for i in indices)
    if not out and not allow_empty:
        raise XrmError(f"{what} is empty.")
    return sorted(out)


def format_slice_refs(refs: Iterable[SliceRef]) -> str:
    """``[z:3, y:100]`` → ``'z:3,y:100'`` (what :func:`parse_slice_refs` reads)."""
    return ",".join(str(r) for r in sorted(set(refs)))


def uncovered(
    plane: np.ndarray, ref: SliceRef, others: Iterable[SliceRef]
) -> np.ndarray:
    """Mask of the nonzero pixels of slice ``ref`` (``plane``) lying on none of
    ``others``: what is painted there beyond the lines other slices cross it in."""
    mask = np.asarray(plane) != 0
    in_plane = [a for a in range(3) if a != ref.axis]
    for other in others:
        if other.axis != ref.axis:
            key: list[slice | int] = [slice(None)] * 2
            key[in_plane.index(other.axis)] = other.index
            mask[tuple(key)] = False
    return mask


def check_in_volume(refs: Iterable[SliceRef], shape: Sequence[int]) -> None:
    """:class:`XrmError` naming the first slice outside a volume of ``shape``."""
    for ref in refs:
        count = int(shape[ref.axis])
        if not 0 <= ref.index < count:
            raise XrmError(
                f"Slice {ref} is outside the volume's {count} slices along "
                f"{ref.axis_name} (0..{count - 1})."
            )


#: Voxel anisotropy (longest over shortest side) above which slices along
#: several axes are trained on with a warning, and refused unless forced.
WARN_ANISOTROPY, MAX_ANISOTROPY = 2.0, 4.0


def anisotropy_note(
    voxel_size: Sequence[float] | None,
    axes: Iterable[int],
    *,
    force: bool = False,
    force_option: str = "--force-anisotropic",
) -> str | None:
    """A warning when slices along ``axes`` have strongly non-square pixels.

    The pixels of a slice along one axis span the other two, so the sizes that
    matter are those of every axis in the plane of some slice used. Above
    :data:`WARN_ANISOTROPY` the note says so; above :data:`MAX_ANISOTROPY`
    :class:`XrmError` refuses, unless ``force``; its message names
    ``force_option``, the control that forces it. Unknown voxel size or no
    axes: None.
    """
    axes = set(axes)
    if voxel_size is None or not axes:
        return None
    in_plane = sorted({b for a in axes for b in range(3) if b != a})
    sizes = [float(voxel_size[b]) for b in in_plane]
    ratio = max(sizes) / min(sizes)
    if ratio <= WARN_ANISOTROPY:
        return None
    names = ", ".join(AXIS_NAMES[a] for a in sorted(axes))
    sides = " × ".join(f"{voxel_size[b]:g}" for b in range(3))
    text = (
        f"the voxels are {sides} (z × y × x), {ratio:.1f}:1, so slices along "
        f"{names} see the structures stretched by up to that much"
    )
    if ratio > MAX_ANISOTROPY and not force:
        raise XrmError(
            f"Slices along {names} are refused: {text}; resample the scan to "
            f"near-isotropic voxels, use slices along z only, or force it "
            f"({force_option})."
        )
    return f"{text}; the network may learn less from them."
