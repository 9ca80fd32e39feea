"""``napari-xrm-al metrology``: the per-bump void report of a class mask, as CSV."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from napari_xrm_al.commands._engine import check_out
from napari_xrm_al.core.classes import HBM_CLASSES, ClassTable, check_class_ids
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.metrology import (
    DEFAULT_MAX_VOID_RATIO,
    SLAB_VOXELS,
    iter_measure_bumps,
    write_bumps_csv,
)
from napari_xrm_al.io.mask_reader import read_mask
from napari_xrm_al.io.volumes import is_mask, open_volume


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``metrology`` subcommand."""
    parser = subparsers.add_parser(
        "metrology",
        help="measure voids per solder bump of a class mask, as CSV",
        description=(
            "Measure every bump (connected solder + void) of a class mask: "
            "centroid, bounding box, solder and void voxels, void ratio, number "
            "of voids, largest void, and pass/fail against a void-ratio threshold."
        ),
    )
    parser.add_argument(
        "--labels", required=True, metavar="MASK", help="class mask (TIFF or zarr)"
    )
    parser.add_argument(
        "--dense-labels",
        action="store_true",
        help="ids are dense 0..C-1 (ground truth) instead of annotation ids 1..C",
    )
    parser.add_argument(
        "--classes",
        help=(
            "class names in id order (default: the mask's own table, else "
            f"{','.join(HBM_CLASSES)})"
        ),
    )
    parser.add_argument("--solder", default="solder", help="solder class name")
    parser.add_argument("--void", default="void", help="void class name")
    parser.add_argument(
        "--voxel-size",
        nargs=3,
        type=float,
        metavar=("Z", "Y", "X"),
        help="voxel size in µm (overrides the file's)",
    )
    parser.add_argument(
        "--max-void-ratio",
        type=float,
        default=DEFAULT_MAX_VOID_RATIO,
        help="a bump passes when void / (solder + void) <= this (default: %(default)s)",
    )
    parser.add_argument(
        "--connectivity",
        type=int,
        choices=(6, 26),
        default=6,
        help="voxel neighbourhood for bumps and voids (default: %(default)s)",
    )
    parser.add_argument(
        "--min-voxels",
        type=int,
        default=1,
        help="drop bumps with fewer solder + void voxels (default: %(default)s)",
    )
    parser.add_argument(
        "--slab",
        type=int,
        help=f"planes read at a time (default: about {SLAB_VOXELS // 2**20} M voxels)",
    )
    parser.add_argument("--out", required=True, help="CSV file to write")
    parser.set_defaults(func=run, reads=("labels",), writes=("out",))


#: Micrometres per unit, for the length units the volume readers report.
_UM_PER_UNIT = {"nm": 1e-3, "µm": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6}


def run(args: argparse.Namespace) -> int:
    """Measure the mask and write the CSV."""
    check_out(args.out, "the bump report")
    mask, file_classes, file_voxel_size = _open_mask(Path(args.labels))
    table = ClassTable.parse(args.classes) if args.classes else file_classes
    shift = 0 if args.dense_labels else 1
    solder_id = table.index(args.solder) + shift
    void_id = table.index(args.void) + shift
    voxel_size = args.voxel_size or file_voxel_size
    gen = iter_measure_bumps(
        mask,
        solder_id=solder_id,
        void_id=void_id,
        voxel_size=voxel_size,
        max_void_ratio=args.max_void_ratio,
        slab=args.slab,
        connectivity=args.connectivity,
        min_voxels=args.min_voxels,
    )
    bumps = run_to_end(gen)
    out = write_bumps_csv(args.out, bumps)
    failed = sum(not b.passed for b in bumps)
    partial = sum(b.partial for b in bumps)
    unit = "" if voxel_size is None else f", voxel size {tuple(voxel_size)} µm"
    print(
        f"{len(bumps)} bumps ({partial} partial), {failed} fail "
        f"void ratio > {args.max_void_ratio}{unit}; wrote {out}"
    )
    return 0


def _open_mask(
    path: Path,
) -> tuple[Any, ClassTable, tuple[float, float, float] | None]:
    """A mask, its class table (HBM unless the file has one) and voxel size in µm."""
    if is_mask(path):
        mask = read_mask(path)
        voxel = (
            mask.voxel_size if mask.voxel_size and len(mask.voxel_size) == 3 else None
        )
        return mask.data, mask.classes, voxel  # type: ignore[return-value]
    volume = open_volume(path)
    check_class_ids(volume.data, path)
    factor = _UM_PER_UNIT.get(volume.unit or "µm")
    if volume.voxel_size is None or factor is None:
        return volume.data, ClassTable.hbm(), None
    return volume.data, ClassTable.hbm(), tuple(v * factor for v in volume.voxel_size)  # type: ignore[return-value]
