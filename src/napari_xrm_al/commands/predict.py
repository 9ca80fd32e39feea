"""``napari-xrm-al predict``: segment a whole scan with a trained model."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Generator
from pathlib import Path

import numpy as np

from napari_xrm_al.commands._engine import (
    add_intensity_option,
    add_memory_option,
    open_image,
    progress_printer,
    scan_normalisation,
    setup_torch,
)
from napari_xrm_al.core.events import Progress, run_to_end
from napari_xrm_al.core.inference.distributed import predict_volume_dask
from napari_xrm_al.core.inference.fused_prediction import predict_fused
from napari_xrm_al.core.inference.predict import (
    DEFAULT_MAX_MEMORY,
    PredictConfig,
    PredictionResult,
)
from napari_xrm_al.core.inference.prediction_outputs import check_out_path
from napari_xrm_al.core.inference.segmenter import Segmenter
from napari_xrm_al.core.inference.slice_inference import PRECISIONS, TTA_MODES
from napari_xrm_al.core.model.checkpoint import load_checkpoint
from napari_xrm_al.core.model.normalization import Normalisation
from napari_xrm_al.core.slice_refs import parse_axes
from napari_xrm_al.errors import XrmError
from napari_xrm_al.io.mask_formats import mask_format_for
from napari_xrm_al.io.volumes import Volume


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` subcommand."""
    parser = subparsers.add_parser(
        "predict",
        help="segment a whole scan with a trained model",
        description=(
            "Predict every slice of a scan with a trained model (from 'train'), "
            "streaming it slab by slab so scans larger than memory work, and write "
            "the class map (annotation ids 1..C, class table in the metadata) as "
            "OME-Zarr labels, zarr or TIFF. Outputs appear only when complete."
        ),
    )
    parser.add_argument(
        "--image", required=True, help="the scan (TIFF, zarr or ZEISS .txm)"
    )
    parser.add_argument("--model", required=True, help="trained model (from 'train')")
    parser.add_argument(
        "--out",
        required=True,
        metavar="OUT",
        help="class map to write: OUT.ome.zarr, OUT.zarr or OUT.tif",
    )
    parser.add_argument(
        "--uncertainty",
        metavar="U.zarr",
        help="also write the pixel uncertainty (entropy / ln C as uint8 0..255)",
    )
    parser.add_argument(
        "--probabilities",
        metavar="P.zarr",
        help="also write per-class probabilities (uint8 0..255, axes c,z,y,x)",
    )
    parser.add_argument(
        "--axis",
        choices=("z", "y", "x"),
        help="slice axis (default: the one most of the model's training slices "
        "lie along)",
    )
    parser.add_argument(
        "--fuse-axes",
        nargs="?",
        const="z,y,x",
        metavar="AXES",
        help="predict along each of these axes (default when given alone: z,y,x) "
        "and write the class of the mean probabilities; about one prediction's "
        "time per axis, holding the probabilities in memory",
    )
    parser.add_argument(
        "--batch-size", type=int, help="slices per batch (default: automatic)"
    )
    parser.add_argument(
        "--mc-samples",
        type=int,
        default=1,
        metavar="T",
        help="MC-dropout passes for the BALD uncertainty of each slice (default: 1 = off)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="arithmetic (default: %(default)s = bfloat16 on CPUs with native "
        "support when it agrees with float32, else float32)",
    )
    parser.add_argument(
        "--tta",
        choices=TTA_MODES,
        default="none",
        help="test-time augmentation: average over the 4 flips (about 4x the "
        "time) or the 8 flips and rotations (8x) of each slice; slightly more "
        "accurate (default: %(default)s)",
    )
    add_intensity_option(parser)
    add_memory_option(
        parser,
        DEFAULT_MAX_MEMORY,
        "one slab of slices (a slice larger than it is predicted in tiles, with "
        "the same result)",
    )
    parser.add_argument("--device", help="'cpu' or 'cuda' (default: CUDA when present)")
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads for torch (with dask: per worker; default: its cores / workers)",
    )
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument(
        "--dask-workers",
        type=int,
        metavar="N",
        help="predict chunk-parallel on a local dask cluster of N worker processes",
    )
    cluster.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="predict chunk-parallel on an existing dask.distributed cluster, e.g. "
        "tcp://host:8786; the image, model and output paths must be the same and "
        "reachable on every worker (e.g. a shared file system)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress lines on stderr"
    )
    parser.set_defaults(
        func=run,
        reads=("image", "model"),
        writes=("out", "uncertainty", "probabilities"),
    )


def _check_outputs(args: argparse.Namespace) -> None:
    """Fail before any work if an output cannot be written."""
    mask_format_for(args.out)
    wanted = [("class map", args.out), ("uncertainty", args.uncertainty)]
    wanted.append(("probabilities", args.probabilities))
    for what, path in wanted:
        if path is not None:
            check_out_path(path, what)


def _config(
    args: argparse.Namespace, normalisation: Normalisation | None
) -> PredictConfig:
    """How the network runs, in every kind of run (fused passes set their
    own axis and no summaries)."""
    return PredictConfig(
        axis=args.axis,
        batch_size=args.batch_size,
        mc_samples=args.mc_samples,
        summaries=args.mc_samples > 1,  # only BALD is reported
        embeddings=False,
        device=args.device,
        precision=args.precision,
        tta=args.tta,
        max_memory=args.max_memory,
        normalisation=normalisation,
    )


