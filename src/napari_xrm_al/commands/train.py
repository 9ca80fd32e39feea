"""``napari-xrm-al train``: train the segmenter on annotated slices."""

from __future__ import annotations

import argparse
import sys

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.commands._engine import (
    RUN_SETTINGS,
    TRAIN_SETTINGS,
    add_anisotropy_option,
    add_memory_option,
    add_model_options,
    add_run_options,
    check_anisotropy,
    check_out,
    model_overrides,
    open_image,
    progress_printer,
    run_options,
    setup_torch,
)
from napari_xrm_al.commands._labels import (
    LabelFile,
    add_label_id_options,
    class_table,
    dense_ids,
    open_labels,
)
from napari_xrm_al.commands._settings import add_setting_options, setting_overrides
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.model.checkpoint import load_checkpoint, make_provenance
from napari_xrm_al.core.settings import with_settings
from napari_xrm_al.core.slice_refs import axes_of, parse_slice_refs
from napari_xrm_al.core.training.configs import TrainConfig
from napari_xrm_al.core.training.train import train
from napari_xrm_al.core.training.trainset import TRAIN_MAX_MEMORY
from napari_xrm_al.errors import InputError
from napari_xrm_al.io.array_reads import volume_fingerprint


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="train the segmenter on annotated slices",
        description=(
            "Train the 2D/2.5D segmentation network on the annotated slices of a "
            "scan. Annotations use ids 1..C with 0 = not annotated (ignored); "
            "--dense-labels reads dense ground truth (every value 0..C-1 a class). "
            "A mask written by napari-xrm-al, or a classes.json beside the labels "
            "(as 'sample' writes), gives the classes and which ids the labels use; "
            "labels that could be either must be named with --dense-labels or "
            "--sparse-labels. Starts from the pretrained encoder given with --init."
        ),
    )
    parser.add_argument(
        "--image", required=True, help="the scan (TIFF, zarr or ZEISS .txm)"
    )
    parser.add_argument(
        "--labels", required=True, help="annotations or a mask (TIFF or zarr)"
    )
    add_label_id_options(parser)
    parser.add_argument(
        "--classes",
        help="class names in id order, e.g. background,copper,solder,void "
        "(default: the mask's own table or classes.json beside the labels, else "
        "the HBM classes)",
    )
    parser.add_argument(
        "--rare",
        help="comma-separated rare (defect) classes (default: void if present)",
    )
    parser.add_argument(
        "--slices",
        required=True,
        help="labelled slices, e.g. 3,17,40 or 10-20 (along --axis), or along any "
        "axis: z:40,y:100-102,x:7",
    )
    parser.add_argument(
        "--val-slices",
        help="other annotated slices to validate on (keeps the best model), "
        "written like --slices",
    )
    add_anisotropy_option(parser)
    parser.add_argument(
        "--init", metavar="ENC", help="pretrained encoder (from 'pretrain')"
    )
    parser.add_argument(
        "--out", required=True, metavar="MODEL", help="model file to write"
    )
    add_model_options(parser, TrainConfig)
    add_run_options(parser, TrainConfig)
    add_memory_option(parser, TRAIN_MAX_MEMORY, "the labelled slices read for training")
    add_setting_options(parser, TrainConfig, TRAIN_SETTINGS)
    parser.set_defaults(func=run, reads=("image", "labels", "init"), writes=("out",))


def _classes(args: argparse.Namespace, labels: LabelFile) -> ClassTable:
    table = class_table(args.classes, labels)
    if args.rare is not None:
        rare = [r.strip() for r in args.rare.split(",") if r.strip()]
    else:
        rare = list(table.rare) or [n for n in table.names if n == "void"]
    return table.with_rare(rare)


def run(args: argparse.Namespace) -> int:
    """Train and write the model checkpoint."""
    setup_torch(args)
    options = setting_overrides(args, TrainConfig, (*RUN_SETTINGS, *TRAIN_SETTINGS))
    network = model_overrides(args, TrainConfig)
    out = check_out(args.out)
    init = load_checkpoint(args.init) if args.init else None
    volume = open_image(args.image, args.max_memory)
    label_file = open_labels(args.labels, args.max_memory)
    labels = label_file.data
    classes = _classes(args, label_file)
    if tuple(labels.shape) != volume.shape:
        raise InputError(
            args.labels,
            f"has shape {tuple(labels.shape)} but the image has {volume.shape}",
        )
    dense = dense_ids(args.label_ids, label_file, classes)
    fingerprint = volume_fingerprint(volume.data)
    if init is not None and init.provenance.get("image_fingerprint") not in (
        None,
        fingerprint,
    ):
        print(
            "note: the encoder was pretrained on another volume "
            f"({init.provenance.get('image_path')})",
            file=sys.stderr,
        )
    config = with_settings(
        TrainConfig(), {**options, **(network if init is None else {})}
    )
    slices = parse_slice_refs(args.slices, "--slices", args.axis)
    validation = (
        (
            volume.data,
            labels,
            parse_slice_refs(args.val_slices, "--val-slices", args.axis),
        )
        if args.val_slices
        else None
    )
    check_anisotropy(args, volume, axes_of(slices))
    provenance = make_provenance(
        volume.data,
        volume.path,
        labels_path=str(args.labels),
        labels_fingerprint=volume_fingerprint(labels),
        init_path=str(args.init) if args.init else None,
        command="train",
    )
    gen = train(
        volume.data,
        labels,
        slices,
        classes,
        axis=args.axis,
        dense_labels=dense,
        init=init,
        config=config,
        validation=validation,
        run=run_options(args, out, provenance),
    )
    ckpt = run_to_end(gen, progress_printer(args.quiet))
    history = ckpt.history
    summary = f"trained {history['steps']} steps in {history['seconds']:.0f} s"
    if history["validation"]:
        best = max(history["validation"], key=lambda v: v["miou"])
        summary += f", best validation mIoU {best['miou']:.3f} (step {best['step']})"
    print(f"{summary} on {len(history['slices'])} slices; wrote {out}")
    return 0
