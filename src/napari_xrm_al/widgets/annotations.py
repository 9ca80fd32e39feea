"""The annotation Labels layer, bound to the session's annotation store.

The layer holds an **in-memory copy** of ``session.annotations`` (one byte per
voxel), not the zarr array itself:

* napari paints with fancy indexing (``data[(zs, ys, xs)] = v``), which zarr
  reads as *orthogonal* indexing, so painting straight into zarr would write
  the wrong pixels; and every brush dab would recompress a chunk on the GUI
  thread.
* The copy is a :class:`TrackedVolume`, a numpy array that reports the slices
  each write touches. Every change napari makes (brush, fill, polygon, erase,
  undo, redo, scripts writing ``layer.data[...]``) goes through
  ``__setitem__``, so nothing is missed, which ``events.paint`` alone would not
  guarantee (undo and redo emit no paint event).
* Touched slices are written back slice by slice (the store holds one slice
  per chunk) at most :data:`SAVE_DELAY_MS` after the first unsaved write, and
  at once before any job reads the store, on "mark done", and when the layer
  is removed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from napari.layers import Image, Labels
from napari.utils.notifications import show_error
from qtpy.QtCore import QObject, QTimer

from napari_xrm_al.core.session import Session
from napari_xrm_al.core.slices import axis_index
from napari_xrm_al.errors import XrmError
from napari_xrm_al.widgets._layers import CLASSES_KEY, replace_or_add

if TYPE_CHECKING:
    import napari

log = logging.getLogger(__name__)

#: Longest time a painted stroke waits before it is written to the store.
SAVE_DELAY_MS = 500


def touched_slices(key: Any, shape: tuple[int, ...], axis: int) -> set[int]:
    """Slice indices along ``axis`` that ``array[key] = ...`` can change."""
    n = shape[axis]
    everything = set(range(n))
    if isinstance(key, np.ndarray) and key.dtype == bool and key.shape == shape:
        other = tuple(a for a in range(len(shape)) if a != axis)
        return {int(i) for i in np.flatnonzero(key.any(axis=other))}
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        at = next(i for i, k in enumerate(key) if k is Ellipsis)
        fill = (slice(None),) * (len(shape) - len(key) + 1)
        key = key[:at] + fill + key[at + 1 :]
    if axis >= len(key):
        return everything
    part = key[axis]
    if isinstance(part, slice):
        return set(range(*part.indices(n)))
    if isinstance(part, int | np.integer):
        return {int(part) % n}
    try:
        values = np.asarray(part)
    except (TypeError, ValueError):
        return everything
    if values.dtype == bool and values.ndim == 1:
        return {int(i) for i in np.flatnonzero(values)}
    if values.dtype.kind in "iu":
        return {int(i) % n for i in np.unique(values)}
    return everything


class TrackedVolume(np.ndarray):
    """A 3D numpy array that reports which slices along ``axis`` each write touches.

    Views and copies made from it do not report (their indices would not be
    the volume's).
    """

    tracked_axis: int
    on_write: Callable[[set[int]], None] | None

    def __new__(
        cls, data: np.ndarray, axis: int, on_write: Callable[[set[int]], None]
    ) -> TrackedVolume:
        volume = np.asarray(data).view(cls)
        volume.tracked_axis = axis
        volume.on_write = on_write
        return volume

    def __array_finalize__(self, obj: Any) -> None:
        self.tracked_axis = getattr(obj, "tracked_axis", 0)
        self.on_write = None

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        if self.on_write is not None:
            self.on_write(touched_slices(key, self.shape, self.tracked_axis))


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
        super().__init__()
        self.viewer = viewer
        self.session = session
        self.axis = axis_index(session.axis)
        self.dirty: set[int] = set()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SAVE_DELAY_MS)
        self._timer.timeout.connect(self.flush)
        data = TrackedVolume(np.asarray(session.annotations[...]), self.axis, self.mark)
        others = tuple(a for a in range(3) if a != self.axis)
        #: Slices holding painted pixels, as saved.
        self.painted: set[int] = {int(i) for i in np.flatnonzero(data.any(axis=others))}
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

    def mark(self, slices: Iterable[int]) -> None:
        """Record slices changed in the layer; they are saved shortly."""
        self.dirty.update(slices)
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> list[int]:
        """Write every changed slice to the store now; returns the slices written."""
        self._timer.stop()
        written = []
        for index in sorted(self.dirty):
            values = self.slice_data(index)
            try:
                self.session.write_slice(index, values)
            except XrmError as exc:
                show_error(f"Slice {index} was not saved: {exc}")
                continue
            written.append(index)
            if values.any():
                self.painted.add(index)
            else:
                self.painted.discard(index)
        self.dirty.clear()
        return written

    def slice_data(self, index: int) -> np.ndarray:
        """The layer's annotation of slice ``index`` (a view)."""
        return np.asarray(self.layer.data)[self.session.slice_key(index)]

    def fill_unpainted(self, index: int, labels: np.ndarray) -> None:
        """Set the unpainted pixels of slice ``index`` from ``labels`` (undoable)."""
        mask = self.slice_data(index) == 0
        coords = list(np.nonzero(mask))
        coords.insert(self.axis, np.full(len(coords[0]), index))
        values = np.asarray(labels)[mask].astype(self.layer.data.dtype)
        self.layer.data_setitem(tuple(coords), values)

    def disconnect_all(self) -> None:
        """Save what is pending and stop following the layer."""
        self.flush()
        self.layer.events.data.disconnect(self._on_data_replaced)
        self.viewer.layers.events.removing.disconnect(self._on_removing)
        if isinstance(self.layer.data, TrackedVolume):
            self.layer.data.on_write = None

    def _on_data_replaced(self, event: Any = None) -> None:
        """Someone assigned ``layer.data``: track the new array, save all of it."""
        data = self.layer.data
        if isinstance(data, TrackedVolume) and data.on_write is not None:
            return
        if tuple(np.shape(data)) != tuple(self.session.image.shape):
            show_error(
                f"The annotation layer must keep the image's shape "
                f"{self.session.image.shape}; the new data was not saved."
            )
            return
        self.layer.data = TrackedVolume(np.asarray(data), self.axis, self.mark)
        self.mark(range(self.session.image.shape[self.axis]))

    def _on_removing(self, event: Any) -> None:
        if self.viewer.layers[event.index].name == self.layer.name:
            self.flush()
