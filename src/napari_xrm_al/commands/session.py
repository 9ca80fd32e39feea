"""``napari-xrm-al session``: the dock's active-learning loop on a project, headless.

A project is the folder the dock keeps beside a scan (``<scan>.xrmal``): its
annotations, done slices, models, cycles and latest suggestion. Each action
runs the very generator the dock runs (:mod:`napari_xrm_al.core.session.jobs`)
and records its result in the project, so the GUI and the command line can
take turns on the same project (one at a time: the project is locked while
open).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, TypeVar

from napari_xrm_al.commands._engine import (
    RUN_SETTINGS,
    TRAIN_SETTINGS,
    add_anisotropy_option,
    add_compute_options,
    check_anisotropy,
    open_image,
    progress_printer,
    setup_torch,
)
from napari_xrm_al.commands._settings import add_setting_options, setting_overrides
from napari_xrm_al.core.al.acquisition import DEFAULT_MIN_DISTANCE, STRATEGIES
from napari_xrm_al.core.events import Progress, run_to_end
from napari_xrm_al.core.inference.slice_inference import TTA_MODES
from napari_xrm_al.core.session.jobs import (
    pretrain_session,
    rank_session,
    train_session,
)
from napari_xrm_al.core.session.prediction import PREDICTION, predict_session
from napari_xrm_al.core.session.session import Session
from napari_xrm_al.core.settings import with_settings
from napari_xrm_al.core.slice_refs import parse_axes
from napari_xrm_al.core.training.configs import PretrainConfig, TrainConfig
from napari_xrm_al.io.array_reads import volume_fingerprint
from napari_xrm_al.io.volumes import Volume

T = TypeVar("T")

ACTIONS = {
    "status": "what the project holds: scan, classes, done slices, cycles, suggestion",
    "pretrain": "pretrain the encoder on the project's scan",
    "rank": "suggest the next slices to paint and keep them in the project",
    "train": "train a model on the slices marked done and record a cycle",
    "predict": "predict the whole scan with the latest model into the project",
}
#: The config of each action that trains, and the settings it takes as options.
CONFIGS = {
    "pretrain": (PretrainConfig, RUN_SETTINGS),
    "train": (TrainConfig, (*RUN_SETTINGS, *TRAIN_SETTINGS)),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``session`` subcommand and its actions."""
    parser = subparsers.add_parser(
        "session",
        help="run the dock's loop on a project folder (<scan>.xrmal)",
        description=(
            "The active-learning loop of the dock on a project folder (the "
            "<scan>.xrmal the dock keeps beside a scan), without a GUI: each "
            "action records its result in the project, as the dock does."
        ),
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in ACTIONS.items():
        action = actions.add_parser(
            name, help=text, description=text[0].upper() + text[1:] + "."
        )
        action.add_argument("project", help="the project folder (<scan>.xrmal)")
        if name != "status":
            action.add_argument(
                "--image",
                help="the scan, when it has moved (default: the path the project "
                "records)",
            )
            add_compute_options(action)
        if name in CONFIGS:
            add_setting_options(action, *CONFIGS[name])
        files = (
            {"reads": ("image",), "writes": ("project",)} if name != "status" else {}
        )
        action.set_defaults(func=RUNNERS[name], **files)
    _rank_options(actions.choices["rank"])
    add_anisotropy_option(actions.choices["train"])
    actions.choices["train"].add_argument(
        "--seed",
        type=int,
        default=0,
        help="training seed: another seed trains another model from the same "
        "slices, e.g. when a retrain looks worse than the last (default: 0)",
    )
    predict = actions.choices["predict"]
    predict.add_argument(
        "--uncertainty",
        action="store_true",
        help="also write the per-voxel uncertainty (uncertainty.zarr)",
    )
    predict.add_argument(
        "--tta",
        choices=TTA_MODES,
        default="none",
        help="test-time augmentation (default: %(default)s)",
    )


def _rank_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strategy",
        choices=sorted(STRATEGIES),
        default="rareness",
        help="acquisition strategy (default: %(default)s; before any model is "
        "trained the encoder picks the first slices by core-set)",
    )
    parser.add_argument(
        "--top", type=int, default=5, help="slices to suggest (default: 5)"
    )
    parser.add_argument(
        "--axes",
        help="suggest slices along these axes, e.g. z,y,x (default: the project's)",
    )
    parser.add_argument(
        "--min-distance",
        type=int,
        default=DEFAULT_MIN_DISTANCE,
        help="minimum distance in slices between picks and from done slices "
        "(default: %(default)s)",
    )
    add_anisotropy_option(parser)


def _open(args: argparse.Namespace) -> tuple[Session, Volume]:
    """The project (locked) and its scan, checked to be the one it was made for."""
    session = Session.open(Path(args.project))
    try:
        volume = open_image(args.image or session.image.path)
        warnings = session.check_image(
            volume.data.shape, volume_fingerprint(volume.data)
        )
    except BaseException:
        session.close()
        raise
    for warning in [*session.warnings, *warnings]:
        print(f"warning: {warning}", file=sys.stderr)
    return session, volume


