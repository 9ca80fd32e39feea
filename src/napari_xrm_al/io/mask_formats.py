"""The mask formats on disk and the record every mask carries.

Masks hold annotation ids: ``0`` = not labelled, ``1..C`` = the classes of a
:class:`~napari_xrm_al.classes.ClassTable`. Three formats are written,
chosen from the file name by :func:`mask_format_for`:

* ``*.ome.zarr``: an OME-Zarr (NGFF 0.5, zarr v3) ``image-label`` multiscale
  group at the store root, mask at ``0`` (``image-label`` colours and class
  names, voxel size as the ``scale`` transform); it validates with
  ome-zarr-models and opens as a Labels layer in napari-ome-zarr. Masks written
  before 0.2 hold the same group at ``labels/<name>``; they are still read;
* ``*.zarr``: one zarr v3 array at the store root, for training pipelines;
* ``*.tif`` / ``*.tiff``: an ImageJ hyperstack (zlib-compressed, BigTIFF when it
  exceeds 4 GB) with the voxel spacing ImageJ/Fiji understand.

Every format carries the same :data:`ATTRS_KEY` record (:func:`mask_record`):
the class table (:meth:`ClassTable.to_dict`), voxel size (micrometres), mask
name and provenance. :mod:`~napari_xrm_al.io.masks` writes masks,
:mod:`~napari_xrm_al.io.mask_reader` opens them again.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any, Literal

import tifffile
import zarr

from napari_xrm_al import __version__
from napari_xrm_al.classes import ClassTable
from napari_xrm_al.errors import XrmError
from napari_xrm_al.io.atomic import json_default

#: The formats masks are written in.
MaskFormat = Literal["ome-zarr", "zarr", "tiff"]
#: Attribute key (zarr) / ImageJ property holding our metadata record.
ATTRS_KEY = "napari_xrm_al"
#: Unit of ``voxel_size`` everywhere in napari-xrm-al.
VOXEL_UNIT = "micrometer"
#: Axis names, for masks of any dimension the last ``ndim``.
MASK_AXES = ("z", "y", "x")
# Same threshold tifffile uses: above it offsets no longer fit classic TIFF.
_CLASSIC_TIFF_LIMIT = 2**32 - 2**25
#: Pages of a TIFF mask are read from the scratch store in slabs of at most
#: this many bytes (at least one page) while writing.
TIFF_SLAB_BYTES = 64 * 2**20


def mask_format_for(path: Path | str) -> MaskFormat:
    """The mask format implied by a file name (``.ome.zarr``, ``.zarr``, ``.tif``)."""
    name = Path(path).name.lower()
    if name.endswith(".ome.zarr"):
        return "ome-zarr"
    if name.endswith(".zarr"):
        return "zarr"
    if name.endswith((".tif", ".tiff")):
        return "tiff"
    raise XrmError(
        f"Cannot tell the mask format of {path}: use a name ending in "
        "'.ome.zarr', '.zarr' or '.tif'."
    )


def mask_record(
    classes: ClassTable,
    name: str,
    voxel_size: tuple[float, ...] | None,
    provenance: dict[str, Any] | None,
) -> dict[str, Any]:
    """The record stored with every mask (JSON-normalised)."""
    record = {
        "kind": "mask",
        "format_version": 1,
        "software": f"napari-xrm-al {__version__}",
        "name": name,
        **classes.to_dict(),
        "voxel_size": list(voxel_size) if voxel_size else None,
        "voxel_unit": VOXEL_UNIT,
        "provenance": provenance or {},
    }
    return json.loads(json.dumps(record, default=json_default))


def _hex_to_rgba(colour: str) -> list[int]:
    return [int(colour[i : i + 2], 16) for i in (1, 3, 5)] + [255]


def write_ome_metadata(
    root: Path, name: str, classes: ClassTable, voxel_size: tuple[float, ...] | None
) -> None:
    """NGFF ``multiscales`` + ``image-label`` metadata through ome-zarr's writers.

    ``image-label`` lists the classes ``1..C`` in both ``colors`` and
    ``properties`` (ome-zarr-models requires the same label values in both);
    ``0``, not labelled, is left out and shown transparent.
    """
    # Imported here: ome-zarr's writer pulls in scikit-image and dask (~80 MB).
    from ome_zarr.format import CurrentFormat
    from ome_zarr.writer import add_metadata, write_multiscales_metadata

    fmt = CurrentFormat()
    group = zarr.open_group(root, mode="r+")
    ndim = group["0"].ndim
    axes = list(MASK_AXES[-ndim:])
    scale = list(voxel_size) if voxel_size else [1.0] * ndim
    write_multiscales_metadata(
        group,
        datasets=[
            {
                "path": "0",
                "coordinateTransformations": [{"type": "scale", "scale": scale}],
            }
        ],
        fmt=fmt,
        axes=axes,
        axes_units=dict.fromkeys(axes, VOXEL_UNIT) if voxel_size else None,
        name=name,
    )
    colors = [
        {"label-value": i + 1, "rgba": _hex_to_rgba(c)}
        for i, c in enumerate(classes.colours)
    ]
    properties = [
        {"label-value": i + 1, "class": n, "dense-id": i, "rare": n in classes.rare}
        for i, n in enumerate(classes.names)
    ]
    image_label = {"colors": colors, "properties": properties, "version": fmt.version}
    add_metadata(group, {"image-label": image_label}, fmt=fmt)


def write_imagej_tiff(
    path: Path,
    array: zarr.Array,
    voxel_size: tuple[float, ...] | None,
    attrs: dict[str, Any],
) -> None:
    """Write ``array`` as an ImageJ hyperstack, one page at a time."""

    def pages():
        page = math.prod(array.shape[-2:]) * array.dtype.itemsize
        step = max(1, min(array.chunks[0], TIFF_SLAB_BYTES // page))
        step = step if array.ndim == 3 else array.shape[0]
        for z0 in range(0, array.shape[0], step):
            slab = array[z0 : z0 + step]
            yield from slab if array.ndim == 3 else [slab]

    metadata: dict[str, Any] = {
        "axes": "ZYX"[-array.ndim :],
        "Properties": {ATTRS_KEY: json.dumps(attrs)},
    }
    kwargs: dict[str, Any] = {}
    if voxel_size:
        metadata["unit"] = "um"
        if array.ndim == 3:
            metadata["spacing"] = voxel_size[0]
        kwargs["resolution"] = (1 / voxel_size[-1], 1 / voxel_size[-2])
    bigtiff = array.nbytes > _CLASSIC_TIFF_LIMIT
    with warnings.catch_warnings():
        # ImageJ itself cannot open BigTIFF; tifffile and Fiji (Bio-Formats) can.
        warnings.filterwarnings("ignore", message=".*nonconformant BigTIFF ImageJ")
        with tifffile.TiffWriter(path, bigtiff=bigtiff, imagej=True) as tif:
            tif.write(
                pages(),
                shape=array.shape,
                dtype=array.dtype,
                compression="zlib",
                metadata=metadata,
                **kwargs,
            )
