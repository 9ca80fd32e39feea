"""``napari-xrm-al metrology``: the per-bump void report of a class mask, as CSV."""

from __future__ import annotations

import argparse

from napari_xrm_al.classes import HBM_CLASSES
from napari_xrm_al.commands._engine import check_out
from napari_xrm_al.commands._labels import (
    add_label_id_options,
    class_table,
    dense_ids,
    open_labels,
)
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.metrology.bumps import (
    DEFAULT_MAX_VOID_RATIO,
    SLAB_VOXELS,
    iter_measure_bumps,
)
from napari_xrm_al.core.metrology.report import write_bumps_csv


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
    add_label_id_options(parser)
    parser.add_argument(
        "--classes",
        help=(
            "class names in id order (default: the mask's own table or "
            f"classes.json beside the labels, else {','.join(HBM_CLASSES)})"
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


def run(args: argparse.Namespace) -> int:
    """Measure the mask and write the CSV."""
    check_out(args.out, "the bump report")
    labels = open_labels(args.labels)
    mask = labels.data
    table = class_table(args.classes, labels)
    shift = 0 if dense_ids(args.label_ids, labels, table) else 1
    solder_id = table.index(args.solder) + shift
    void_id = table.index(args.void) + shift
    voxel_size = args.voxel_size or labels.voxel_size
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
