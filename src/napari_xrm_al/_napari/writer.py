"""npe2 writers: save a Labels layer as an OME-Zarr or plain zarr v3 mask.

Both use npe2's single-layer signature ``(path, data, meta) -> list[str]``
(the manifest declares ``layer_types: ['labels']``). The class table comes from
``meta['metadata'][CLASSES_KEY]`` (a :meth:`ClassTable.to_dict` record or a
:class:`ClassTable`), else from a ``class``/``name`` column of the layer
features, else generic ``class_1..class_N`` up to the largest label.
"""

from __future__ import annotations

import re
from typing import Any

import dask.array as da
import numpy as np

from napari_xrm_al._napari.layer_keys import CLASSES_KEY, PROVENANCE_KEY
from napari_xrm_al.classes import ClassTable
from napari_xrm_al.io.mask_formats import MaskFormat
from napari_xrm_al.io.masks import write_mask


def write_ome_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save a Labels layer as an OME-Zarr label image named after the layer."""
    return _write(path, data, meta, "ome-zarr")


def write_zarr_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save a Labels layer as one zarr v3 array."""
    return _write(path, data, meta, "zarr")


def _write(path: str, data: Any, meta: dict[str, Any], fmt: MaskFormat) -> list[str]:
    if meta.get("multiscale"):
        data = data[0]
    layer_name = str(meta.get("name") or "segmentation")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", layer_name).strip("._-") or "segmentation"
    provenance = {
        "layer": layer_name,
        **(meta.get("metadata") or {}).get(PROVENANCE_KEY, {}),
    }
    written = write_mask(
        path,
        data,
        layer_classes(data, meta),
        fmt=fmt,
        voxel_size=layer_voxel_size(meta),
        name=name,
        provenance=provenance,
    )
    return [str(written)]


def layer_classes(data: Any, meta: dict[str, Any]) -> ClassTable:
    """The class table of a Labels layer (see the module docstring)."""
    stored = (meta.get("metadata") or {}).get(CLASSES_KEY)
    if isinstance(stored, ClassTable):
        return stored
    if stored is not None:
        return ClassTable.from_dict(stored)
    largest = int(da.asarray(data).max().compute(scheduler="threads"))
    names = {k: f"class_{k}" for k in range(1, max(largest, 2) + 1)}
    features = meta.get("features")
    column = next(
        (c for c in ("class", "name") if features is not None and c in features), None
    )
    if column is not None:
        index = features.get("index", features.index)
        for k, value in zip(index, features[column], strict=True):
            if int(k) in names and isinstance(value, str) and value.strip():
                names[int(k)] = value.strip()
    return ClassTable(tuple(names.values()), _layer_colours(meta, list(names)))


def _layer_colours(meta: dict[str, Any], labels: list[int]) -> tuple[str, ...]:
    """The colours the layer shows for ``labels``, as ``'#rrggbb'``."""
    colormap = meta.get("colormap")
    if colormap is None or not hasattr(colormap, "map"):
        return ()
    rgba = np.asarray(colormap.map(np.asarray(labels)), dtype=float)
    return tuple(
        "#" + "".join(f"{round(c * 255):02x}" for c in row[:3]) for row in rgba
    )


def layer_voxel_size(meta: dict[str, Any]) -> tuple[float, ...] | None:
    """Voxel size in micrometres from the layer scale and units.

    A scale in length units is converted; a scale in pixels that is not all
    ones is taken as micrometres (the unit napari-xrm-al uses); otherwise None.
    """
    scale = meta.get("scale")
    if scale is None:
        return None
    scale = [float(s) for s in scale]
    units = meta.get("units")
    if units and all(_is_length(u) for u in units):
        return tuple(
            s * (1.0 * u).to("micrometer").magnitude
            for s, u in zip(scale, units, strict=True)
        )
    if any(s != 1.0 for s in scale):
        return tuple(scale)
    return None


def _is_length(unit: Any) -> bool:
    dimensionality = getattr(unit, "dimensionality", None)
    return dimensionality is not None and dict(dimensionality) == {"[length]": 1}
