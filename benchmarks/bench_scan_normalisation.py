"""A model applied to another scan: the training scan's grey levels or the scan's own.

For each generated pool/test pair of the active-learning suite
(:data:`al_suite.SYNTHETIC`), and the bundled sample against its seed-1 scan
(``sample``), trains one model with the default settings on
12 z slices of the pool (the two with the most voxels of each foreground class,
and evenly spread slices to make 12), then scores the test scan twice: with the
intensity normalisation fitted on the pool (stored in the checkpoint) and with
one fitted on the test scan itself (``predict --intensity scan``).

Run::

    python benchmarks/bench_scan_normalisation.py [--pools thick-dies,...] [--seeds 0-2]

Writes one JSON per pool and training seed under
``benchmarks/results/scan-normalisation/`` (kept; pools already written are
skipped) and prints a table; ``--report`` prints the table of every file there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from al_suite import SYNTHETIC, load_pool
from bench_active_learning import configs, machine
from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.al.simulate import score_as_predicted
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.model.normalization import (
    Normalisation,
    fit_normalisation,
    scan_shift,
)
from napari_xrm_al.core.slices import parse_slice_list
from napari_xrm_al.core.synthetic.sample import make_hbm_sample
from napari_xrm_al.core.training.step_loop import RunOptions
from napari_xrm_al.core.training.train import train
from napari_xrm_al.io.atomic import atomic_write_json

N_SLICES = 12
PAIRS = (*SYNTHETIC, "sample")


def load_pair(name: str) -> dict:
    """Pool, test and settings of a suite pool, or of the sample (seed 0 / 1)."""
    if name != "sample":
        return load_pool(name)
    pool, test = make_hbm_sample(seed=0), make_hbm_sample(seed=1)
    return dict(
        image=pool.image, labels=pool.labels, test_image=test.image,
        test_labels=test.labels, classes=ClassTable.hbm(), context=1,
    )  # fmt: skip


def labelled_slices(labels: np.ndarray, n: int = N_SLICES) -> list[int]:
    """The two z slices richest in each foreground class, then evenly spread
    slices until ``n``."""
    counts = np.stack(
        [(labels == c).sum(axis=(1, 2)) for c in range(1, int(labels.max()) + 1)]
    )
    chosen: list[int] = []
    for per_slice in counts:
        chosen += [int(i) for i in np.argsort(-per_slice, kind="stable")[:2]]
    for i in np.linspace(0, labels.shape[0] - 1, n).round().astype(int):
        if len(set(chosen)) >= n:
            break
        chosen.append(int(i))
    return sorted(set(chosen))[:n]


def run_pool(name: str, seed: int, out_dir: Path) -> dict:
    """Train on the pool, score the test scan with both normalisations."""
    data = load_pair(name)
    train_config, _ = configs(data["context"], None, None)
    slices = labelled_slices(data["labels"])
    started = time.time()
    ckpt = run_to_end(
        train(
            data["image"], data["labels"], slices, data["classes"], axis="z",
            dense_labels=True, config=train_config,
            run=RunOptions(seed=seed, device="cpu"),
        )
    )  # fmt: skip
    scores = {}
    own = fit_normalisation(data["test_image"])
    for label, norm in (("training scan", None), ("scan's own", own)):
        scores[label] = run_to_end(
            score_as_predicted(
                ckpt, data["test_image"], data["test_labels"], data["classes"],
                torch.device("cpu"), normalisation=norm,
            )
        )  # fmt: skip
    result = {
        "pool": name, "seed": seed, "slices": slices, "classes": list(data["classes"].names),
        "normalisation": {"pool": ckpt.normalisation.to_dict(), "test": own.to_dict()},
        "scores": scores,
        "benchmark": {
            "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
            "seconds": round(time.time() - started, 1), "argv": sys.argv[1:],
        },
    }  # fmt: skip
    atomic_write_json(out_dir / f"{name}_s{seed}.json", result)
    return result


def shift(result: dict) -> float:
    """How far the test scan's percentiles lie from the pool's
    (:func:`~napari_xrm_al.core.model.normalization.scan_shift`)."""
    pool, test = (
        Normalisation.from_dict(result["normalisation"][k]) for k in ("pool", "test")
    )
    return scan_shift(pool, test)


def table(results: list[dict]) -> None:
    """mIoU and each class IoU on the test scan, per normalisation, the pools
    by how far the test scan's grey levels lie from the pool's."""
    print(
        "| pool | training seed | shift | test scan normalised by | mIoU | per class |"
    )
    print("|---|---|---|---|---|---|")
    for r in sorted(results, key=lambda r: (shift(r), r["seed"])):
        for label, s in r["scores"].items():
            per_class = " / ".join(f"{n} {s['iou'][n]:.3f}" for n in r["classes"][1:])
            print(
                f"| {r['pool']} | {r['seed']} | {shift(r):.2f} | {label} | "
                f"{s['miou']:.3f} | "
                f"{per_class} |"
            )


def main() -> None:
    """Parse the command line, run the pools not yet written, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pools", default=",".join(PAIRS))
    parser.add_argument("--seeds", default="0", help="training seeds, e.g. 0-2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", default="benchmarks/results/scan-normalisation")
    parser.add_argument(
        "--report", action="store_true", help="only print the table of every file"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out_dir = Path(args.out_dir)
    if args.report:
        table([json.loads(p.read_text()) for p in sorted(out_dir.glob("*.json"))])
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.pools.split(","):
        for seed in parse_slice_list(args.seeds, "--seeds"):
            path = out_dir / f"{name}_s{seed}.json"
            if path.exists():
                results.append(json.loads(path.read_text()))
                continue
            results.append(run_pool(name, seed, out_dir))
            print(json.dumps({"wrote": str(path)}), flush=True)
    table(results)


if __name__ == "__main__":
    main()
