"""The bump report: one row per bump, as dicts or as a CSV file."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import fields
from io import StringIO
from pathlib import Path
from typing import Any

from napari_xrm_al.core.metrology.bumps import Bump
from napari_xrm_al.errors import InputError
from napari_xrm_al.io.atomic import atomic_write_text

#: CSV columns, in order; ``bbox`` is split into six columns.
CSV_COLUMNS = (
    "id",
    "z",
    "y",
    "x",
    "bbox_z0",
    "bbox_y0",
    "bbox_x0",
    "bbox_z1",
    "bbox_y1",
    "bbox_x1",
    "solder_voxels",
    "void_voxels",
    "void_ratio",
    "n_voids",
    "largest_void_diameter_vox",
    "largest_void_diameter_um",
    "solder_volume_um3",
    "void_volume_um3",
    "partial",
    "pass",
)


def bumps_to_rows(bumps: Iterable[Bump]) -> list[dict[str, Any]]:
    """One dict per bump with the keys of :data:`CSV_COLUMNS`."""
    rows = []
    for bump in bumps:
        row = {f.name: getattr(bump, f.name) for f in fields(Bump)}
        bbox = row.pop("bbox")
        row["pass"] = row.pop("passed")
        row.update(zip(CSV_COLUMNS[4:10], bbox, strict=True))
        rows.append({c: row[c] for c in CSV_COLUMNS})
    return rows


def write_bumps_csv(path: str | os.PathLike[str], bumps: Iterable[Bump]) -> Path:
    """Write the bump report atomically; unknown values are empty cells."""
    buffer = StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in bumps_to_rows(bumps):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    try:
        atomic_write_text(path, buffer.getvalue())
    except OSError as exc:
        raise InputError(path, f"cannot be written ({exc.strerror})") from None
    return Path(path)
