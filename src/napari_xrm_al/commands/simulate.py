"""``napari-xrm-al simulate``: compare acquisition strategies with an oracle."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.commands._engine import (
    add_anisotropy_option,
    add_compute_options,
    check_anisotropy,
    check_out,
    open_image,
    progress_printer,
    setup_torch,
)
from napari_xrm_al.core.al.acquisition import DEFAULT_MIN_DISTANCE, STRATEGIES
from napari_xrm_al.core.al.curves import plot_curves, summary_table
from napari_xrm_al.core.al.simulate import HOLDOUT_FRACTION, simulate
from napari_xrm_al.core.al.simulation_config import (
    NO_PRETRAIN,
    SimulationConfig,
    parse_run,
    read_result,
)
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.slice_refs import parse_axes
from napari_xrm_al.core.slices import axis_index, axis_name, parse_slice_list
from napari_xrm_al.core.training.configs import PretrainConfig, TrainConfig
from napari_xrm_al.errors import XrmError
from napari_xrm_al.io.atomic import atomic_write_json


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise XrmError(
            f"--seeds must be comma-separated integers, got {text!r}."
        ) from None
    if not seeds:
        raise XrmError("--seeds is empty.")
    return seeds


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate`` subcommand."""
    parser = subparsers.add_parser(
        "simulate",
        help="simulate active learning with an oracle and compare strategies",
        description=(
            "Active learning with the ground truth as oracle: start from --initial "
            "random slices, add --per-cycle slices picked by each strategy for --cycles "
            "cycles, retrain from the pretrained encoder every cycle and score the test "
            "volume. Without --test-image the last "
            f"{HOLDOUT_FRACTION:.0%} of the slices along the axis are held out as the "
            "test block. Ground truth holds dense class ids 0..C-1."
        ),
    )
    parser.add_argument(
        "--image", required=True, help="pool scan (TIFF, zarr or ZEISS .txm)"
    )
    parser.add_argument("--labels", required=True, help="its dense ground truth")
    parser.add_argument("--test-image", help="test scan (default: a held-out block)")
    parser.add_argument("--test-labels", help="its dense ground truth")
    parser.add_argument(
        "--classes",
        default="background,copper,solder,void",
        help="class names in id order (default: %(default)s)",
    )
    parser.add_argument(
        "--rare",
        help="the rare class (default: the least frequent in the ground truth)",
    )
    parser.add_argument(
        "--strategy",
        action="append",
        metavar="NAME[:no-pretrain]",
        help=f"strategy to run, repeatable; one of {', '.join(sorted(STRATEGIES))}; "
        f"append '{NO_PRETRAIN}' or ':pretrain' for an ablation (default: rareness, random)",
    )
    parser.add_argument(
        "--no-pretrain",
        action="store_true",
        help="no contrastive pretraining by default",
    )
    parser.add_argument(
        "--initial", type=int, default=2, help="initial random slices (2)"
    )
    parser.add_argument(
        "--start-with",
        metavar="SLICES",
        help="some of the initial slices chosen by hand, e.g. 94 or 90-94,120 "
        "(one that shows the rare class, as an analyst would paint first)",
    )
    parser.add_argument(
        "--per-cycle", type=int, default=2, help="slices added per cycle (2)"
    )
    parser.add_argument("--cycles", type=int, default=3, help="acquisition cycles (3)")
    parser.add_argument(
        "--axis", choices=("z", "y", "x"), default="z", help="slice axis (z)"
    )
    parser.add_argument(
        "--axes",
        help="pick, reveal and train on slices along these axes together, e.g. "
        "z,y,x (default: --axis alone); each model predicts the test scan along "
        "the axes of its training slices, fused when several",
    )
    add_anisotropy_option(parser)
    parser.add_argument(
        "--seeds", default="0", help="comma-separated seeds (default: 0)"
    )
    parser.add_argument(
        "--min-distance",
        type=int,
        default=DEFAULT_MIN_DISTANCE,
        help="minimum distance between picks (default: %(default)s)",
    )
    parser.add_argument(
        "--train-steps", type=int, help="optimiser steps per cycle (default: automatic)"
    )
    parser.add_argument(
        "--pretrain-steps", type=int, help="pretraining steps (default: automatic)"
    )
    parser.add_argument(
        "--full-supervision",
        action="store_true",
        help="also train on every pool slice once as the reference (slow)",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="result JSON file, rewritten after every cycle so that an "
        "interrupted run keeps what it finished",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs --out already holds, go on from the last cycle of "
        "those stopped part-way and run the rest (also: add strategies or seeds "
        "to an earlier result)",
    )
    parser.add_argument("--plot", help="learning-curve PNG")
    add_compute_options(parser)
    parser.set_defaults(
        func=run,
        reads=("image", "labels", "test_image", "test_labels"),
        writes=("out", "plot"),
    )


