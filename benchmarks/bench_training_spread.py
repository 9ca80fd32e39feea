"""How much of a learning-curve gap is the slices, how much training luck?

Retrains one set of labelled slices of an active-learning benchmark dataset
with several training seeds, from the encoder the simulation pretrains with
``--seed``, and scores each model on the test scan. With ``--train-seeds``
starting at the simulation's seed, the first model is the one the simulation
trained at that point (same seeds, steps and slices), so its scores repeat the
result JSON's. ``--rank K`` also ranks the pool with that first model, the way
the next cycle would, and prints each strategy's top slices. ``--set
KEY=VALUE`` changes a training setting (a ``TrainConfig`` setting, e.g.
``--set ema_decay=0.995`` or ``--set augment.histogram_shift=0.25``). ``--score`` scores every model several ways,
``NORMALISATION:TTA[:AXES]`` each: the test scan scaled by the model's
normalisation (``model``, as ``predict`` does) or by its own percentiles
(``own``), with test-time augmentation ``none``, ``flips`` or ``dihedral``,
predicted along one axis (``z`` unless ``AXES`` says) or, with several
``AXES`` (``zyx``), fused along them as ``predict --fuse-axes`` does; every variant's scoring seconds are kept. The last lines
give, per way of scoring, the mean and spread (max − min over the training
seeds) of mIoU and of each class's IoU. ``--on-pool`` scores every model on
the pool scan as well (names ``pool/…``): a seed whose model also fails on the
scan it was trained on has a training problem, not a test-scan one.
``--dataset`` takes the suite's pools too (``al_suite.py --describe``).

Usage::

    python benchmarks/bench_training_spread.py --dataset sample --seed 4 \
        --slices 46,57,61,64,69,73,76,92 --train-seeds 4,1004,2004 \
        --score model:none,model:flips --threads 1 --out benchmarks/out/spread.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from al_suite import load_pool
from bench_active_learning import (
    add_set_option,
    configs,
    machine,
    with_set_options,
)
from napari_xrm_al.core.al.simulate import rank_pool, score_model
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.inference.slice_inference import TTA_MODES
from napari_xrm_al.core.model.normalization import fit_normalisation
from napari_xrm_al.core.slice_refs import format_slice_refs, parse_slice_refs
from napari_xrm_al.core.slices import parse_slice_list
from napari_xrm_al.core.training.pretrain import pretrain
from napari_xrm_al.core.training.step_loop import RunOptions
from napari_xrm_al.core.training.train import train
from napari_xrm_al.io.atomic import atomic_write_json


def parse_variants(text: str) -> dict[str, tuple[str, str, str]]:
    """``{"model:flips": ("model", "flips", "z"), ...}`` from ``--score``."""
    variants = {}
    for item in text.split(","):
        normalisation, _, rest = item.partition(":")
        tta, _, axes = rest.partition(":")
        tta, axes = tta or "none", axes or "z"
        if (
            normalisation not in ("model", "own")
            or tta not in TTA_MODES
            or not set(axes) <= set("zyx")
        ):
            sys.exit(f"--score: {item!r} is not NORMALISATION:TTA[:AXES] ({TTA_MODES})")
        name = f"{normalisation}:{tta}" + (f":{axes}" if axes != "z" else "")
        variants[name] = (normalisation, tta, axes)
    return variants


def spread(scores: list[dict]) -> dict:
    """Mean and max − min over the training seeds of mIoU and each class's IoU."""
    columns = {"miou": [s["miou"] for s in scores]}
    for name in scores[0]["iou"]:
        columns[name] = [s["iou"][name] for s in scores]
    return {
        key: {"mean": round(float(np.mean(v)), 4), "spread": round(float(np.ptp(v)), 4)}
        for key, v in columns.items()
    }


