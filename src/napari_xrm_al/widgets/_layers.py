"""Layer, navigation and table helpers shared by the dock's sections (GUI thread)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from napari.layers import Layer
from qtpy.QtWidgets import QComboBox, QHeaderView, QTableWidget

from napari_xrm_al._napari.layer_keys import CLASSES_KEY, PROVENANCE_KEY
from napari_xrm_al.core.al.batch_picking import Pick
from napari_xrm_al.core.slice_refs import SliceRef
from napari_xrm_al.widgets.plots import PICK_COLOUR

if TYPE_CHECKING:
    import napari

__all__ = [
    "CLASSES_KEY",
    "PROVENANCE_KEY",
    "current_slice",
    "find_layer",
    "fit_columns",
    "go_to_slice",
    "relist",
    "replace_or_add",
    "show_candidates",
    "slice_frames",
    "view_axis",
]

#: The shapes layer framing the suggested slices.
CANDIDATES_NAME = "suggested slices"

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


def relist(combo: QComboBox, names: Sequence[str]) -> bool:
    """List ``names`` in ``combo`` (a layer chooser), keeping its choice when it
    is still listed (its change signal then fires as usual).

    Returns True when the choice is gone and the first name was chosen in its
    place without a signal: the caller then handles the new choice itself.
    """
    current = combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(names)
    combo.blockSignals(False)
    if current in names:
        combo.setCurrentText(current)
        return False
    return bool(names)


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


def slice_frames(shape: Sequence[int], refs: Sequence[SliceRef]) -> list[np.ndarray]:
    """A rectangle around the whole of each slice, as 3D vertices (data coordinates)."""
    frames = []
    for ref in refs:
        a, b = (i for i in range(3) if i != ref.axis)
        frame = np.zeros((4, 3))
        frame[:, ref.axis] = ref.index
        frame[:, [a, b]] = [
            (0, 0),
            (0, shape[b] - 1),
            (shape[a] - 1, shape[b] - 1),
            (shape[a] - 1, 0),
        ]
        frames.append(frame)
    return frames


def show_candidates(
    viewer: napari.Viewer, image: Layer, shape: Sequence[int], picks: Sequence[Pick]
) -> None:
    """A frame around each picked slice, labelled with its rank, over ``image``."""
    replace_or_add(
        viewer,
        "shapes",
        slice_frames(shape, [p.ref for p in picks]),
        name=CANDIDATES_NAME,
        shape_type="rectangle",
        edge_color=PICK_COLOUR,
        face_color="transparent",
        edge_width=max(1.0, 0.01 * max(shape)),
        features=pd.DataFrame(
            {
                "rank": [p.rank for p in picks],
                "slice": [str(p.ref) for p in picks],
                "score": [p.score for p in picks],
            }
        ),
        text={
            "string": "suggested #{rank}",
            "color": PICK_COLOUR,
            "size": 10,
            "anchor": "upper_left",
        },
        scale=image.scale,
        translate=image.translate,
        units=image.units,
    )
