"""The annotation volume of an active-learning session.

``annotations.zarr`` holds annotation ids (0 = not annotated), one chunk file
per slice along the session axis, so writing one painted slice rewrites one
file, which zarr writes to a temporary file and renames into place. A chunk
damaged all the same (disk, copy) is set aside on reading with
:meth:`SessionAnnotations.load_slice`, losing only that slice.

:func:`create_annotation_volume` lays it out, :func:`recover_annotation_volume`
checks it on reopening, and :class:`SessionAnnotations` is the part of
:class:`~napari_xrm_al.core.session.Session` that reads and writes it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zarr

from napari_xrm_al.core import session_schema as schema
from napari_xrm_al.core.classes import ClassTable
from napari_xrm_al.core.session_schema import ImageRef
from napari_xrm_al.core.slices import axis_index
from napari_xrm_al.errors import InputError, XrmError

ANNOTATIONS = "annotations.zarr"
#: Where damaged annotation chunks are moved on reopening.
DAMAGED = "damaged"

log = logging.getLogger(__name__)


def create_annotation_volume(
    folder: Path, shape: tuple[int, ...], ax: int, n_classes: int
) -> None:
    """An empty annotation volume in ``folder``, one chunk per slice along ``ax``."""
    chunks = list(shape)
    chunks[ax] = 1
    zarr.create_array(
        folder / ANNOTATIONS,
        shape=shape,
        chunks=tuple(chunks),
        dtype=np.uint8 if n_classes < 255 else np.uint16,
        fill_value=0,
        dimension_names=("z", "y", "x"),
        overwrite=True,
    )


def recover_annotation_volume(folder: Path) -> None:
    """Check the annotation volume of ``folder`` exists; drop cut-short chunk writes.

    Raises
    ------
    InputError
        When the volume is missing.
    """
    if not (folder / ANNOTATIONS).exists():
        raise InputError(folder, f"has lost its annotation volume ({ANNOTATIONS})")
    for partial in (folder / ANNOTATIONS).rglob("*.partial"):
        partial.unlink(missing_ok=True)  # a chunk write cut short by a crash


class SessionAnnotations:
    """Reading and writing a session's annotation volume, slice by slice.

    Mixed into :class:`~napari_xrm_al.core.session.Session`, which provides
    the attributes below and :meth:`mark_done`.
    """

    folder: Path
    image: ImageRef
    classes: ClassTable
    axis: str
    done: list[int]
    warnings: list[str]
    _annotations: zarr.Array | None
    mark_done: Callable[[int, bool], None]

    @property
    def annotations(self) -> zarr.Array:
        """The annotation volume, opened for reading and writing."""
        if self._annotations is None:
            path = self.folder / ANNOTATIONS
            try:
                array = zarr.open_array(path, mode="r+")
            except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
                raise InputError(
                    path, f"cannot be opened as the annotation volume ({exc})"
                ) from None
            if tuple(array.shape) != tuple(self.image.shape):
                raise InputError(
                    path,
                    f"has shape {tuple(array.shape)}, not the image's "
                    f"{tuple(self.image.shape)}",
                )
            self._annotations = array
        return self._annotations

    def slice_key(self, index: int) -> tuple[slice | int, ...]:
        """Numpy key selecting slice ``index`` along the session axis."""
        key: list[slice | int] = [slice(None)] * 3
        key[axis_index(self.axis)] = int(index)
        return tuple(key)

    def chunk_path(self, index: int) -> Path:
        """The file holding slice ``index`` of the annotations (one chunk per slice)."""
        coords = [0, 0, 0]
        coords[axis_index(self.axis)] = int(index)
        key = self.annotations.metadata.encode_chunk_key(tuple(coords))
        return self.folder / ANNOTATIONS / key

    def read_slice(self, index: int) -> np.ndarray:
        """Annotation ids of one slice; :class:`InputError` if its file is damaged."""
        try:
            return np.asarray(self.annotations[self.slice_key(index)])
        except (OSError, ValueError, TypeError, RuntimeError) as exc:
            raise InputError(
                self.chunk_path(index),
                f"holds slice {index} of the annotations but is damaged ({exc})",
            ) from None

    def load_slice(self, index: int) -> np.ndarray:
        """:meth:`read_slice`, but a damaged slice is set aside and reads as empty.

        The damaged chunk is moved to ``damaged/``, the slice is no longer
        done, and a message goes to :attr:`warnings`; no other slice is lost.
        """
        try:
            return self.read_slice(index)
        except InputError as exc:
            if not self.chunk_path(index).is_file():
                raise
            self._set_aside(index, exc)
            return self.read_slice(index)

    def read_all(self) -> np.ndarray:
        """The whole annotation volume, damaged slices set aside (:meth:`load_slice`)."""
        try:
            return np.asarray(self.annotations[...])
        except (OSError, ValueError, TypeError, RuntimeError):
            pass
        out = np.zeros(self.image.shape, self.annotations.dtype)
        for index in range(self.image.shape[axis_index(self.axis)]):
            out[self.slice_key(index)] = self.load_slice(index)
        return out

    def _set_aside(self, index: int, exc: InputError) -> None:
        source = self.chunk_path(index)
        target = (
            self.folder / DAMAGED / f"slice-{index}-{schema.now().replace(':', '')}"
        )
        target.parent.mkdir(exist_ok=True)
        os.replace(source, target)
        was_done = index in self.done
        message = (
            f"{exc} It was moved to {target}; slice {index} is now empty"
            + (" and no longer marked done" if was_done else "")
            + ", so paint it again."
        )
        self.warnings.append(message)
        log.warning(message)
        if was_done:
            self.mark_done(index, False)

    def write_slice(self, index: int, values: np.ndarray) -> None:
        """Store the annotation of one slice (values outside 0..C rejected)."""
        values = np.asarray(values)
        if values.size and (values.min() < 0 or values.max() > len(self.classes)):
            raise XrmError(
                f"Annotation values must be 0 (not annotated) or 1..{len(self.classes)}; "
                f"got {int(values.min())}..{int(values.max())}."
            )
        self.annotations[self.slice_key(index)] = values.astype(self.annotations.dtype)

    def annotated_slices(self) -> list[int]:
        """Slices holding any annotated pixel (done or not)."""
        ax = axis_index(self.axis)
        counts = np.zeros(self.image.shape[ax], dtype=np.int64)
        for i in range(len(counts)):
            counts[i] = np.count_nonzero(self.read_slice(i))
        return [int(i) for i in np.flatnonzero(counts)]

    def labelled_counts(self) -> np.ndarray:
        """``(C,)`` annotated pixels per class over the slices marked done."""
        counts = np.zeros(len(self.classes) + 1, dtype=np.int64)
        for i in self.done:
            values = self.read_slice(i)
            counts += np.bincount(values.ravel(), minlength=len(counts))[: len(counts)]
        return counts[1:]
