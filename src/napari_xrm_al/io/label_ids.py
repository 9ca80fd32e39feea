"""Checks of the ids a label volume stores: integer classes, dense or annotation.

Both read the volume itself (a subsample, or a slab of planes at a time), so
they live in ``io/`` above the class table of :mod:`napari_xrm_al.classes`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from napari_xrm_al.errors import InputError, XrmError
from napari_xrm_al.io.array_reads import subsample

#: Voxels read at a time by :func:`ambiguous_ids`.
_SLAB_VOXELS = 2**22


def check_class_ids(labels: Any, source: str | os.PathLike[str] | None = None) -> None:
    """Refuse labels that are not stored as integers: class ids are whole numbers.

    Float labels would be cut silently (``1.7`` trained as class 1), so they
    are refused whatever their values, before any is used. The error names
    ``source`` (when given) and a value from a small subsample, a fractional
    or NaN one if there is one; only this error path reads any voxels.
    """
    dtype = np.dtype(labels.dtype)
    if dtype.kind in "iu":
        return
    sample = subsample(labels, max_voxels=100_000) if dtype.kind in "fc" else None
    example = ""
    if sample is not None and sample.size:
        odd = sample[sample != np.round(sample)]
        example = f" such as {(odd if odd.size else sample)[0]:g}"
    problem = (
        f"holds {dtype} values{example}; class ids must be integers "
        "(save the labels with an integer type)"
    )
    if source is not None:
        raise InputError(source, problem)
    raise XrmError(f"The labels {problem}.")


def ambiguous_ids(labels: Any, n_classes: int) -> bool:
    """Whether a label volume reads as dense ids as well as annotation ids.

    True when 0 is in most voxels, every id ``0..C-1`` is present and none is
    larger: dense ground truth (0 = the first class, usually the commonest)
    then looks like sparse annotations (0 = not annotated), and reading one as
    the other shifts every class by one. ``labels`` (any array with ``shape``
    and slicing, e.g. zarr) is read a slab of planes at a time; reading stops at
    the first id above ``C - 1``, which only annotation ids allow.
    """
    if not np.issubdtype(labels.dtype, np.integer) or not labels.size:
        return False
    plane = int(np.prod(labels.shape[1:])) or 1
    step = max(1, _SLAB_VOXELS // plane)
    counts = np.zeros(n_classes, np.int64)
    for start in range(0, labels.shape[0], step):
        slab = np.asarray(labels[start : start + step])
        if slab.min() < 0 or slab.max() >= n_classes:
            return False
        counts += np.bincount(slab.ravel(), minlength=n_classes)
    return bool((counts > 0).all() and 2 * counts[0] > counts.sum())
