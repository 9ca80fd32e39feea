"""``napari-xrm-al rank``: which slices to label next."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np

from napari_xrm_al.commands._engine import (
    add_compute_options,
    add_intensity_option,
    add_memory_option,
    check_out,
    open_image,
    progress_printer,
    scan_normalisation,
    setup_torch,
)
from napari_xrm_al.core.al.acquisition import DEFAULT_MIN_DISTANCE, STRATEGIES
from napari_xrm_al.core.al.discovery import rare_label
from napari_xrm_al.core.al.ranking import (
    BALD_SAMPLES,
    first_ranking,
    rank_summary,
    summarise,
)
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.inference.predict import DEFAULT_MAX_MEMORY
from napari_xrm_al.core.model.checkpoint import Checkpoint, load_checkpoint
from napari_xrm_al.core.slice_refs import (
    SliceRef,
    as_refs,
    parse_axes,
    parse_slice_refs,
    slice_codes,
)
from napari_xrm_al.errors import InputError, XrmError
from napari_xrm_al.io.atomic import atomic_write_text


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``rank`` subcommand."""
    parser = subparsers.add_parser(
        "rank",
        help="rank every slice for labelling with an acquisition strategy",
        description=(
            "Predict every slice of the scan with a trained model, score each with an "
            "acquisition strategy and print the best batch: slices at least "
            "--min-distance apart and away from the slices the model was trained on. "
            "With --axes z,y,x the candidates are the slices along every axis named."
        ),
    )
    parser.add_argument(
        "--image", required=True, help="the scan (TIFF, zarr or ZEISS .txm)"
    )
    parser.add_argument(
        "--model",
        required=True,
        help="trained model (from 'train'); or a pretrained encoder (from "
        "'pretrain') to pick the first slices to label by core-set",
    )
    parser.add_argument(
        "--strategy",
        choices=sorted(STRATEGIES),
        default="rareness",
        help="acquisition strategy (default: %(default)s)",
    )
    parser.add_argument(
        "--top", type=int, default=5, help="slices to pick (default: 5)"
    )
    parser.add_argument(
        "--axis",
        choices=("z", "y", "x"),
        help="slice axis (default: the model's own)",
    )
    parser.add_argument(
        "--axes",
        help="rank the slices along these axes together, e.g. z,y,x (default: the "
        "model's own axis); scores are per-pixel means, so they compare across axes",
    )
    parser.add_argument(
        "--labelled",
        help="slices already labelled, never picked, e.g. 3,17 or z:3,y:40 (default: "
        "those the model was trained and validated on)",
    )
    parser.add_argument(
        "--min-distance",
        type=int,
        default=DEFAULT_MIN_DISTANCE,
        help="minimum distance in slices between picks and from labelled slices "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--csv", metavar="PATH", help="write every slice's score to a CSV"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for 'random' (default: 0)"
    )
    add_compute_options(parser)
    add_intensity_option(parser)
    add_memory_option(
        parser,
        DEFAULT_MAX_MEMORY,
        "predicting one slab of slices (a slice larger than it is predicted in tiles)",
    )
    parser.set_defaults(func=run, reads=("image", "model"), writes=("csv",))


