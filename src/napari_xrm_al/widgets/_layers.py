"""Layer, navigation and table helpers shared by the dock's sections (GUI thread)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Layer
from qtpy.QtWidgets import QHeaderView, QTableWidget

from napari_xrm_al._napari.layer_keys import CLASSES_KEY, PROVENANCE_KEY

if TYPE_CHECKING:
    import napari

__all__ = [
    "CLASSES_KEY",
    "PROVENANCE_KEY",
    "current_slice",
    "find_layer",
    "fit_columns",
    "go_to_slice",
    "replace_or_add",
    "view_axis",
]

#: Attributes set before and after ``data`` when a result replaces an existing
#: layer; display settings the user may have changed (opacity, contrast...) stay.
_GEOMETRY = ("scale", "translate", "units")
_CONTENT = ("features", "metadata", "colormap", "text")


def find_layer(viewer: napari.Viewer, name: str, kind: str) -> Layer | None:
    """The layer called ``name`` if it is of type ``kind`` (``'labels'``, ...)."""
    for layer in viewer.layers:
        if layer.name == name and type(layer).__name__.lower() == kind:
            return layer
    return None


def replace_or_add(
    viewer: napari.Viewer, kind: str, data: Any, *, name: str, **kwargs: Any
) -> Any:
    """Update the layer ``name`` in place if it exists, else add it.

    Stable names keep results from piling up as new layers.
    """
    layer = find_layer(viewer, name, kind)
    if layer is None:
        return getattr(viewer, f"add_{kind}")(data, name=name, **kwargs)
    for attr in _GEOMETRY:
        if attr in kwargs:
            setattr(layer, attr, kwargs[attr])
    layer.data = data
    for attr in _CONTENT:
        if attr in kwargs:
            setattr(layer, attr, kwargs[attr])
    return layer


def fit_columns(table: QTableWidget) -> None:
    """Columns sized to their contents, the last one stretched; no row numbers."""
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setStretchLastSection(True)
    table.verticalHeader().setVisible(False)


def _world_axis(viewer: napari.Viewer, layer: Layer, axis: int) -> int:
    return viewer.dims.ndim - layer.ndim + axis


def current_slice(viewer: napari.Viewer, layer: Layer, axis: int) -> int:
    """Index of the slice along ``axis`` of ``layer`` shown by the viewer."""
    world = np.asarray(viewer.dims.point)[-layer.ndim :]
    position = layer.world_to_data(world)
    n = layer.data.shape[axis]
    return int(np.clip(np.round(position[axis]), 0, n - 1))


def view_axis(viewer: napari.Viewer, layer: Layer, default: int) -> int:
    """The axis of ``layer`` the viewer slices along (its slider) in a 2D
    view; ``default`` in a 3D view or when the slider is not one of its axes."""
    dims = viewer.dims
    if dims.ndisplay != 2:
        return default
    axis = dims.not_displayed[-1] - (dims.ndim - layer.ndim)
    return axis if 0 <= axis < layer.ndim else default


def go_to_slice(viewer: napari.Viewer, layer: Layer, axis: int, index: int) -> None:
    """Show slice ``index`` along ``axis`` of ``layer`` (the slider moves there).

    In a 2D view whose slider is another axis, the axes are reordered so
    ``axis`` becomes the slider and the other two are shown in their order
    (for z: napari's default order).
    """
    dims = viewer.dims
    world_axis = _world_axis(viewer, layer, axis)
    if dims.ndisplay == 2 and dims.not_displayed[-1] != world_axis:
        others = [a for a in dims.order if a != world_axis]
        cut = dims.ndim - 3
        dims.order = (*others[:cut], world_axis, *sorted(others[cut:]))
    position = np.asarray(layer.world_to_data(np.asarray(dims.point)[-layer.ndim :]))
    position[axis] = index
    world = layer.data_to_world(position)
    dims.set_point(world_axis, float(world[axis]))
