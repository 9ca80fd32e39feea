"""The annotation Labels layer, bound to the session's annotation store.

The layer's data is a :class:`~napari_xrm_al.core.session.paint_volume.PaintVolume`
over ``session.annotations``, not the zarr array itself nor a copy of it:

* napari paints with fancy indexing (``data[(zs, ys, xs)] = v``), which zarr
  reads as *orthogonal* indexing, so painting straight into zarr would write
  the wrong pixels; and every brush dab would recompress a chunk on the GUI
  thread.
* A numpy copy costs one byte per voxel: 40 GB for a 40 GB scan. The
  PaintVolume keeps only the slices being looked at or painted in memory.
* Every change napari makes (brush, fill, polygon, erase, undo, redo, scripts
  writing ``layer.data[...]``) goes through its ``__setitem__``, which reports
  the slices it touched, which ``events.paint`` alone would not guarantee
  (undo and redo emit no paint event).
* Touched slices are written back slice by slice (the store holds one slice
  per chunk) at most :data:`SAVE_DELAY_MS` after the first unsaved write, and
  at once before any job reads the store, on "mark done", and when the layer
  is removed.

Only one binding per session folder may be live in a process (two viewers
painting the same project would overwrite each other's slices): a second one
is refused with a message until the first is disconnected or its layer is
removed. Other processes are kept off by the session's lock file.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import QObject, QTimer

from napari_xrm_al.core.session.paint_volume import PaintVolume
from napari_xrm_al.core.session.session import Session
from napari_xrm_al.core.slice_refs import SliceRef, uncovered
from napari_xrm_al.core.slices import axis_index
from napari_xrm_al.errors import XrmError
from napari_xrm_al.widgets._layers import CLASSES_KEY, replace_or_add

if TYPE_CHECKING:
    import napari

log = logging.getLogger(__name__)

#: Longest time a painted stroke waits before it is written to the store.
SAVE_DELAY_MS = 500

#: The live binding of each session folder in this process.
_bound: dict[Path, weakref.ref[AnnotationBinding]] = {}


def check_free(session: Session, mine: AnnotationBinding | None = None) -> None:
    """:class:`XrmError` if another live binding (not ``mine``) paints ``session``."""
    ref = _bound.get(session.folder.resolve())
    other = ref() if ref is not None else None
    if other is not None and other is not mine and other.active:
        raise XrmError(
            f"The project {session.folder} is already open for painting in another "
            "viewer; close it there (or remove its annotation layer) first."
        )


def annotation_layer_name(image_name: str) -> str:
    """Name of the annotation layer of image layer ``image_name``."""
    return f"{image_name} annotations"


class AnnotationBinding(QObject):
    """Keeps a Labels layer and ``session.annotations`` in step.

    Parameters
    ----------
    viewer
        The viewer holding the layer.
    session
        The open session.
    image
        The image layer annotated (its scale and translate are copied).
    """

    def __init__(self, viewer: napari.Viewer, session: Session, image: Image) -> None:
        check_free(session)
        super().__init__()
        self.viewer = viewer
        self.session = session
        self.axis = axis_index(session.axis)
        #: Whether the binding still follows the layer and saves strokes.
        self.active = True
        _bound[session.folder.resolve()] = weakref.ref(self)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SAVE_DELAY_MS)
        self._timer.timeout.connect(self.flush)
        known = len(session.warnings)
        data = self._volume()
        #: Slices holding painted pixels, as saved. Slices without a chunk file
        #: are empty (zarr does not store chunks of the fill value).
        self.painted: set[int] = {
            i
            for i in range(data.shape[self.axis])
            if session.annotations.chunk_path(i).is_file() and data.plane(i).any()
        }
        for message in session.warnings[known:]:  # damaged slices set aside
            show_warning(message)
        classes = session.classes
        self.layer: Labels = replace_or_add(
            viewer,
            "labels",
            data,
            name=annotation_layer_name(image.name),
            colormap=classes.napari_colormap(),
            features=pd.DataFrame({"class": ["not annotated", *classes.names]}),
            metadata={CLASSES_KEY: classes.to_dict()},
            scale=image.scale,
            translate=image.translate,
            units=image.units,
            opacity=0.6,
        )
        self.layer.selected_label = 1
        self.layer.events.data.connect(self._on_data_replaced)
        viewer.layers.events.removing.connect(self._on_removing)

    @property
    def dirty(self) -> set[int]:
        """Slices changed in the layer and not saved yet."""
        data = self.layer.data
        return data.dirty if isinstance(data, PaintVolume) else set()

    def mark(self, slices: Iterable[int]) -> None:
        """The layer wrote ``slices`` (already tracked by its volume): save shortly."""
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> list[int]:
        """Write every changed slice to the store now; returns the slices written.

        A slice that fails to save stays unsaved and is tried again at the
        next save.
        """
        self._timer.stop()
        written = []
        for index in sorted(self.dirty):
            try:
                self.layer.data.flush([index])
            except XrmError as exc:
                show_error(f"Slice {index} was not saved: {exc}")
                continue
            written.append(index)
            if self.slice_data(index).any():
                self.painted.add(index)
            else:
                self.painted.discard(index)
        return written

    def slice_data(self, item: SliceRef | int) -> np.ndarray:
        """The layer's annotation of a slice (a plain index: along the session
        axis; do not keep it)."""
        ref = self.session.ref(item)
        if ref.axis == self.axis:
            return self.layer.data.plane(ref.index)
        return np.asarray(self.layer.data[self.session.annotations.slice_key(ref)])

    def is_painted(self, item: SliceRef | int) -> bool:
        """Whether a slice holds painted pixels (saved or not)."""
        return bool(self.slice_data(item).any())

    def painted_beyond(self, done: Iterable[SliceRef]) -> list[int]:
        """Saved painted slices along the session axis that are not in ``done``
        and hold pixels off every done slice along the other axes (painting a
        y slice touches many z slices without making them part-painted)."""
        done = list(done)
        crossing = [r for r in done if r.axis != self.axis]
        out = []
        for index in sorted(
            self.painted - {r.index for r in done if r.axis == self.axis}
        ):
            ref = SliceRef(self.axis, index)
            if uncovered(self.slice_data(ref), ref, crossing).any():
                out.append(index)
        return out

    def fill_unpainted(self, item: SliceRef | int, labels: np.ndarray) -> None:
        """Set the unpainted pixels of a slice from ``labels`` (undoable)."""
        ref = self.session.ref(item)
        mask = self.slice_data(ref) == 0
        coords = list(np.nonzero(mask))
        coords.insert(ref.axis, np.full(len(coords[0]), ref.index))
        values = np.asarray(labels)[mask].astype(self.layer.data.dtype)
        self.layer.data_setitem(tuple(coords), values)

    def disconnect_all(self) -> None:
        """Save what is pending and stop following the layer."""
        self.flush()
        self.active = False
        self.layer.events.data.disconnect(self._on_data_replaced)
        self.viewer.layers.events.removing.disconnect(self._on_removing)
        if isinstance(self.layer.data, PaintVolume):
            self.layer.data.on_write = None

    def _volume(self) -> PaintVolume:
        session = self.session
        return PaintVolume(
            session.image.shape,
            session.annotations.array.dtype,
            self.axis,
            read_plane=session.annotations.load_slice,
            write_plane=session.annotations.write_slice,
            on_write=self.mark,
        )

    def _on_data_replaced(self, event: Any = None) -> None:
        """Someone assigned ``layer.data``: go on painting the store, save all of it."""
        data = self.layer.data
        if isinstance(data, PaintVolume) and data.on_write is not None:
            return
        if tuple(np.shape(data)) != tuple(self.session.image.shape):
            show_error(
                f"The annotation layer must keep the image's shape "
                f"{self.session.image.shape}; the new data was not saved."
            )
            return
        volume = self._volume()
        for index in range(volume.shape[self.axis]):
            volume[self.session.annotations.slice_key(index)] = np.asarray(
                data[self.session.annotations.slice_key(index)]
            )
        self.layer.data = volume

    def _on_removing(self, event: Any) -> None:
        if self.viewer.layers[event.index].name == self.layer.name:
            self.flush()
            self.active = False  # the project may now be painted elsewhere
