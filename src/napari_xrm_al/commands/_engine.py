"""Options and helpers shared by the ``pretrain`` and ``train`` subcommands."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from napari_xrm_al.commands._settings import add_setting_options, setting_overrides
from napari_xrm_al.core.events import Progress
from napari_xrm_al.core.model.network import DEFAULT_FEATURES, PRESETS
from napari_xrm_al.core.model.normalization import (
    INTENSITY_MODES,
    SCAN_TOLERANCE,
    Normalisation,
    normalisation_for_scan,
)
from napari_xrm_al.core.slice_refs import MAX_ANISOTROPY, anisotropy_note
from napari_xrm_al.core.training.step_loop import RunOptions
from napari_xrm_al.errors import InputError, XrmError
from napari_xrm_al.io.output_paths import check_writable
from napari_xrm_al.io.volumes import Volume, open_volume

#: Config fields every long run takes as options (``--steps``, ``--time-budget``).
RUN_SETTINGS = ("steps", "time_budget_s")
#: TrainConfig settings with an option of their own in ``train`` and ``session
#: train``, beside the run's (and, in ``train``, the network's).
TRAIN_SETTINGS = (
    "loss",
    "rare_paste",
    "ensemble",
    "ema_decay",
    "precision",
    "augment.histogram_shift",
    "augment.intensity_scale",
    "augment.intensity_shift",
    "augment.mixed_grey_share",
    "augment.noise_std",
    "augment.blur_prob",
)
#: Architecture fields taken as options, beside ``--preset`` (the widths).
NETWORK_SETTINGS = ("arch", "context")


def add_run_options(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """Options of any long run: axis, steps and time budget (as ``config_cls``
    describes them), seed, device, threads."""
    parser.add_argument(
        "--axis",
        choices=("z", "y", "x"),
        default="z",
        help="slice axis (default: %(default)s)",
    )
    add_setting_options(parser, config_cls, RUN_SETTINGS)
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_compute_options(parser)


def run_options(
    args: argparse.Namespace, out: Path, provenance: dict[str, Any]
) -> RunOptions:
    """The seed and device (:func:`add_run_options`) and memory limit
    (``--max-memory``) of a run that saves its checkpoint at ``out``."""
    return RunOptions(
        seed=args.seed,
        device=args.device,
        provenance=provenance,
        out=out,
        max_memory=args.max_memory,
    )


def add_compute_options(parser: argparse.ArgumentParser) -> None:
    """Where and how verbosely to compute: device, threads, quiet."""
    parser.add_argument(
        "--device", help="'cpu' or 'cuda' (default: CUDA when present, else CPU)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="CPU threads for torch (default: all cores, %(default)s)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress lines on stderr"
    )


def add_memory_option(parser: argparse.ArgumentParser, default: int, what: str) -> None:
    """``--max-memory MiB`` (stored in bytes), with ``what`` it bounds for the help."""
    parser.add_argument(
        "--max-memory",
        type=_mebibytes,
        default=default,
        metavar="MiB",
        help=f"memory for {what} (default: {default // 2**20})",
    )


def _mebibytes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a whole number of MiB: {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value * 2**20


def add_model_options(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """Architecture options (pretraining, or training without --init)."""
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="small",
        help="network width of --arch unet (default: %(default)s)",
    )
    add_setting_options(parser, config_cls, NETWORK_SETTINGS)


def model_overrides(args: argparse.Namespace, config_cls: type) -> dict:
    """Config fields set by :func:`add_model_options` (the widths: --preset's for
    unet, else the architecture's default)."""
    out = setting_overrides(args, config_cls, NETWORK_SETTINGS)
    arch = out.get("arch", config_cls().arch)
    out["features"] = PRESETS[args.preset] if arch == "unet" else DEFAULT_FEATURES[arch]
    return out


def setup_torch(args: argparse.Namespace) -> None:
    """Use the requested number of CPU threads."""
    if args.threads < 1:
        raise XrmError(f"--threads must be at least 1, got {args.threads}.")
    torch.set_num_threads(args.threads)


def add_anisotropy_option(parser: argparse.ArgumentParser) -> None:
    """``--force-anisotropic``: slices along several axes of strongly
    anisotropic voxels (see :func:`check_anisotropy`)."""
    parser.add_argument(
        "--force-anisotropic",
        action="store_true",
        help="use slices along y or x even when the voxels are more than "
        f"{MAX_ANISOTROPY:g} times longer along one axis (refused otherwise)",
    )


def check_anisotropy(args: argparse.Namespace, volume: Volume, axes) -> None:
    """Warn on stderr, or refuse (:class:`XrmError`), slices along ``axes`` of
    ``volume`` whose pixels are far from square."""
    note = anisotropy_note(volume.voxel_size, axes, force=args.force_anisotropic)
    if note is not None:
        print(f"note: {volume.path}: {note}", file=sys.stderr)


def add_intensity_option(parser: argparse.ArgumentParser) -> None:
    """``--intensity``: how a scan other than the training scan is normalised."""
    parser.add_argument(
        "--intensity",
        choices=INTENSITY_MODES,
        default="auto",
        help="grey levels: 'model' maps the scan's grey values as the training "
        "scan's were mapped, 'scan' maps the scan's own 0.5 and 99.5 percentiles "
        "to the same places (for a scan from another tool, gain or filter); "
        "'auto' (default) takes the scan's own when they differ from the "
        f"training scan's by more than {100 * SCAN_TOLERANCE:g} %% of its range",
    )


def scan_normalisation(
    args: argparse.Namespace, model: Normalisation, data: Any
) -> Normalisation | None:
    """``--intensity``: the scan's (``args.image``, ``data``) own normalisation
    when it is to be used instead of the ``model``'s (a note on stderr says so
    when ``auto`` chose it), else None."""
    norm, own = normalisation_for_scan(model, data, args.intensity)
    if not own:
        return None
    if args.intensity == "auto":
        print(
            f"note: {args.image}'s grey levels ({norm.low:.6g}..{norm.high:.6g} at "
            f"the {norm.percentiles[0]:g} and {norm.percentiles[1]:g} percentiles) "
            f"differ from the training scan's ({model.low:.6g}..{model.high:.6g}): "
            "normalised by its own (--intensity model keeps the training scan's)",
            file=sys.stderr,
        )
    return norm


def open_image(path: str, max_memory: int | None = None) -> Volume:
    """Open an image volume (lazily); refused if one stored chunk needs more
    than ``max_memory`` bytes (see :func:`~napari_xrm_al.io.volumes.open_volume`)."""
    return open_volume(path, max_memory=max_memory)


def check_out(path: str, what: str = "the checkpoint") -> Path:
    """The output file, if it is not a folder and its folder takes new files."""
    out = Path(path)
    if out.is_dir():
        raise InputError(out, f"is a folder; give a file name for {what}")
    return check_writable(out, what)


def progress_printer(quiet: bool, every_s: float = 2.0) -> Callable[[Progress], None]:
    """A callback printing a progress line to stderr at most every ``every_s``."""
    last = [0.0]

    def show(event: Progress) -> None:
        now = time.monotonic()
        if quiet or (now - last[0] < every_s and not event.metrics):
            return
        last[0] = now
        print(event.describe(), file=sys.stderr, flush=True)

    return show
