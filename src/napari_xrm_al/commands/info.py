"""``napari-xrm-al info``: what a scan (or mask) is and how the plugin opens it.

Reads only metadata and a subsample; never writes anything.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from napari_xrm_al.io.array_reads import storage, subsample, volume_fingerprint
from napari_xrm_al.io.mask_reader import read_mask
from napari_xrm_al.io.volumes import Volume, is_mask, open_volume


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``info`` subcommand."""
    parser = subparsers.add_parser(
        "info",
        help="describe a volume or mask: shape, voxel size, chunks, value range",
        description=(
            "Describe a TIFF stack, folder of TIFF slices, zarr array, OME-Zarr "
            "image or ZEISS .txm/.txrm file (or a mask written by napari-xrm-al): "
            "shape, dtype, voxel size, chunking, resolution levels, value range "
            "from a subsample, a fingerprint, the instrument metadata the file "
            "stores, and how the napari plugin will open it. Reads only metadata "
            "and a subsample; writes nothing."
        ),
    )
    parser.add_argument("path", metavar="PATH", help="file or folder to describe")
    parser.add_argument(
        "--channel",
        type=int,
        metavar="N",
        help="channel to describe when the volume has several (or is RGB)",
    )
    parser.set_defaults(func=run)


def _size(voxel: Any, unit: str | None) -> str:
    if voxel is None:
        return "not in the metadata (napari shows 1 per voxel)"
    return " × ".join(f"{v:g}" for v in voxel) + f" {unit or '(no unit)'} (z, y, x)"


def _print(rows: list[tuple[str, str]]) -> None:
    width = max(len(key) for key, _ in rows) + 1
    for key, value in rows:
        print(f"{key + ':':<{width}} {value}")


def _value_range(data: Any) -> str:
    sample = subsample(data)
    finite = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample
    text = (
        f"{finite.min():g} to {finite.max():g}" if finite.size else "no finite values"
    )
    return f"{text} (subsample of {sample.size:,} voxels)"


def _volume_rows(volume: Volume) -> list[tuple[str, str]]:
    levels = ", ".join(str(tuple(level.shape)) for level in volume.levels)
    scale = (
        f", scale {tuple(volume.voxel_size)}" if volume.voxel_size is not None else ""
    )
    kind = f"multiscale ({len(volume.levels)} levels)" if len(volume.levels) > 1 else ""
    low, high = volume.contrast_limits
    napari = (
        f"opens one {kind + ' ' if kind else ''}image layer{scale}, "
        f"contrast limits {low:g} to {high:g}, reading slices on demand"
    )
    return [
        ("path", str(volume.path)),
        ("format", volume.fmt),
        ("shape", f"{volume.shape} (z, y, x)"),
        ("dtype", str(volume.dtype)),
        ("voxel size", _size(volume.voxel_size, volume.unit)),
        ("storage", storage(volume.data)),
        ("levels", f"{len(volume.levels)}: {levels}"),
        ("value range", _value_range(volume.data)),
        ("fingerprint", volume_fingerprint(volume.data)),
        ("napari", napari),
    ]


def _mask_rows(path: str) -> list[tuple[str, str]]:
    mask = read_mask(path)
    return [
        ("path", str(mask.path)),
        ("format", f"napari-xrm-al mask ({mask.fmt})"),
        ("name", mask.name),
        ("shape", str(tuple(mask.data.shape))),
        ("dtype", str(mask.data.dtype)),
        (
            "classes",
            ", ".join(f"{i + 1} {n}" for i, n in enumerate(mask.classes.names)),
        ),
        ("voxel size", _size(mask.voxel_size, "µm" if mask.voxel_size else None)),
        ("storage", storage(mask.data)),
        ("fingerprint", volume_fingerprint(mask.data)),
        ("napari", f"opens a labels layer '{mask.name}' coloured by class"),
    ]


def run(args: argparse.Namespace) -> int:
    """Print the description; input problems raise InputError (exit 2)."""
    if args.channel is None and is_mask(args.path):
        _print(_mask_rows(args.path))
        return 0
    volume = open_volume(args.path, channel=args.channel)
    rows = _volume_rows(volume)
    rows += list(volume.instrument.items())
    rows += [("note", note) for note in volume.notes]
    _print(rows)
    return 0