def _outputs(args: argparse.Namespace) -> dict:
    """Where the single-process and the dask runs write."""
    return {
        "out": args.out,
        "uncertainty_out": args.uncertainty,
        "probabilities_out": args.probabilities,
    }


def _check_fuse_options(args: argparse.Namespace) -> None:
    """``--fuse-axes`` with an option it does not go with: refused."""
    for option, given in (
        ("--axis", args.axis),
        ("--probabilities", args.probabilities),
        ("--mc-samples", args.mc_samples > 1),
        ("--dask-workers/--scheduler", args.dask_workers or args.scheduler),
    ):
        if given:
            raise XrmError(f"--fuse-axes does not go with {option}.")


def _predict_fused(
    args: argparse.Namespace,
    provenance: dict,
    config: PredictConfig,
    segmenter: Segmenter,
    volume: Volume,
) -> PredictionResult:
    """``--fuse-axes``: the mean of the predictions along several axes."""
    axes = parse_axes(args.fuse_axes, "--fuse-axes")
    return run_to_end(
        predict_fused(
            segmenter,
            volume.data,
            axes,
            config,
            out=args.out,
            uncertainty_out=args.uncertainty,
            voxel_size=volume.voxel_size,
            provenance={**provenance, "fused_axes": args.fuse_axes},
        ),
        progress_printer(args.quiet),
    )


def _predict_here(
    args: argparse.Namespace,
    provenance: dict,
    config: PredictConfig,
    segmenter: Segmenter,
    volume: Volume,
) -> PredictionResult:
    trained = segmenter.checkpoint.trained_axes
    note = f"note: the model was trained on slices along {', '.join(trained)}; "
    if args.axis and args.axis not in trained:
        print(f"{note}predicting along {args.axis}", file=sys.stderr)
    elif len(trained) > 1 and not args.axis:
        print(
            f"{note}predicting along {trained[0]} (--fuse-axes "
            f"{','.join(trained)} averages the predictions along each)",
            file=sys.stderr,
        )
    return run_to_end(
        segmenter.predict_volume(
            volume.data,
            config,
            voxel_size=volume.voxel_size,
            provenance=provenance,
            **_outputs(args),
        ),
        progress_printer(args.quiet),
    )


def _predict_dask(
    args: argparse.Namespace, provenance: dict, config: PredictConfig
) -> Generator[Progress, None, PredictionResult]:
    from distributed import Client

    client = None
    if args.scheduler:
        try:
            client = Client(args.scheduler)
        except (OSError, TimeoutError) as exc:
            raise XrmError(
                f"Cannot reach the dask scheduler at {args.scheduler} ({exc})."
            ) from None
    try:
        return (
            yield from predict_volume_dask(
                args.model,
                args.image,
                config,
                client=client,
                n_workers=args.dask_workers or 1,
                torch_threads=args.threads,
                provenance=provenance,
                **_outputs(args),
            )
        )
    finally:
        if client is not None:
            client.close()


def run(args: argparse.Namespace) -> int:
    """Predict the scan and write the outputs."""
    if args.threads is not None:
        setup_torch(args)
    for name in ("batch_size", "mc_samples", "dask_workers"):
        value = getattr(args, name)
        if value is not None and value < 1:
            option = "--" + name.replace("_", "-")
            raise XrmError(f"{option} must be at least 1, got {value}.")
    _check_outputs(args)
    provenance = {
        "image_path": str(Path(args.image).absolute()),
        "model_path": str(Path(args.model).absolute()),
    }
    if args.fuse_axes:
        _check_fuse_options(args)
    # Read once here: the scan's grey levels are compared with the model's
    # before any run (the dask workers open both again from their paths).
    ckpt = load_checkpoint(args.model, "segmenter")
    volume = open_image(args.image, args.max_memory)
    normalisation = scan_normalisation(args, ckpt.normalisation, volume.data)
    if normalisation is not None:
        provenance["scan_normalisation"] = normalisation.to_dict()
    config = _config(args, normalisation)
    if args.dask_workers or args.scheduler:
        result = run_to_end(
            _predict_dask(args, provenance, config), progress_printer(args.quiet)
        )
    else:
        segmenter = Segmenter.from_checkpoint(
            args.model, device=args.device, checkpoint=ckpt
        )
        predict = _predict_fused if args.fuse_axes else _predict_here
        result = predict(args, provenance, config, segmenter, volume)
    print(
        f"predicted {result.n_slices} slices along {result.axis} in "
        f"{result.seconds:.1f} s ({result.slices_per_second:.1f} slices/s, "
        f"{result.precision}, batch {result.batch_size})"
    )
    fractions = ", ".join(
        f"{name} {frac:.4f}"
        for name, frac in zip(result.classes.names, result.class_fraction, strict=True)
    )
    print(f"class fractions: {fractions}")
    summary = result.summary
    if summary is not None and summary.bald is not None:
        top = summary.index[np.argsort(summary.bald)[::-1][:5]]
        print(f"highest BALD slices: {', '.join(str(int(i)) for i in top)}")
    for kind, path in result.paths.items():
        print(f"wrote {kind}: {path}")
    return 0