def run(args: argparse.Namespace) -> int:
    """Rank the slices and print the picks."""
    if args.top < 1:
        raise XrmError(f"--top must be at least 1, got {args.top}.")
    setup_torch(args)
    if args.csv:
        check_out(args.csv, "the scores")
    ckpt = load_checkpoint(args.model)
    volume = open_image(args.image, args.max_memory)
    if args.axis and args.axis != ckpt.axis:
        raise InputError(
            args.model,
            f"has {ckpt.axis} as its slice axis, not {args.axis}; rank the slices "
            f"along {args.axis} with --axes {args.axis}",
        )
    axes = parse_axes(args.axes, "--axes") if args.axes else None
    if ckpt.kind == "encoder":
        return _first_slices(args, volume.data, ckpt, axes)
    painted = [
        *ckpt.history.get("slices", []),
        *ckpt.history.get("validation_slices", []),
    ]
    labelled = (
        parse_slice_refs(args.labelled, "--labelled", ckpt.axis)
        if args.labelled
        else as_refs(painted, ckpt.axis)
    )
    counts = np.asarray(
        ckpt.history.get("labelled_counts", np.zeros(len(ckpt.classes)))
    )
    mc = BALD_SAMPLES if "bald" in STRATEGIES[args.strategy].needs else 1
    summary = run_to_end(
        summarise(
            Path(args.model),
            volume.data,
            axes=axes,
            mc_samples=mc,
            device=args.device,
            checkpoint=ckpt,
            max_memory=args.max_memory,
            normalisation=scan_normalisation(args, ckpt.normalisation, volume.data),
        ),
        progress_printer(args.quiet),
    )
    ranking = rank_summary(
        summary,
        args.strategy,
        args.top,
        labelled=slice_codes(labelled).tolist(),
        labelled_counts=counts,
        min_distance=args.min_distance,
        seed=args.seed,
        model=args.model,
    )
    rare = list(ckpt.classes.rare_ids) or [int(np.argmin(counts))]
    rare_name = ckpt.classes.names[rare[0]]
    position = {int(s): i for i, s in enumerate(ranking.index)}
    label = _slice_label(ranking.axes)
    print(
        f"strategy {args.strategy}, {_axes_text(ranking.axes)}, "
        f"{len(ranking.index)} slices scored"
    )
    if ranking.plan is not None:
        print(ranking.plan.describe(ckpt.classes.names, rare_label(ckpt.classes)))
    print(
        f"{'rank':>4}  {'slice':>5}  {'score':>9}  {rare_name + ' %':>9}  {'entropy':>7}"
        "  why"
    )
    for pick in ranking.picks:
        i = position[pick.slice]
        rare_pct = 100 * ranking.class_fraction[i, rare].sum()
        print(
            f"{pick.rank:>4}  {label(pick.ref):>5}  {pick.score:>9.4f}  {rare_pct:>9.3f}"
            f"  {ranking.mean_entropy[i]:>7.4f}  {pick.reason or '-'}"
        )
    if args.csv:
        _write_scores(
            args.csv,
            ["slice", "score", *(f"fraction_{n}" for n in ckpt.classes.names)],
            (
                [label(ref), f"{ranking.scores[i]:.6g}"]
                + [f"{f:.6g}" for f in ranking.class_fraction[i]]
                for i, ref in enumerate(ranking.refs)
            ),
        )
    return 0


def _write_scores(path: str, header: list[str], rows) -> None:
    """Every slice's score as a CSV, written atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())
    print(f"wrote {path}")


def _slice_label(axes: list[str]):
    """How a slice is printed: its index when one axis is ranked, else ``y:40``."""
    if len(axes) == 1:
        return lambda ref: str(ref.index)
    return str


def _axes_text(axes: list[str]) -> str:
    return f"axis {axes[0]}" if len(axes) == 1 else f"axes {','.join(axes)}"


def _first_slices(
    args: argparse.Namespace, data, encoder: Checkpoint, axes: list[int] | None
) -> int:
    """Rank with a pretrained encoder: the first, diverse slices to label."""
    labelled: list[SliceRef] = (
        parse_slice_refs(args.labelled, "--labelled", encoder.axis)
        if args.labelled
        else []
    )
    ranking = run_to_end(
        first_ranking(
            Path(args.model),
            data,
            args.top,
            axes=axes,
            labelled=slice_codes(labelled).tolist(),
            min_distance=args.min_distance,
            device=args.device,
            checkpoint=encoder,
            max_memory=args.max_memory,
        ),
        progress_printer(args.quiet),
    )
    label = _slice_label(ranking.axes)
    print(
        "first slices to label (core-set on the encoder's embeddings, weighted "
        "by feature spread), "
        f"{_axes_text(ranking.axes)}, {len(ranking.index)} slices"
    )
    print(f"{'rank':>4}  {'slice':>5}  {'distance':>9}")
    for pick in ranking.picks:
        # With nothing labelled, the first pick is drawn, not measured from anything.
        drawn = pick.rank == 1 and not labelled
        distance = "first pick" if drawn else f"{pick.score:>9.4f}"
        print(f"{pick.rank:>4}  {label(pick.ref):>5}  {distance:>9}")
    if args.csv:
        _write_scores(
            args.csv,
            ["slice", "distance"],
            (
                [label(ref), f"{v:.6g}"]
                for ref, v in zip(ranking.refs, ranking.scores, strict=True)
            ),
        )
    return 0