def _read_pair(image: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(open_image(image).data), np.asarray(open_image(labels).data)


def _earlier_result(path: str) -> dict[str, Any] | None:
    """The result at ``path`` to resume, or None when there is none yet."""
    if not Path(path).exists():
        print(f"{path} does not exist yet: starting from the beginning")
        return None
    return read_result(path)


def run(args: argparse.Namespace) -> int:
    """Run the simulation and write the result (and plot)."""
    if bool(args.test_image) != bool(args.test_labels):
        raise XrmError("--test-image and --test-labels go together.")
    for name in ("initial", "per_cycle"):
        if getattr(args, name) < 1:
            raise XrmError(f"--{name.replace('_', '-')} must be at least 1.")
    if args.cycles < 0:
        raise XrmError("--cycles must not be negative.")
    setup_torch(args)
    classes = ClassTable.parse(args.classes, rare=[args.rare] if args.rare else None)
    runs = tuple(
        parse_run(s, not args.no_pretrain)
        for s in (args.strategy or ["rareness", "random"])
    )
    train_cfg = (
        TrainConfig()
        if args.train_steps is None
        else TrainConfig(steps=args.train_steps)
    )
    pre_cfg = PretrainConfig()
    if args.pretrain_steps is not None:
        pre_cfg = dataclasses.replace(
            pre_cfg, steps=args.pretrain_steps, time_budget_s=None
        )
    axes = parse_axes(args.axes, "--axes") if args.axes else [axis_index(args.axis)]
    check_anisotropy(args, open_image(args.image), axes)
    config = SimulationConfig(
        runs=runs,
        initial=args.initial,
        start_with=tuple(parse_slice_list(args.start_with, "--start-with"))
        if args.start_with
        else (),
        per_cycle=args.per_cycle,
        cycles=args.cycles,
        axis=args.axis,
        axes=tuple(axis_name(a) for a in axes) if args.axes else (),
        seeds=_seeds(args.seeds),
        min_distance=args.min_distance,
        train=train_cfg,
        pretrain=pre_cfg,
        full_supervision=args.full_supervision,
    )
    check_out(args.out, "the result")
    if args.plot:
        check_out(args.plot, "the plot")
    earlier = _earlier_result(args.out) if args.resume else None
    image, labels = _read_pair(args.image, args.labels)
    test = (
        _read_pair(args.test_image, args.test_labels)
        if args.test_image
        else (None, None)
    )
    result = run_to_end(
        simulate(
            image, labels, classes, config,
            test_image=test[0], test_labels=test[1], device=args.device,
            earlier=earlier, on_cycle=lambda r: atomic_write_json(args.out, r),
        ),
        progress_printer(args.quiet),
    )  # fmt: skip
    atomic_write_json(args.out, result)
    print(summary_table(result))
    print(f"wrote {args.out}")
    if args.plot:
        plot_curves(result, args.plot)
        print(f"wrote {args.plot}")
    return 0