def main() -> None:
    """Run the retraining and print one line per training seed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset",
        default="sample",
        help="sample, sandstone, xct-soc or a pool of the suite (al_suite.py --describe)",
    )
    parser.add_argument("--seed", type=int, required=True, help="pretraining seed")
    parser.add_argument(
        "--slices",
        required=True,
        help="labelled slices, e.g. 3,17,40-45,y:100 (z unless prefixed)",
    )
    parser.add_argument("--train-seeds", required=True, help="e.g. 4,1004,2004")
    parser.add_argument("--pretrain-steps", type=int, default=600)
    parser.add_argument("--train-steps", type=int, default=1600)
    parser.add_argument("--rank", type=int, default=0, metavar="K")
    parser.add_argument("--strategies", default="rareness,entropy")
    add_set_option(parser)
    parser.add_argument(
        "--score",
        default="model:none",
        help="ways of scoring each model, NORMALISATION:TTA[:AXES], comma-separated "
        "(NORMALISATION model or own; TTA none, flips or dihedral; AXES one axis, "
        "z by default, or several to fuse the predictions along them, e.g. zyx)",
    )
    parser.add_argument(
        "--on-pool",
        action="store_true",
        help="also score every model on the pool scan itself (its labelled slices "
        "included; 'own' is then the model's normalisation): whether a seed's "
        "collapse is the test scan's or the training's",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    variants = parse_variants(args.score)
    # Each way of scoring on the test scan and, with --on-pool, on the pool.
    scorings = {name: ("test", *v) for name, v in variants.items()}
    if args.on_pool:
        scorings |= {f"pool/{name}": ("pool", *v) for name, v in variants.items()}
    torch.set_num_threads(args.threads)
    data = load_pool(args.dataset)
    classes, image, labels = data["classes"], data["image"], data["labels"]
    slices = parse_slice_refs(args.slices, "--slices", "z")
    train_config, pre = configs(data["context"], args.train_steps, args.pretrain_steps)
    train_config = with_set_options(train_config, args.set)
    norm = fit_normalisation(image)
    # Image, labels and the ``own`` normalisation of each scan (the pool's own
    # is the model's: None).
    scans = {
        "test": (
            data["test_image"],
            data["test_labels"],
            fit_normalisation(data["test_image"]),
        ),
        "pool": (image, labels, None),
    }
    device = torch.device("cpu")
    started = time.time()
    encoder = run_to_end(
        pretrain(
            image,
            config=pre,
            run=RunOptions(seed=args.seed, device=device, normalisation=norm),
        )
    )
    scores, ranks = [], {}
    for i, seed in enumerate(parse_slice_list(args.train_seeds, "--train-seeds")):
        ckpt = run_to_end(
            train(
                image,
                labels,
                slices,
                classes,
                dense_labels=True,
                init=encoder,
                config=train_config,
                run=RunOptions(seed=seed, device=device, normalisation=norm),
            )
        )
        for name, (scan, normalisation, tta, axes) in scorings.items():
            scan_image, scan_labels, own = scans[scan]
            t0 = time.perf_counter()
            score = run_to_end(
                score_model(
                    ckpt,
                    scan_image,
                    scan_labels,
                    classes,
                    axes[0],
                    device,
                    tta=tta,
                    fuse_axes=tuple(axes) if len(axes) > 1 else (),
                    normalisation=own if normalisation == "own" else None,
                )
            )
            scores.append(
                {
                    "train_seed": seed,
                    "score": name,
                    "train_seconds": ckpt.history["seconds"],
                    "score_seconds": round(time.perf_counter() - t0, 1),
                    **score,
                }
            )
            print(json.dumps(scores[-1]), flush=True)
        save(args, scorings, slices, scores, ranks, started, complete=False)
        if i == 0 and args.rank:
            rankings = run_to_end(
                rank_pool(
                    ckpt,
                    image,
                    labels,
                    [ref.code for ref in slices],
                    classes,
                    args.strategies.split(","),
                    args.rank,
                    axes=sorted({ref.axis_name for ref in slices}),
                    min_distance=data["min_distance"],
                    seed=args.seed,
                    device=device,
                )
            )
            for name, ranking in rankings.items():
                ranks[name] = [[str(p.ref), p.score] for p in ranking.picks]
                print(name, [str(p.ref) for p in ranking.picks], flush=True)
    save(args, scorings, slices, scores, ranks, started, complete=True)


def save(
    args: argparse.Namespace,
    scorings: dict,
    slices: list,
    scores: list[dict],
    ranks: dict,
    started: float,
    *,
    complete: bool,
) -> None:
    """Write the result JSON (after every training seed, so a stopped run keeps
    its finished seeds; ``complete`` says whether every seed ran) and, when
    complete, print the summary."""
    summary = {
        name: spread([s for s in scores if s["score"] == name]) for name in scorings
    }
    if complete:
        for variant, figures in summary.items():
            print(variant, json.dumps(figures), flush=True)
    atomic_write_json(
        Path(args.out),
        {
            "dataset": args.dataset,
            "settings": args.set,
            "complete": complete,
            "summary": summary,
            "seed": args.seed,
            "slices": format_slice_refs(slices),
            "scores": scores,
            "picks": ranks,
            "argv": sys.argv[1:],
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "seconds": round(time.time() - started, 1),
            "machine": machine(),
        },
    )


if __name__ == "__main__":
    main()