def _config(action: str, args: argparse.Namespace):
    """The config of ``action`` with the settings given on the command line."""
    cls, names = CONFIGS[action]
    return with_settings(cls(), setting_overrides(args, cls, names))


def run_status(args: argparse.Namespace) -> int:
    """Print what the project holds."""
    with Session.open(Path(args.project)) as session:
        image = session.image
        print(f"project {session.folder}")
        print(f"scan    {image.path} {'×'.join(map(str, image.shape))} {image.dtype}")
        print(f"classes {', '.join(session.classes.names)}; axis {session.axis}")
        done = ", ".join(str(ref) for ref in session.done) or "none"
        print(f"done    {len(session.done)} slices: {done}")
        print(f"encoder {session.pretrained or 'none'}")
        for cycle in session.cycles:
            miou = cycle.metrics.get("miou")
            score = f", validation mIoU {miou:.3f}" if miou is not None else ""
            print(
                f"cycle {cycle.cycle}: {cycle.strategy}, {len(cycle.labelled)} "
                f"slices, {cycle.model}{score}"
            )
        _print_suggestion(session)
    return 0


def _print_suggestion(session: Session) -> None:
    suggestion = session.suggestion
    if suggestion is None:
        print("suggestion: none")
        return
    print(
        f"suggestion ({suggestion.strategy}, {suggestion.model}, {suggestion.created}):"
    )
    if suggestion.plan:
        print(f"  {suggestion.plan}")
    for pick in suggestion.picks:
        reason = f"  {pick['reason']}" if pick.get("reason") else ""
        print(
            f"  {pick['rank']:>3}  {pick['axis']}:{pick['slice']:<6} "
            f"score {pick['score']:.4f}{reason}"
        )


def _run_job(
    args: argparse.Namespace,
    job: Callable[[Session, Volume], Generator[Progress, None, T]],
) -> tuple[Session, T]:
    """Run ``job`` on the open project and its scan, printing progress; the
    project is closed (unlocked) afterwards."""
    setup_torch(args)
    session, volume = _open(args)
    with session:
        return session, run_to_end(job(session, volume), progress_printer(args.quiet))


def run_pretrain(args: argparse.Namespace) -> int:
    """Pretrain the project's encoder."""
    config = _config("pretrain", args)
    session, ckpt = _run_job(
        args, lambda s, v: pretrain_session(s, v.data, config, device=args.device)
    )
    encoder = session.folder / session.pretrained
    print(f"pretrained {ckpt.history['steps']} steps; encoder {encoder}")
    return 0


def run_rank(args: argparse.Namespace) -> int:
    """Rank the slices with the latest model and keep the picks in the project."""
    axes = parse_axes(args.axes, "--axes") if args.axes else None

    def job(session: Session, volume: Volume) -> Generator[Progress, None, Any]:
        if axes and len(axes) > 1:
            check_anisotropy(args, volume, axes)
        return rank_session(
            session,
            volume.data,
            strategy=args.strategy,
            k=args.top,
            min_distance=args.min_distance,
            device=args.device,
            axes=axes,
        )

    session, _ = _run_job(args, job)
    _print_suggestion(session)
    return 0


def run_train(args: argparse.Namespace) -> int:
    """Train on the done slices; record the cycle."""
    config = _config("train", args)

    def job(session: Session, volume: Volume) -> Generator[Progress, None, Any]:
        check_anisotropy(args, volume, {ref.axis for ref in session.done})
        return train_session(
            session, volume.data, config, device=args.device, seed=args.seed
        )

    session, record = _run_job(args, job)
    loss = record.metrics.get("final_loss")
    print(
        f"cycle {record.cycle} ({record.strategy}): trained on "
        f"{len(record.labelled)} slices (seed {record.seed}) in "
        f"{record.seconds['train']:.0f} s"
        + (f", final loss {loss:.3f}" if loss is not None else "")
        + f"; model {session.folder / record.model}"
    )
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Predict the whole scan into the project."""
    session, result = _run_job(
        args,
        lambda s, v: predict_session(
            s, v.data, uncertainty=args.uncertainty, tta=args.tta, device=args.device
        ),
    )
    shares = ", ".join(
        f"{name} {100 * share:.2f} %"
        for name, share in zip(
            session.classes.names, result.class_fraction, strict=True
        )
    )
    print(f"{result.along()} with {result.model}: {shares}")
    print(f"wrote {session.folder / PREDICTION}")
    return 0


RUNNERS = {
    "status": run_status,
    "pretrain": run_pretrain,
    "rank": run_rank,
    "train": run_train,
    "predict": run_predict,
}
