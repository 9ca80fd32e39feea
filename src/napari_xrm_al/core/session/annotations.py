"""The annotation volume of an active-learning session.

``annotations.zarr`` holds annotation ids (0 = not annotated) of the whole
volume, one chunk file per slice along the session axis, so writing one painted
slice along that axis rewrites one file, which zarr writes to a temporary file
and renames into place. A chunk damaged all the same (disk, copy) is set aside
on reading with :meth:`AnnotationStore.load_slice`, losing only that slice.

A slice along another axis crosses every chunk. It is first written whole to
``annotations-pending/`` (atomically), then into the chunks, then the pending
file is removed; a crash in between is finished on reopening
(:meth:`AnnotationStore.replay_pending`), so such a slice is also saved
entirely or not at all.

:func:`create_annotation_volume` lays it out, :func:`recover_annotation_volume`
checks it on reopening, and :class:`AnnotationStore` reads and writes it; a
:class:`~napari_xrm_al.core.session.session.Session` holds one (``session.annotations``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zarr

from napari_xrm_al.core.session import schema
from napari_xrm_al.core.slice_refs import SliceRef, as_ref
from napari_xrm_al.core.slices import axis_index
from napari_xrm_al.errors import InputError, XrmError
from napari_xrm_al.io.atomic import atomic_path

ANNOTATIONS = "annotations.zarr"
#: Slices across the chunks being written (see the module).
PENDING = "annotations-pending"
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


class AnnotationStore:
    """Reading and writing a project's annotation volume, slice by slice.

    Parameters
    ----------
    folder
        The project folder (the volume is ``annotations.zarr`` in it).
    shape
        The scan's ``(z, y, x)`` shape.
    axis
        The project's axis: plain slice indices are along it, and the volume has
        one chunk per slice along it.
    n_classes
        Annotation ids run from 1 to ``n_classes`` (0 = not annotated).
    warnings
        Where messages for the user go (damaged files set aside).
    slice_lost
        Called with the index (along ``axis``) of a slice whose damaged chunk was
        set aside; returns whether that slice was marked done (and no longer is).
    """

    def __init__(
        self,
        folder: Path,
        shape: tuple[int, int, int],
        axis: str,
        n_classes: int,
        warnings: list[str],
        slice_lost: Callable[[int], bool],
    ) -> None:
        self.folder = folder
        self.shape = tuple(shape)
        self.axis = axis
        self.n_classes = n_classes
        self.warnings = warnings
        self._slice_lost = slice_lost
        self._array: zarr.Array | None = None

    @property
    def array(self) -> zarr.Array:
        """The annotation volume, opened for reading and writing."""
        if self._array is None:
            path = self.folder / ANNOTATIONS
            try:
                array = zarr.open_array(path, mode="r+")
            except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
                raise InputError(
                    path, f"cannot be opened as the annotation volume ({exc})"
                ) from None
            if tuple(array.shape) != tuple(self.shape):
                raise InputError(
                    path,
                    f"has shape {tuple(array.shape)}, not the image's "
                    f"{tuple(self.shape)}",
                )
            self._array = array
        return self._array

    def slice_key(self, item: SliceRef | int) -> tuple[slice | int, ...]:
        """Numpy key selecting a slice (a plain index: along the session axis)."""
        ref = as_ref(item, self.axis)
        key: list[slice | int] = [slice(None)] * 3
        key[ref.axis] = ref.index
        return tuple(key)

    def _on_chunk_axis(self, item: SliceRef | int) -> SliceRef | None:
        """``item`` when it lies along the chunked (session) axis, else None."""
        ref = as_ref(item, self.axis)
        return ref if ref.axis == axis_index(self.axis) else None

    def chunk_path(self, index: int) -> Path:
        """The file holding slice ``index`` of the annotations (one chunk per slice)."""
        coords = [0, 0, 0]
        coords[axis_index(self.axis)] = int(index)
        key = self.array.metadata.encode_chunk_key(tuple(coords))
        return self.folder / ANNOTATIONS / key

    def read_slice(self, item: SliceRef | int) -> np.ndarray:
        """Annotation ids of one slice (a plain index: along the session axis);
        :class:`InputError` if a file it reads is damaged."""
        try:
            return np.asarray(self.array[self.slice_key(item)])
        except (OSError, ValueError, TypeError, RuntimeError) as exc:
            ref = self._on_chunk_axis(item)
            where = self.chunk_path(ref.index) if ref else self.folder / ANNOTATIONS
            raise InputError(
                where,
                f"holds slice {as_ref(item, self.axis)} of the annotations but is "
                f"damaged ({exc})",
            ) from None

    def load_slice(self, item: SliceRef | int) -> np.ndarray:
        """:meth:`read_slice`, but a damaged chunk is set aside and reads as empty.

        The damaged chunk (one slice along the session axis) is moved to
        ``damaged/``, that slice is no longer done, and a message goes to
        :attr:`warnings`; no other slice is lost.
        """
        try:
            return self.read_slice(item)
        except InputError as exc:
            ref = self._on_chunk_axis(item)
            if ref is None:  # crosses every chunk: set the damaged ones aside
                self.read_all()
            elif self.chunk_path(ref.index).is_file():
                self._set_aside(ref.index, exc)
            else:
                raise
            return self.read_slice(item)

    def read_all(self) -> np.ndarray:
        """The whole annotation volume, damaged slices set aside (:meth:`load_slice`)."""
        try:
            return np.asarray(self.array[...])
        except (OSError, ValueError, TypeError, RuntimeError):
            pass
        out = np.zeros(self.shape, self.array.dtype)
        for index in range(self.shape[axis_index(self.axis)]):
            out[self.slice_key(index)] = self.load_slice(index)
        return out

    def _set_aside(self, index: int, exc: InputError) -> None:
        source = self.chunk_path(index)
        target = (
            self.folder / DAMAGED / f"slice-{index}-{schema.now().replace(':', '')}"
        )
        target.parent.mkdir(exist_ok=True)
        os.replace(source, target)
        was_done = self._slice_lost(index)
        message = (
            f"{exc} It was moved to {target}; slice {index} is now empty"
            + (" and no longer marked done" if was_done else "")
            + ", so paint it again."
        )
        self.warnings.append(message)
        log.warning(message)

    def write_slice(self, item: SliceRef | int, values: np.ndarray) -> None:
        """Store the annotation of one slice (a plain index: along the session
        axis); values outside 0..C rejected. A slice across the chunks goes
        through ``annotations-pending/`` (see the module)."""
        values = np.asarray(values)
        if values.size and (values.min() < 0 or values.max() > self.n_classes):
            raise XrmError(
                f"Annotation values must be 0 (not annotated) or 1..{self.n_classes}; "
                f"got {int(values.min())}..{int(values.max())}."
            )
        values = values.astype(self.array.dtype)
        if self._on_chunk_axis(item) is not None:
            self.array[self.slice_key(item)] = values
            return
        ref = as_ref(item, self.axis)
        pending = self.folder / PENDING / f"{ref.axis_name}-{ref.index}.npy"
        pending.parent.mkdir(exist_ok=True)
        with atomic_path(pending) as tmp, open(tmp, "wb") as fh:
            np.save(fh, values)
        self._write_pending(pending)

    def _write_pending(self, pending: Path) -> None:
        """Write the slice saved in ``pending`` into the volume, then remove it."""
        axis, index = pending.stem.split("-")
        values = np.load(pending, allow_pickle=False)
        self.array[self.slice_key(SliceRef.of(axis, int(index)))] = values
        pending.unlink()

    def replay_pending(self) -> None:
        """Finish the slice writes a crash cut short (see the module); a pending
        file that cannot be read is dropped with a warning."""
        folder = self.folder / PENDING
        for pending in sorted(folder.glob("*-*.npy")) if folder.is_dir() else []:
            try:
                self._write_pending(pending)
            except (OSError, ValueError, EOFError, XrmError) as exc:
                message = (
                    f"{pending} held a painted slice whose saving was cut short and "
                    f"cannot be read ({exc}); paint that slice again."
                )
                pending.unlink(missing_ok=True)
                self.warnings.append(message)
                log.warning(message)

    def annotated_slices(self) -> list[int]:
        """Slices along the session axis holding any annotated pixel (done or not)."""
        ax = axis_index(self.axis)
        counts = np.zeros(self.shape[ax], dtype=np.int64)
        for i in range(len(counts)):
            counts[i] = np.count_nonzero(self.read_slice(i))
        return [int(i) for i in np.flatnonzero(counts)]
