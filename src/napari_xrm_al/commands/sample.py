"""``napari-xrm-al sample``: write the synthetic HBM volume and its ground truth."""

from __future__ import annotations

import argparse

from napari_xrm_al.core.synthetic.sample import (
    SampleParams,
    class_fractions,
    make_hbm_sample,
    slice_fractions,
    thick_die_params,
    write_sample,
)


def add_sample_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``sample`` and ``demo``: which volume to generate."""
    defaults = SampleParams()
    parser.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="each seed is another scan: geometry, contrast, artefacts (default: %(default)s)",
    )
    parser.add_argument(
        "--shape",
        nargs=3,
        type=int,
        metavar=("Z", "Y", "X"),
        default=defaults.shape,
        help="volume shape in voxels (default: %(default)s)",
    )
    parser.add_argument(
        "--thick-dies",
        action="store_true",
        help="thick dies: solder and voids in under 10 %% of the z slices",
    )
    parser.add_argument(
        "--die-thickness",
        type=int,
        help=f"die thickness in voxels (default: {defaults.die_thickness}, "
        "or the --thick-dies preset)",
    )
    parser.add_argument(
        "--void-probability",
        type=float,
        help=f"chance that a solder cap holds voids (default: {defaults.void_probability})",
    )
    parser.add_argument(
        "--void-layers",
        type=_layers,
        metavar="K[,K...]",
        help="only these bump layers hold voids, 0 = lowest in z (default: all)",
    )


def _layers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(k) for k in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer numbers, got {text!r}"
        ) from None


def params_from_args(args: argparse.Namespace) -> SampleParams:
    """The :class:`SampleParams` the options of :func:`add_sample_options` ask for."""
    overrides = {"shape": tuple(args.shape)}
    if args.die_thickness is not None:
        overrides["die_thickness"] = args.die_thickness
    if args.void_probability is not None:
        overrides["void_probability"] = args.void_probability
    if args.void_layers is not None:
        overrides["void_layers"] = args.void_layers
    if args.thick_dies:
        return thick_die_params(args.seed, **overrides)
    return SampleParams(seed=args.seed, **overrides)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sample`` subcommand."""
    parser = subparsers.add_parser(
        "sample",
        help="write the synthetic HBM micro-bump volume and its ground truth",
        description=(
            "Generate the synthetic HBM micro-bump XRM volume and write image.tif "
            "(uint16), labels.tif (dense ids 0 background, 1 copper, 2 solder, "
            "3 void) and classes.json into OUT_DIR."
        ),
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write into")
    add_sample_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate, write and summarise the sample."""
    sample = make_hbm_sample(params_from_args(args))
    paths = write_sample(args.out_dir, sample)
    for path in paths.values():
        print(f"wrote {path}")
    voxels = class_fractions(sample)
    slices = slice_fractions(sample)
    print(f"shape {sample.image.shape} (z, y, x), voxel size {sample.voxel_size[0]} µm")
    print("class        voxels   z slices holding it")
    for name in sample.classes.names:
        print(f"{name:<10} {voxels[name]:>8.3%} {slices[name]:>8.1%}")
    return 0
