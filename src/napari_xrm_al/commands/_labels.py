"""Label volumes on the command line: their class table and which ids they use.

``train`` and ``metrology`` both read a label volume whose ids are either dense
class ids ``0..C-1`` (ground truth, a predicted mask read as classes) or
annotation ids ``1..C`` with 0 = not annotated. Reading one as the other shifts
every class by one, silently; both commands decide the same way here.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.errors import InputError
from napari_xrm_al.io.array_reads import check_chunks_fit
from napari_xrm_al.io.label_ids import ambiguous_ids, check_class_ids
from napari_xrm_al.io.mask_reader import classes_beside, read_mask
from napari_xrm_al.io.volumes import is_mask, open_volume

#: Micrometres per unit, for the length units the volume readers report.
_UM_PER_UNIT = {"nm": 1e-3, "µm": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6}


@dataclass(frozen=True)
class LabelFile:
    """A label volume and what came with it.

    Attributes
    ----------
    data
        The lazily read volume.
    path
        The file given.
    classes, classes_source
        The class table stored with the labels (the mask's own, or a
        ``classes.json`` beside them) and the file holding it; ``None`` when
        there is none.
    dense
        Whether the file says its ids are dense (``None``: it does not say).
    voxel_size
        Voxel size in µm (z, y, x) when the file records one.
    """

    data: Any
    path: str
    classes: ClassTable | None
    classes_source: str
    dense: bool | None
    voxel_size: tuple[float, float, float] | None


def add_label_id_options(parser: argparse.ArgumentParser) -> None:
    """``--dense-labels`` / ``--sparse-labels`` (stored as ``label_ids``)."""
    ids = parser.add_mutually_exclusive_group()
    ids.add_argument(
        "--dense-labels",
        dest="label_ids",
        action="store_const",
        const="dense",
        help="labels are dense ids 0..C-1 (ground truth) instead of annotation ids 1..C",
    )
    ids.add_argument(
        "--sparse-labels",
        dest="label_ids",
        action="store_const",
        const="annotation",
        help="labels are annotation ids 1..C with 0 = not annotated (the default, "
        "unless the file says otherwise or its ids could be dense)",
    )


def open_labels(path: str | Path, max_memory: int | None = None) -> LabelFile:
    """Open a mask written by napari-xrm-al, or any integer label volume with
    the ``classes.json`` beside it when there is one; refuse one stored in
    chunks larger than ``max_memory`` bytes."""
    path = str(path)
    if is_mask(path):
        mask = read_mask(path)
        if max_memory is not None:
            check_chunks_fit(mask.data, max_memory, path)
        voxel = (
            mask.voxel_size if mask.voxel_size and len(mask.voxel_size) == 3 else None
        )
        # masks hold annotation ids
        return LabelFile(mask.data, path, mask.classes, path, False, voxel)  # type: ignore[arg-type]
    volume = open_volume(path, max_memory=max_memory)
    check_class_ids(volume.data, path)
    factor = _UM_PER_UNIT.get(volume.unit or "µm")
    voxel = None
    if volume.voxel_size is not None and factor is not None:
        voxel = tuple(v * factor for v in volume.voxel_size)
    beside = classes_beside(path)
    if beside is None:
        return LabelFile(volume.data, path, None, path, None, voxel)  # type: ignore[arg-type]
    return LabelFile(
        volume.data,
        path,
        beside.classes,
        str(beside.path),
        beside.dense,
        voxel,  # type: ignore[arg-type]
    )


def class_table(names: str | None, labels: LabelFile) -> ClassTable:
    """The classes named on the command line (which must agree with the
    file's), else the file's, else the HBM classes."""
    if not names:
        return labels.classes or ClassTable.hbm()
    table = ClassTable.parse(names)
    if labels.classes is not None and not labels.classes.matches(table):
        raise InputError(
            labels.classes_source,
            f"has the classes {list(labels.classes.names)}, not {list(table.names)}",
        )
    return table


def dense_ids(option: str | None, labels: LabelFile, classes: ClassTable) -> bool:
    """Whether to read ``labels`` as dense ids: the option, else what the file
    says, else annotation ids, unless the ids could as well be dense (refused)."""
    if option is not None:
        return option == "dense"
    if labels.dense is not None:
        return labels.dense
    if ambiguous_ids(labels.data, len(classes)):
        raise InputError(
            labels.path,
            f"holds ids 0..{len(classes) - 1}, mostly 0: dense class ids (0 = "
            f"{classes.names[0]}) or annotation ids (0 = not annotated)? "
            "Pass --dense-labels or --sparse-labels",
        )
    return False
