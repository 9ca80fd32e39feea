"""zarr arrays (v2 and v3) and OME-Zarr images, opened read-only.

OME-Zarr metadata is read from the group attributes directly (NGFF 0.4 keeps
``multiscales`` at the top level, 0.5 under ``ome``); every level is a zarr
array, so nothing is read until napari asks for a slice. Plain arrays are
calibrated from their attributes: ``voxel_size`` (or ``spacing``,
``resolution``, ``scale``) as ``[z, y, x]`` or ``{"z": .., "y": .., "x": ..}``,
plus ``unit``; our own exports keep the same keys under ``napari_xrm_al``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import zarr
from zarr.storage import LocalStore

from napari_xrm_al.errors import InputError
from napari_xrm_al.io._source import RawVolume, calibration, reading, spatial_voxel
from napari_xrm_al.io.input_paths import refuse_special

#: Files that mark a directory as a zarr store (v3, then v2).
ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")
#: Top-level attributes of an NGFF 0.4 group (0.5 nests everything under ``ome``).
OME_KEYS = ("multiscales", "bioformats2raw.layout", "plate", "well", "labels")
#: Attribute keys that may hold a plain array's voxel size, in order.
VOXEL_KEYS = ("voxel_size", "spacing", "resolution", "scale")


class RegularFileStore(LocalStore):
    """A read-only local store that reads only regular files.

    Each metadata or chunk file is checked when it is read (a FIFO among the
    chunks would block the read forever); the error names that file.
    """

    def __init__(self, root: Path) -> None:
        super().__init__(root, read_only=True)

    async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
        refuse_special(self.root / key)
        return await super().get(key, prototype, byte_range)

    async def get_partial_values(self, prototype: Any, key_ranges: Any) -> Any:
        key_ranges = list(key_ranges)
        for key, _ in key_ranges:
            refuse_special(self.root / key)
        return await super().get_partial_values(prototype, key_ranges)


def open_store(path: Path) -> zarr.Array | zarr.Group:
    """The zarr array or group at ``path``, read-only, through :class:`RegularFileStore`."""
    return zarr.open(store=RegularFileStore(path), mode="r")


def is_zarr_store(path: Path) -> bool:
    """Whether ``path`` is a directory holding zarr metadata (of any file
    type: a metadata file that is not regular is refused when read)."""
    return path.is_dir() and any((path / m).exists() for m in ZARR_MARKERS)


def is_ome_zarr(path: Path) -> bool:
    """Whether ``path`` is a zarr group with OME-Zarr metadata (a quiet probe)."""
    if not is_zarr_store(path):
        return False
    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception:  # noqa: BLE001 - a yes/no probe must not fail on odd stores
        return False
    if not isinstance(node, zarr.Group):
        return False
    attrs = node.attrs.asdict()
    return isinstance(attrs.get("ome"), Mapping) or any(
        key in attrs for key in OME_KEYS
    )


def _letter(name: Any, kind: Any = None) -> str:
    """Our axis letter for an NGFF / dimension name."""
    name = str(name).lower()
    if kind == "channel" or name in ("c", "channel", "channels"):
        return "C"
    if kind == "time" or name in ("t", "time"):
        return "T"
    return name.upper() if name in ("z", "y", "x") else "Q"


def _default_axes(ndim: int) -> str:
    return "Q" * max(ndim - 2, 0) + "YX"[-ndim:] if ndim else ""


def _array_axes(array: zarr.Array) -> str:
    """Axes of a plain array from its dimension names, if it has any."""
    names = getattr(array.metadata, "dimension_names", None)
    names = names or array.attrs.get("_ARRAY_DIMENSIONS")  # xarray's v2 convention
    if names and len(names) == array.ndim and all(n is not None for n in names):
        axes = "".join(_letter(n) for n in names)
        if "Y" in axes and "X" in axes:
            return axes
    return _default_axes(array.ndim)


def _attrs_calibration(
    attrs: Mapping[str, Any], axes: str, notes: list[str]
) -> tuple[tuple[float, float, float] | None, str | None]:
    """Voxel size of a plain array from its attributes (``[z, y, x]``)."""
    for source in (attrs.get("napari_xrm_al"), attrs):
        if not isinstance(source, Mapping):
            continue
        unit = source.get("unit", source.get("units"))
        if isinstance(unit, list | tuple):
            unit = unit[-1] if unit else None
        for key in VOXEL_KEYS:
            value = source.get(key)
            if isinstance(value, Mapping):
                value = [value.get(a) for a in "zyx"]
            elif isinstance(value, list | tuple) and len(value) == len(axes) != 3:
                value = [dict(zip(axes, value, strict=True)).get(a) for a in "ZYX"]
            if isinstance(value, list | tuple) and len(value) == 3:
                voxel = calibration(value, unit, notes)
                if voxel[0] is not None:
                    return voxel
    return None, None


def _multiscales(attrs: Mapping[str, Any]) -> list[Any] | None:
    ome = attrs.get("ome", attrs)
    found = ome.get("multiscales") if isinstance(ome, Mapping) else None
    return found if isinstance(found, list) and found else None


def _scale(transforms: Any) -> list[float] | None:
    for t in transforms or ():
        if isinstance(t, Mapping) and t.get("type") == "scale":
            return list(t.get("scale", ()))
    return None


def _open_ome(path: Path, group: zarr.Group, found: list[Any]) -> RawVolume:
    """An OME-Zarr multiscale image: every level, axes and calibration."""
    notes: list[str] = []
    if len(found) > 1:
        notes.append(
            f"The store holds {len(found)} multiscale images; the first is used."
        )
    meta = found[0]
    datasets = meta.get("datasets") or []
    if not datasets:
        raise InputError(path, "is an OME-Zarr image without any datasets")
    levels = [group[d["path"]] for d in datasets]
    if not all(isinstance(level, zarr.Array) for level in levels):
        raise InputError(path, "is an OME-Zarr image whose datasets are not arrays")
    raw_axes = meta.get("axes") or list("tczyx"[-levels[0].ndim :])
    axes = "".join(
        _letter(a.get("name"), a.get("type")) if isinstance(a, Mapping) else _letter(a)
        for a in raw_axes
    )
    if len(axes) != levels[0].ndim:
        axes = _default_axes(levels[0].ndim)
    sizes = _scale(datasets[0].get("coordinateTransformations"))
    overall = _scale(meta.get("coordinateTransformations"))
    if sizes and overall and len(overall) == len(sizes):
        sizes = [a * b for a, b in zip(sizes, overall, strict=True)]
    units = [
        a.get("unit")
        for a in raw_axes
        if isinstance(a, Mapping) and _letter(a.get("name"), a.get("type")) in "ZYX"
    ]
    voxel, unit = (None, None)
    if sizes:
        voxel, unit = spatial_voxel(axes, sizes, units[-1] if units else None, notes)
    if (path / "labels").is_dir():
        notes.append(
            "The store also holds label images (labels/); only the image is "
            "opened here."
        )
    return RawVolume(levels, axes, "ome-zarr", voxel, unit, notes)


def open_zarr(path: Path) -> RawVolume:
    """Open a zarr array or OME-Zarr image at ``path`` read-only."""
    with reading(path, "a zarr store"):
        node = open_store(path)
        notes: list[str] = []
        if isinstance(node, zarr.Group) and "bioformats2raw.layout" in node.attrs.get(
            "ome", node.attrs
        ):
            node = node["0"]
            notes.append("bioformats2raw layout: image 0 is opened.")
        if isinstance(node, zarr.Group):
            found = _multiscales(node.attrs)
            if found:
                raw = _open_ome(path, node, found)
                raw.notes[:0] = notes
                return raw
            arrays = sorted(name for name, _ in node.arrays())
            if len(arrays) != 1:
                listed = ", ".join(arrays) if arrays else "none"
                raise InputError(
                    path,
                    "is a zarr group without OME-Zarr multiscales metadata; "
                    f"open one of its arrays instead (arrays: {listed})",
                )
            notes.append(f"The group holds one array, '{arrays[0]}', which is opened.")
            node = node[arrays[0]]
        axes = _array_axes(node)
        voxel, unit = _attrs_calibration(node.attrs, axes, notes)
        return RawVolume([node], axes, "zarr", voxel, unit, notes)
