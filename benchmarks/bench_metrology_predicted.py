"""Void metrology on a predicted mask against the ground truth.

Trains the default model on 8 evenly spaced z-slices of the sample (seed 0),
predicts another scan (seed 1), measures every bump on the prediction and on
the ground truth, pairs them (the predicted bump holding the true bump's
centroid) and reports the void-ratio error and the pass/fail agreement.

Usage::

    python benchmarks/bench_metrology_predicted.py [--steps N] [--pretrain]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.inference.predict import PredictConfig
from napari_xrm_al.core.inference.segmenter import Segmenter
from napari_xrm_al.core.metrology.bumps import measure_bumps
from napari_xrm_al.core.synthetic.sample import make_hbm_sample
from napari_xrm_al.core.training.configs import TrainConfig
from napari_xrm_al.core.training.pretrain import pretrain
from napari_xrm_al.core.training.train import train

SOLDER, VOID = 3, 4  # annotation ids of the HBM table


def main() -> None:
    """Run the benchmark and print a markdown summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, help="training steps (default: automatic)")
    parser.add_argument(
        "--pretrain", action="store_true", help="pretrain the encoder first"
    )
    parser.add_argument("--threshold", type=float, default=0.25)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    classes = ClassTable.hbm()
    pool, test = make_hbm_sample(seed=0), make_hbm_sample(seed=1)
    slices = np.linspace(0, pool.image.shape[0] - 1, 8).round().astype(int).tolist()
    started = time.perf_counter()
    init = run_to_end(pretrain(pool.image)) if args.pretrain else None
    config = TrainConfig() if args.steps is None else TrainConfig(steps=args.steps)
    ckpt = run_to_end(
        train(
            pool.image,
            pool.labels,
            slices,
            classes,
            dense_labels=True,
            init=init,
            config=config,
        )
    )
    trained = time.perf_counter() - started
    predicted = np.zeros(test.image.shape, np.uint8)
    run_to_end(
        Segmenter.build(ckpt).predict_volume(
            test.image, PredictConfig(summaries=False), out=predicted
        )
    )
    truth = test.labels + 1
    kw = dict(
        solder_id=SOLDER,
        void_id=VOID,
        voxel_size=test.voxel_size,
        max_void_ratio=args.threshold,
    )
    true_bumps, pred_bumps = measure_bumps(truth, **kw), measure_bumps(predicted, **kw)
    # Pair each true bump with the predicted bump whose box holds its centroid.
    errors, agree, missed = [], 0, 0
    for b in true_bumps:
        c = np.round([b.z, b.y, b.x]).astype(int)
        match = [
            p for p in pred_bumps
            if all(p.bbox[i] <= c[i] < p.bbox[i + 3] for i in range(3))
        ]  # fmt: skip
        if not match:
            missed += 1
            continue
        p = max(match, key=lambda q: q.solder_voxels + q.void_voxels)
        errors.append(p.void_ratio - b.void_ratio)
        agree += p.passed == b.passed
    errors = np.asarray(errors)
    voids = np.array([b.void_ratio for b in true_bumps])
    print(
        f"training slices {slices}, {trained:.0f} s training{' incl. pretraining' if init else ''}"
    )
    print(
        f"| bumps (truth / predicted / matched) | {len(true_bumps)} / {len(pred_bumps)} / {len(errors)} |"
    )
    print(f"| true void ratio, mean (max) | {voids.mean():.4f} ({voids.max():.4f}) |")
    print(f"| void-ratio error, mean absolute | {np.abs(errors).mean():.4f} |")
    print(f"| void-ratio error, mean (bias) | {errors.mean():+.4f} |")
    print(
        f"| void-ratio error, 95th percentile of absolute | {np.percentile(np.abs(errors), 95):.4f} |"
    )
    print(
        f"| pass/fail agreement (threshold {args.threshold}) | {agree}/{len(errors)} |"
    )
    print(f"| true bumps with no predicted bump | {missed} |")


if __name__ == "__main__":
    main()
