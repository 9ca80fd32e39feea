"""Reading label masks written by :mod:`~napari_xrm_al.io.masks`.

:func:`read_mask` opens any of the three formats (OME-Zarr, plain zarr, ImageJ
TIFF) lazily and checks the metadata record (class table, voxel size, name,
provenance); :func:`classes_beside` reads the ``classes.json`` that may come
with another label volume. Every problem is one
:class:`~napari_xrm_al.errors.InputError` naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tifffile
import zarr

from napari_xrm_al.classes import CLASSES_FILE, LABEL_IDS_KEY, ClassTable
from napari_xrm_al.errors import InputError, XrmError
from napari_xrm_al.io.input_paths import check_input
from napari_xrm_al.io.mask_formats import ATTRS_KEY, MaskFormat
from napari_xrm_al.io.zarr_volume import open_store


@dataclass
class Mask:
    """A mask read back from disk; ``data`` is lazy (a read-only zarr array)."""

    path: Path
    data: zarr.Array
    classes: ClassTable
    voxel_size: tuple[float, ...] | None
    name: str
    provenance: dict[str, Any]
    fmt: MaskFormat


@dataclass(frozen=True)
class ClassesFile:
    """A ``classes.json`` beside a label volume."""

    path: Path
    classes: ClassTable
    #: What its ``label_ids`` says: dense ids (True), annotation ids (False), or
    #: nothing (None).
    dense: bool | None


def classes_beside(labels: Path | str) -> ClassesFile | None:
    """The ``classes.json`` in the folder of label volume ``labels``, if any.

    Raises :class:`InputError` naming that file when it is not JSON, holds no
    usable class table, or its ``label_ids`` is not ``"dense"`` or ``"annotation"``.
    """
    path = Path(labels).parent / CLASSES_FILE
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot be read as JSON ({exc})") from None
    try:
        classes = ClassTable.from_dict(info)
    except XrmError as exc:
        raise InputError(path, f"has an unusable class table: {exc}") from None
    ids = info.get(LABEL_IDS_KEY)
    if ids not in (None, "dense", "annotation"):
        raise InputError(
            path, f"has {LABEL_IDS_KEY} {ids!r}, not 'dense' or 'annotation'"
        )
    return ClassesFile(path, classes, None if ids is None else ids == "dense")


def read_mask(path: Path | str) -> Mask:
    """Open a mask written by napari-xrm-al (any of the three formats).

    Older OME-Zarr masks (before 0.2) hold the mask at ``labels/<name>``:
    their store root and that group both open.
    Raises :class:`InputError` when ``path`` is missing, unreadable or not such a mask.
    """
    path = Path(path)
    check_input(path)
    try:
        if path.is_dir():
            data, attrs, fmt = _open_zarr_mask(path)
        else:
            data, attrs, fmt = _open_tiff_mask(path)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise InputError(path, f"cannot be read as a mask ({exc})") from None
    if not isinstance(attrs, dict) or attrs.get("kind") != "mask":
        raise InputError(
            path,
            f"is not a napari-xrm-al mask (no '{ATTRS_KEY}' mask record in its metadata)",
        )
    try:
        classes = ClassTable.from_dict(attrs)
    except XrmError as exc:
        raise InputError(path, f"has an unusable class table: {exc}") from None
    if data.ndim not in (2, 3) or data.dtype.kind not in "iu":
        raise InputError(
            path, f"holds a {data.ndim}D {data.dtype} array, not a 2D/3D integer mask"
        )
    voxel = attrs.get("voxel_size")
    return Mask(
        path=path,
        data=data,
        classes=classes,
        voxel_size=tuple(float(v) for v in voxel) if voxel else None,
        name=str(attrs.get("name", path.stem)),
        provenance=dict(attrs.get("provenance") or {}),
        fmt=fmt,
    )


def _open_zarr_mask(path: Path) -> tuple[zarr.Array, Any, MaskFormat]:
    node = open_store(path)
    if isinstance(node, zarr.Array):
        return node, node.attrs.get(ATTRS_KEY), "zarr"
    ome = node.attrs.get("ome", {})
    if "image-label" not in ome:  # a mask before 0.2: go to the labels group it names
        record = node.attrs.get(ATTRS_KEY)
        if not isinstance(record, dict) or "name" not in record:
            return node, None, "ome-zarr"
        name = record["name"]
        node = node["labels"][name]
        ome = node.attrs["ome"]
    array = node[ome["multiscales"][0]["datasets"][0]["path"]]
    if not isinstance(array, zarr.Array):
        raise ValueError(f"{array.name} is a group, not an array")
    return array, node.attrs.get(ATTRS_KEY), "ome-zarr"


def _open_tiff_mask(path: Path) -> tuple[zarr.Array, Any, MaskFormat]:
    with tifffile.TiffFile(path) as tif:  # TiffFileError is a ValueError
        properties = (tif.imagej_metadata or {}).get("Properties") or {}
    text = properties.get(ATTRS_KEY)
    attrs = json.loads(text) if text else None
    data = zarr.open_array(tifffile.imread(path, aszarr=True), mode="r")
    return data, attrs, "tiff"


def is_mask_store(path: Path | str) -> bool:
    """Whether ``path`` is a mask :func:`read_mask` can open; never raises."""
    try:
        read_mask(path)
    except Exception:  # noqa: BLE001 - a yes/no probe must not fail on odd files
        return False
    return True
