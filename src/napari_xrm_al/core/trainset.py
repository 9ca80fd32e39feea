"""The labelled slices of a training run, and crops drawn from them.

Only the annotated slices are read (with their 2.5D context). Crops are
centred on annotated pixels, so sparse, partial annotations still fill the
batch with labels; a share of crops is centred on pixels of the rarer classes
(picked with probability ∝ frequency^-1/2), which oversamples rare defects
such as voids without ignoring the other minority classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from napari_xrm_al.core.classes import (
    ClassTable,
    annotation_to_dense,
    check_class_ids,
)
from napari_xrm_al.core.slices import (
    axis_name,
    read_label_slices,
    read_slices,
    slice_shape,
)
from napari_xrm_al.errors import XrmError, mib

#: At most this many candidate crop centres are kept per class.
MAX_CENTRES = 200_000
#: Default cap on the memory of the labelled slices held for training.
TRAIN_MAX_MEMORY = 4 * 2**30


@dataclass
class LabelledSlices:
    """Raw image slices ``(N, K, H, W)`` with dense labels ``(N, H, W)``.

    ``labels`` holds dense ids ``0..C-1`` and ``-1`` where nothing is annotated;
    ``counts`` the annotated pixels per class; ``empty`` the requested slices
    that held no annotation (left out).
    """

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

    def batch(
        self, n: int, size: int, rare_fraction: float, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` random crops of side ``size``: raw images and dense labels."""
        counts = self.counts.astype(np.float64)
        present = counts > 0
        p_any = counts / counts.sum()
        p_rare = np.zeros_like(counts)
        p_rare[present] = counts[present] ** -0.5
        p_rare /= p_rare.sum()
        _, k, h, w = self.images.shape
        xs = np.empty((n, k, size, size), dtype=self.images.dtype)
        ys = np.empty((n, size, size), dtype=np.int16)
        for i in range(n):
            p = p_rare if rng.random() < rare_fraction else p_any
            cls = int(rng.choice(len(counts), p=p))
            s, r, c = self.centres[cls][rng.integers(len(self.centres[cls]))]
            r, c = (v + int(rng.integers(-size // 4, size // 4 + 1)) for v in (r, c))
            r0 = int(np.clip(r - size // 2, 0, h - size))
            c0 = int(np.clip(c - size // 2, 0, w - size))
            xs[i] = self.images[s, :, r0 : r0 + size, c0 : c0 + size]
            ys[i] = self.labels[s, r0 : r0 + size, c0 : c0 + size]
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
    slices: Sequence[int],
    classes: ClassTable,
    *,
    axis: str = "z",
    context: int = 1,
    dense_labels: bool = False,
    pad_to: int | None = None,
    max_memory: int = TRAIN_MAX_MEMORY,
) -> LabelledSlices:
    """Read the labelled slices (and their context) of ``image`` and ``labels``.

    The slices are taken in axis order whatever the order of ``slices``, so a
    seeded training run depends on which slices are labelled, not on the
    order they were labelled in. ``pad_to`` pads slices smaller than a crop
    (image: edge values, labels: not annotated). :class:`XrmError` with the
    figures, before anything is read, when the slices need more than
    ``max_memory``.
    """
    if tuple(image.shape) != tuple(labels.shape):
        raise XrmError(
            f"The labels' shape {tuple(labels.shape)} differs from the image's "
            f"{tuple(image.shape)}."
        )
    check_class_ids(labels)
    indices = sorted({int(i) for i in slices})
    if not indices:
        raise XrmError("No labelled slices were given.")
    need = labelled_bytes(image, labels, len(indices), axis, context)
    if need > max_memory:
        h, w = slice_shape(image.shape, axis)
        raise XrmError(
            f"The {len(indices)} labelled {h} × {w} slices (with {context} context "
            f"slices each side) need about {mib(need)} to train on, more than the "
            f"memory limit of {mib(max_memory)}; label fewer slices, crop the "
            "volume or raise the limit (--max-memory)."
        )
    lab = dense_slice_labels(
        read_label_slices(labels, indices, axis), indices, classes, dense_labels
    )
    annotated = (lab >= 0).any(axis=(1, 2))
    if not annotated.any():
        raise XrmError(
            f"None of the slices {indices} along {axis_name(axis)} holds annotated pixels."
        )
    keep = [i for i, a in zip(indices, annotated, strict=True) if a]
    lab = lab[annotated]
    img = read_slices(image, keep, axis, context)
    if pad_to:
        img, lab = pad_slices(img, pad_to), pad_slices(lab, pad_to, fill=-1)
    counts = np.bincount(lab[lab >= 0].ravel(), minlength=len(classes))[: len(classes)]
    return LabelledSlices(
        indices=np.asarray(keep),
        images=img,
        labels=lab,
        counts=counts,
        empty=[i for i, a in zip(indices, annotated, strict=True) if not a],
    )
