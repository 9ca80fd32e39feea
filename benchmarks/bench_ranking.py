"""Wall time of ranking every slice of a 128 × 256 × 256 volume, per strategy.

Ranking = one prediction pass over every slice for the per-slice summaries
(MC dropout with 8 extra passes for BALD; encoder embeddings for the
diversity strategies) + scoring + batch picking. Target: ≤ 15 s on 2 cores for
the single-pass strategies; BALD's cost is reported. Also times the first
picks from the pretrained encoder (embeddings only).

The model is trained as a project trains it: default settings, from an encoder
pretrained for 600 steps, on 8 slices of the sample. How well it is trained
does not change the work, but it decides the precision: bfloat16 prediction
is kept only where its class maps agree with float32's, which a barely trained
model's often do not. The summary cache is not used: every strategy pays its
own prediction pass.

With ``--axes z,y,x`` it times instead ranking (rareness, and the first picks
from the encoder) over the slices along the first axis named and along all of
them, the faster of two runs each, and prints the ratio (issue 17 target:
three axes ≤ 3× one).

Usage::

    .venv/bin/python benchmarks/bench_ranking.py [--threads 2] [--axes z,y,x]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import torch

from napari_xrm_al.core.al.acquisition import STRATEGIES
from napari_xrm_al.core.al.ranking import (
    BALD_SAMPLES,
    first_ranking,
    rank_summary,
    summarise,
)
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.model.checkpoint import save_checkpoint
from napari_xrm_al.core.slice_refs import parse_axes
from napari_xrm_al.core.synthetic.sample import make_hbm_sample
from napari_xrm_al.core.training.configs import PretrainConfig, TrainConfig
from napari_xrm_al.core.training.pretrain import pretrain
from napari_xrm_al.core.training.train import train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--axes", help="compare ranking these axes with the first")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sample = make_hbm_sample()
    slices = np.linspace(0, sample.image.shape[0] - 1, 8).round().astype(int)
    labelled_counts = np.bincount(sample.labels[slices].ravel(), minlength=4)
    with TemporaryDirectory() as tmp:
        encoder = run_to_end(
            pretrain(sample.image, config=PretrainConfig(steps=600, time_budget_s=None))
        )
        encoder_path = Path(tmp) / "encoder.pt"
        save_checkpoint(encoder_path, encoder)
        model_path = Path(tmp) / "model.pt"
        ckpt = run_to_end(
            train(
                sample.image, sample.labels, slices, sample.classes,
                dense_labels=True, init=encoder, config=TrainConfig(),
            )
        )  # fmt: skip
        save_checkpoint(model_path, ckpt)
        load = os.getloadavg()[0]
        if args.axes:
            axes = parse_axes(args.axes, "--axes")
            every = ",".join("zyx"[a] for a in axes)
            rows = []
            for _ in range(2):  # the faster of two runs each, alternated
                for some in (axes[:1], axes):
                    rows += _axes_rows(
                        model_path, encoder_path, sample, some, labelled_counts
                    )
            for kind in ("rareness", "first picks (encoder)"):
                best = {
                    name: min(
                        r["seconds"]
                        for r in rows
                        if r["strategy"] == kind and r["axes"] == name
                    )
                    for name in ("zyx"[axes[0]], every)
                }
                ratio = best[every] / best["zyx"[axes[0]]]
                rows.append({"strategy": kind, "ratio": round(ratio, 2)})
            _print(rows, sample, args, load)
            return 0
        t0 = time.perf_counter()
        first = run_to_end(first_ranking(encoder_path, sample.image, 5))
        rows = [{"strategy": "first picks (encoder)", "seconds": time.perf_counter() - t0,
                 "slices": len(first.index)}]  # fmt: skip
        for name, strategy in STRATEGIES.items():
            mc = BALD_SAMPLES if "bald" in strategy.needs else 1
            t0 = time.perf_counter()
            summary = run_to_end(summarise(model_path, sample.image, mc_samples=mc))
            ranking = rank_summary(
                summary, name, 5, labelled=list(slices), labelled_counts=labelled_counts
            )
            rows.append({"strategy": name, "seconds": time.perf_counter() - t0,
                         "slices": len(ranking.index)})  # fmt: skip
    _print(rows, sample, args, load)
    return 0


def _axes_rows(model_path, encoder_path, sample, axes, labelled_counts) -> list[dict]:
    """Seconds of ranking (rareness) and of the first picks along ``axes``."""
    names = ",".join("zyx"[a] for a in axes)
    t0 = time.perf_counter()
    first = run_to_end(first_ranking(encoder_path, sample.image, 5, axes=axes))
    rows = [{"strategy": "first picks (encoder)", "axes": names,
             "seconds": time.perf_counter() - t0, "slices": len(first.index)}]  # fmt: skip
    t0 = time.perf_counter()
    summary = run_to_end(summarise(model_path, sample.image, axes=axes))
    ranking = rank_summary(
        summary, "rareness", 5, labelled=[], labelled_counts=labelled_counts
    )
    rows.append({"strategy": "rareness", "axes": names,
                 "seconds": time.perf_counter() - t0, "slices": len(ranking.index),
                 "picked": [str(p.ref) for p in ranking.picks]})  # fmt: skip
    return rows


def _print(rows, sample, args, load) -> None:
    for row in rows:
        if "seconds" in row:
            row["seconds"] = round(row["seconds"], 2)
        print(json.dumps(row))
    print(
        json.dumps(
            {"shape": list(sample.image.shape), "threads": args.threads,
             "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)}
        )
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
