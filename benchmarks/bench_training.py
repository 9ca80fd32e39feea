"""Wall time of one training cycle and of default pretraining on the CPU.

* Training: default :class:`TrainConfig` on 20 labelled 256 × 256 slices
  (z slices of the 128 × 256 × 256 synthetic sample), target ≤ 2 min.
* Pretraining: default :class:`PretrainConfig` on the 128 × 256 × 256 sample,
  target ≤ 5 min.

Times include setup (normalisation fit, reading slices). The load average is
printed because other processes may share the CPU.

Usage::

    .venv/bin/python benchmarks/bench_training.py [--threads 2] [--what train,pretrain]
        [--precision auto,float32] [--rare-paste P] [--steps N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

from bench_active_learning import add_rare_paste_option, rare_paste_override
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.synthetic.sample import make_hbm_sample
from napari_xrm_al.core.training.configs import PretrainConfig, TrainConfig
from napari_xrm_al.core.training.pretrain import pretrain
from napari_xrm_al.core.training.train import train


def timed(gen) -> tuple[object, float]:
    t0 = time.perf_counter()
    result = run_to_end(gen)
    return result, time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--what", default="train,pretrain")
    parser.add_argument(
        "--precision",
        default="auto",
        help="comma-separated TrainConfig precisions to time training in",
    )
    add_rare_paste_option(parser)
    parser.add_argument("--steps", type=int, help="training steps (default: auto)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sample = make_hbm_sample()
    jobs = [
        (what, precision)
        for what in args.what.split(",")
        for precision in (args.precision.split(",") if what == "train" else ["-"])
    ]
    for what, precision in jobs:
        load_before = os.getloadavg()[0]
        if what == "train":
            slices = np.linspace(0, sample.image.shape[0] - 1, 20).round().astype(int)
            ckpt, seconds = timed(
                train(
                    sample.image,
                    sample.labels,
                    slices,
                    sample.classes,
                    dense_labels=True,
                    config=TrainConfig(
                        precision=precision,
                        steps=args.steps,
                        **rare_paste_override(args),
                    ),
                )
            )
            target = 120
        elif what == "pretrain":
            ckpt, seconds = timed(pretrain(sample.image, config=PretrainConfig()))
            target = 300
        else:
            raise SystemExit(f"unknown benchmark {what!r}")
        steps = ckpt.history["steps"]
        row = {
            "benchmark": what,
            "precision": ckpt.history.get("precision", "float32"),
            "seconds": round(seconds, 1),
            "target_s": target,
            "steps": steps,
            "s_per_step": round(ckpt.history["seconds"] / steps, 3),
            "stopped": ckpt.history.get("stopped", "steps done"),
            "threads": args.threads,
            "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
