"""``napari-xrm-al pretrain``: contrastive pretraining of the encoder on a scan."""

from __future__ import annotations

import argparse
import dataclasses

from napari_xrm_al.commands._engine import (
    RUN_SETTINGS,
    add_memory_option,
    add_model_options,
    add_run_options,
    check_out,
    model_overrides,
    open_image,
    progress_printer,
    run_options,
    setup_torch,
)
from napari_xrm_al.commands._settings import add_setting_options, setting_overrides
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.model.checkpoint import make_provenance
from napari_xrm_al.core.training.configs import PretrainConfig
from napari_xrm_al.core.training.pretrain import pretrain
from napari_xrm_al.core.training.trainset import TRAIN_MAX_MEMORY

#: PretrainConfig fields with an option of their own, beside the run's and the
#: network's.
OPTIONS = ("batch_size",)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``pretrain`` subcommand."""
    defaults = PretrainConfig()
    parser = subparsers.add_parser(
        "pretrain",
        help="pretrain the segmentation encoder on an unlabelled scan (SimCLR)",
        description=(
            "Contrastive (SimCLR) pretraining of the segmentation network's encoder "
            "on random 2D crops of the scan; needs no labels. Training then starts "
            "from this encoder (--init). Stops after --steps "
            f"(default {defaults.steps}) or --time-budget seconds "
            f"(default {defaults.time_budget_s:g}), whichever comes first."
        ),
    )
    parser.add_argument(
        "--image", required=True, help="the scan (TIFF, zarr or ZEISS .txm)"
    )
    parser.add_argument(
        "--out", required=True, metavar="ENC", help="encoder file to write"
    )
    add_model_options(parser, PretrainConfig)
    add_run_options(parser, PretrainConfig)
    add_memory_option(
        parser,
        TRAIN_MAX_MEMORY,
        "the regions read for pretraining (whole slices, or boxes of larger ones)",
    )
    add_setting_options(parser, PretrainConfig, OPTIONS)
    parser.set_defaults(func=run, reads=("image",), writes=("out",))


def run(args: argparse.Namespace) -> int:
    """Pretrain and write the encoder checkpoint."""
    setup_torch(args)
    config = dataclasses.replace(
        PretrainConfig(),
        **model_overrides(args, PretrainConfig),
        **setting_overrides(args, PretrainConfig, (*RUN_SETTINGS, *OPTIONS)),
    )
    out = check_out(args.out)
    volume = open_image(args.image, args.max_memory)
    gen = pretrain(
        volume.data,
        axis=args.axis,
        config=config,
        run=run_options(
            args, out, make_provenance(volume.data, volume.path, command="pretrain")
        ),
    )
    ckpt = run_to_end(gen, progress_printer(args.quiet))
    losses = ckpt.history["loss"]
    print(
        f"pretrained {ckpt.history['steps']} steps in {ckpt.history['seconds']:.0f} s, "
        f"loss {losses[0]:.3f} -> {losses[-1]:.3f}; wrote {out}"
    )
    return 0
