"""The labelled slices of a training run, and crops drawn from them.

Only the annotated slices are read (with their 2.5D context, along each
slice's own axis: slices along z, y and x mix in one training set). Crops are
centred on annotated pixels, so sparse, partial annotations still fill the
batch with labels; a share of crops is centred on pixels of the rarer classes
(picked with probability ∝ frequency^-1/2), which oversamples rare defects
such as voids without ignoring the other minority classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from napari_xrm_al.classes import ClassTable, annotation_to_dense
from napari_xrm_al.core.slice_refs import SliceRef, as_refs, by_axis
from napari_xrm_al.core.slices import (
    read_label_slices,
    read_slices,
    slice_shape,
)
from napari_xrm_al.errors import XrmError, mib
from napari_xrm_al.io.label_ids import check_class_ids

#: At most this many candidate crop centres are kept per class.
MAX_CENTRES = 200_000
#: Default cap on the memory of the labelled slices held for training.
TRAIN_MAX_MEMORY = 4 * 2**30


@dataclass
class LabelledSlices:
    """Raw image slices ``(N, K, H, W)`` along one axis with dense labels ``(N, H, W)``.

    ``labels`` holds dense ids ``0..C-1`` and ``-1`` where nothing is annotated;
    ``counts`` the annotated pixels per class; ``empty`` the requested slices
    that held no annotation (left out); ``centres`` per class the
    ``(slice, row, col)`` of annotated pixels crops may be centred on.
    """

    axis: int
    indices: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    counts: np.ndarray
    empty: list[int] = field(default_factory=list)
    centres: list[np.ndarray] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not self.centres:
            pick = np.random.default_rng(0)
            for c in range(len(self.counts)):
                where = np.argwhere(self.labels == c).astype(np.int32)
                if len(where) > MAX_CENTRES:
                    where = where[pick.choice(len(where), MAX_CENTRES, replace=False)]
                self.centres.append(where)


@dataclass
class LabelledSet:
    """The labelled slices of a training run, one :class:`LabelledSlices` per axis."""

    groups: list[LabelledSlices]

    @property
    def refs(self) -> list[SliceRef]:
        """The slices kept (holding annotated pixels), in z, y, x order."""
        return [SliceRef(g.axis, int(i)) for g in self.groups for i in g.indices]

    @property
    def empty(self) -> list[SliceRef]:
        """The requested slices left out because they hold no annotation."""
        return [SliceRef(g.axis, int(i)) for g in self.groups for i in g.empty]

    @property
    def counts(self) -> np.ndarray:
        """Annotated pixels per class over every slice."""
        return np.sum([g.counts for g in self.groups], axis=0)

    def batch(
        self, n: int, size: int, rare_fraction: float, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` random crops of side ``size``: raw images and dense labels.

        A class is drawn (∝ its pixels, or ∝ pixels^-½ for the ``rare_fraction``
        of crops), then one of its annotated pixels among every axis's slices.
        """
        counts = self.counts.astype(np.float64)
        present = counts > 0
        p_any = counts / counts.sum()
        p_rare = np.zeros_like(counts)
        p_rare[present] = counts[present] ** -0.5
        p_rare /= p_rare.sum()
        # per class, where each group's centres start in the class's joint list
        ends = np.cumsum(
            [[len(g.centres[c]) for g in self.groups] for c in range(len(counts))],
            axis=1,
        )
        k = self.groups[0].images.shape[1]
        xs = np.empty((n, k, size, size), dtype=self.groups[0].images.dtype)
        ys = np.empty((n, size, size), dtype=np.int16)
        for i in range(n):
            p = p_rare if rng.random() < rare_fraction else p_any
            cls = int(rng.choice(len(counts), p=p))
            j = int(rng.integers(ends[cls, -1]))
            g = int(np.searchsorted(ends[cls], j, side="right"))
            group = self.groups[g]
            s, r, c = group.centres[cls][j - (ends[cls, g - 1] if g else 0)]
            h, w = group.labels.shape[1:]
            r, c = (v + int(rng.integers(-size // 4, size // 4 + 1)) for v in (r, c))
            r0 = int(np.clip(r - size // 2, 0, h - size))
            c0 = int(np.clip(c - size // 2, 0, w - size))
            xs[i] = group.images[s, :, r0 : r0 + size, c0 : c0 + size]
            ys[i] = group.labels[s, r0 : r0 + size, c0 : c0 + size]
        return xs, ys


def pad_slices(array: np.ndarray, size: int, fill: int | None = None) -> np.ndarray:
    """``(..., H, W)`` padded after its last rows and columns to at least
    ``size`` a side: with edge values (images), or ``fill`` (labels)."""
    ph, pw = (max(0, size - s) for s in array.shape[-2:])
    if not (ph or pw):
        return array
    pad = [(0, 0)] * (array.ndim - 2) + [(0, ph), (0, pw)]
    if fill is None:
        return np.pad(array, pad, mode="edge")
    return np.pad(array, pad, constant_values=fill)


def dense_slice_labels(
    raw: np.ndarray, indices: Sequence[int], classes: ClassTable, dense: bool
) -> np.ndarray:
    """Label slices → dense ids with ``-1`` = not annotated; clear errors on bad values."""
    n = len(classes)
    for lab, i in zip(raw, indices, strict=True):
        top = int(lab.max()) if lab.size else 0
        bottom = int(lab.min()) if lab.size else 0
        if bottom < 0 or top > (n - 1 if dense else n):
            bad = bottom if bottom < 0 else top
            what = (
                f"dense class ids 0..{n - 1}"
                if dense
                else f"annotation ids 0..{n} (0 = none)"
            )
            raise XrmError(
                f"Label value {bad} in slice {i} is not one of the {what} "
                f"for the classes {list(classes.names)}."
            )
    if dense:
        return raw.astype(np.int16)
    return annotation_to_dense(raw)


def labelled_bytes(image, labels, n: int, axis: str | int, context: int) -> int:
    """Memory that :func:`load_labelled` holds for ``n`` slices: the image planes
    with context, the labels as read and as dense ids, and the crop centres."""
    h, w = slice_shape(image.shape, axis)
    image_bytes = (2 * context + 1) * np.dtype(image.dtype).itemsize
    # as read, as int16 ids, the annotated mask, centres (int64 then int32)
    label_bytes = np.dtype(labels.dtype).itemsize + 2 + 1 + 36
    return n * h * w * (image_bytes + label_bytes)


def load_labelled(
    image,
    labels,
    slices: Sequence[SliceRef | int],
    classes: ClassTable,
    *,
    axis: str = "z",
    context: int = 1,
    dense_labels: bool = False,
    pad_to: int | None = None,
    max_memory: int = TRAIN_MAX_MEMORY,
) -> LabelledSet:
    """Read the labelled slices (and their context) of ``image`` and ``labels``.

    ``slices``: :class:`~napari_xrm_al.core.slice_refs.SliceRef` along any
    axis, or plain indices along ``axis``. The slices are taken in axis order
    whatever the order of ``slices``, so a seeded training run depends on which
    slices are labelled, not on the order they were labelled in. ``pad_to``
    pads slices smaller than a crop (image: edge values, labels: not
    annotated). :class:`XrmError` with the figures, before anything is read,
    when the slices need more than ``max_memory``.
    """
    if tuple(image.shape) != tuple(labels.shape):
        raise XrmError(
            f"The labels' shape {tuple(labels.shape)} differs from the image's "
            f"{tuple(image.shape)}."
        )
    check_class_ids(labels)
    groups = by_axis(as_refs(slices, axis))
    if not groups:
        raise XrmError("No labelled slices were given.")
    need = sum(
        labelled_bytes(image, labels, len(indices), ax, context)
        for ax, indices in groups.items()
    )
    if need > max_memory:
        n = sum(len(indices) for indices in groups.values())
        sizes = " and ".join(
            "{} × {}".format(*slice_shape(image.shape, ax)) for ax in groups
        )
        raise XrmError(
            f"The {n} labelled {sizes} slices (with {context} context "
            f"slices each side) need about {mib(need)} to train on, more than the "
            f"memory limit of {mib(max_memory)}; label fewer slices, crop the "
            "volume or raise the limit (--max-memory)."
        )
    loaded = [
        _load_axis(image, labels, ax, indices, classes, context, dense_labels, pad_to)
        for ax, indices in groups.items()
    ]
    if not any(len(g.indices) for g in loaded):
        named = ", ".join(str(r) for r in as_refs(slices, axis))
        raise XrmError(f"None of the slices {named} holds annotated pixels.")
    return LabelledSet(loaded)


def _load_axis(
    image,
    labels,
    ax: int,
    indices: list[int],
    classes: ClassTable,
    context: int,
    dense: bool,
    pad_to: int | None,
) -> LabelledSlices:
    """The annotated ones of ``indices`` along ``ax`` (see :func:`load_labelled`)."""
    lab = dense_slice_labels(
        read_label_slices(labels, indices, ax), indices, classes, dense
    )
    annotated = (lab >= 0).any(axis=(1, 2))
    keep = [i for i, a in zip(indices, annotated, strict=True) if a]
    lab = lab[annotated]
    img = read_slices(image, keep, ax, context)
    if pad_to:
        img, lab = pad_slices(img, pad_to), pad_slices(lab, pad_to, fill=-1)
    counts = np.bincount(lab[lab >= 0].ravel(), minlength=len(classes))[: len(classes)]
    return LabelledSlices(
        axis=ax,
        indices=np.asarray(keep, dtype=np.int64),
        images=img,
        labels=lab,
        counts=counts,
        empty=[i for i, a in zip(indices, annotated, strict=True) if not a],
    )
