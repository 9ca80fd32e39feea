"""Segmentation quality from 8 labelled slices, against a random-forest peer.

Datasets
--------
* ``sample``: the synthetic HBM scan, seed 0 for training (8 evenly spaced,
  centred y slices), seed 1 for testing (another "scan": other geometry,
  contrast and artefacts).
* ``xct-soc``: ``../shared/data/xct-soc`` (real X-ray nano-CT): 8 evenly
  spaced, centred z slices of the train block; tested on the test block.
  Skipped when the folder is absent.

Methods
-------
* ``rf``: ilastik-style pixel classifier, scikit-learn random forest on
  Gaussian, gradient magnitude, LoG, Hessian and structure-tensor eigenvalue
  features at 5 scales, on the same slices.
* ``scratch``: our segmenter, default training, no pretraining.
* ``pretrained``: the same, started from a default contrastive pretraining on
  the training volume.
* ``full``: full supervision reference (every slice of the training volume
  labelled, 4 × the default step cap).

Every number is on the whole test volume: per-class IoU and mIoU.

Usage::

    .venv/bin/python benchmarks/bench_quality.py [--datasets sample,xct-soc]
        [--methods rf,scratch,pretrained,full] [--threads 2] [--budget S]
        [--steps N] [--rare-paste P] [--precision auto] [--seeds 0,1,2]
        [--tta none,flips] [--set KEY=VALUE] [--json results.json]

``--seeds`` trains our models once per training seed (the random forest and
full supervision once); with several seeds, the mean of each method and
test-time augmentation is printed at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch
from scipy import ndimage as ndi
from sklearn.ensemble import RandomForestClassifier

from bench_active_learning import (
    add_rare_paste_option,
    add_set_option,
    rare_paste_override,
    with_set_options,
)
from napari_xrm_al.classes import ClassTable, annotation_to_dense
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.inference.predict import PredictConfig
from napari_xrm_al.core.inference.segmenter import Segmenter
from napari_xrm_al.core.model.normalization import (
    fit_normalisation,
    normalisation_for_scan,
)
from napari_xrm_al.core.slices import axis_index, n_slices, read_slices
from napari_xrm_al.core.synthetic.sample import make_hbm_sample
from napari_xrm_al.core.training.configs import PretrainConfig, TrainConfig
from napari_xrm_al.core.training.metrics import evaluate
from napari_xrm_al.core.training.pretrain import pretrain
from napari_xrm_al.core.training.step_loop import RunOptions
from napari_xrm_al.core.training.train import train

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SIGMAS = (0.7, 1.0, 1.6, 3.5, 5.0)


@dataclass
class Dataset:
    name: str
    train_image: np.ndarray
    train_labels: np.ndarray  # dense ids
    test_image: np.ndarray
    test_labels: np.ndarray
    classes: ClassTable
    axis: str
    slices: list[int]


def centred_slices(n: int, k: int = 8) -> list[int]:
    """``k`` evenly spaced slice indices, centred in ``0..n-1``."""
    return [int((i + 0.5) * n / k) for i in range(k)]


def load(name: str) -> Dataset | None:
    if name == "sample":
        a, b = make_hbm_sample(seed=0), make_hbm_sample(seed=1)
        n = n_slices(a.image.shape, "y")
        return Dataset(
            name,
            a.image,
            a.labels,
            b.image,
            b.labels,
            a.classes,
            "y",
            centred_slices(n),
        )
    if name == "xct-soc":
        if not (DATA / "xct-soc_train_image.tif").exists():
            print(f"skipping xct-soc: {DATA} not found", file=sys.stderr)
            return None
        read = {
            p: tifffile.imread(DATA / f"xct-soc_{p}.tif")
            for p in ("train_image", "train_labels", "test_image", "test_labels")
        }
        classes = ClassTable(("pore", "middle", "bright"), rare=())
        n = read["train_image"].shape[0]
        return Dataset(
            name,
            read["train_image"],
            read["train_labels"],
            read["test_image"],
            read["test_labels"],
            classes,
            "z",
            centred_slices(n),
        )
    raise SystemExit(f"unknown dataset {name!r}")


# -- random-forest peer -------------------------------------------------------
def _eig2(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues of the symmetric 2×2 matrices [[a, b], [b, c]]."""
    mean = (a + c) / 2
    root = np.sqrt(((a - c) / 2) ** 2 + b**2)
    return mean + root, mean - root


def pixel_features(img: np.ndarray) -> np.ndarray:
    """ilastik-style features ``(H, W, F)`` of one normalised 2D slice."""
    feats = [img]
    for s in SIGMAS:
        feats.append(ndi.gaussian_filter(img, s))
        feats.append(ndi.gaussian_gradient_magnitude(img, s))
        feats.append(ndi.gaussian_laplace(img, s))
        hrr = ndi.gaussian_filter(img, s, order=(2, 0))
        hcc = ndi.gaussian_filter(img, s, order=(0, 2))
        hrc = ndi.gaussian_filter(img, s, order=(1, 1))
        feats.extend(_eig2(hrr, hrc, hcc))
        gr = ndi.gaussian_filter(img, s / 2, order=(1, 0))
        gc = ndi.gaussian_filter(img, s / 2, order=(0, 1))
        jrr, jrc, jcc = (ndi.gaussian_filter(v, s) for v in (gr * gr, gr * gc, gc * gc))
        feats.extend(_eig2(jrr, jrc, jcc))
    return np.stack(feats, axis=-1).astype(np.float32)


def random_forest(ds: Dataset, threads: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """Dense prediction of the test volume by the random-forest peer; and seconds."""
    t0 = time.perf_counter()
    norm_tr, norm_te = (
        fit_normalisation(ds.train_image),
        fit_normalisation(ds.test_image),
    )
    img = norm_tr.apply(read_slices(ds.train_image, ds.slices, ds.axis)[:, 0])
    lab = read_slices(ds.train_labels, ds.slices, ds.axis)[:, 0]
    x = np.concatenate(
        [pixel_features(s).reshape(-1, 1 + 7 * len(SIGMAS)) for s in img]
    )
    y = lab.reshape(-1)
    rng = np.random.default_rng(seed)
    # Class-balanced subsample of the labelled pixels (at most 20k per class),
    # as a user's brush strokes would give.
    keep = np.concatenate(
        [
            rng.choice(
                np.flatnonzero(y == c), min(20_000, int((y == c).sum())), replace=False
            )
            for c in np.unique(y)
        ]
    )
    forest = RandomForestClassifier(n_estimators=100, n_jobs=threads, random_state=seed)
    forest.fit(x[keep], y[keep])
    ax = axis_index(ds.axis)
    n = ds.test_image.shape[ax]
    pred = np.empty(
        (n, *[s for i, s in enumerate(ds.test_image.shape) if i != ax]), np.uint8
    )
    for i in range(n):
        f = pixel_features(
            norm_te.apply(read_slices(ds.test_image, [i], ds.axis)[0, 0])
        )
        pred[i] = forest.predict(f.reshape(-1, f.shape[-1])).reshape(pred.shape[1:])
    return np.moveaxis(pred, 0, ax), time.perf_counter() - t0


# -- our segmenter ------------------------------------------------------------
def segment(ckpt, image: np.ndarray, tta: str = "none") -> np.ndarray:
    """Dense class ids of ``image`` predicted by a segmenter checkpoint, as
    ``predict --intensity auto`` predicts another scan."""
    segmenter = Segmenter.build(ckpt)
    out = np.zeros(image.shape, np.uint8)
    norm, _ = normalisation_for_scan(ckpt.normalisation, image)
    config = PredictConfig(summaries=False, tta=tta, normalisation=norm)
    run_to_end(segmenter.predict_volume(image, config, out=out))
    return annotation_to_dense(out)


def ours(
    ds: Dataset, config: TrainConfig, init=None, slices=None, seed: int = 0
) -> tuple[object, float, dict]:
    t0 = time.perf_counter()
    ckpt = run_to_end(
        train(
            ds.train_image,
            ds.train_labels,
            slices or ds.slices,
            ds.classes,
            axis=ds.axis,
            dense_labels=True,
            init=init,
            config=config,
            run=RunOptions(seed=seed),
        )
    )
    seconds = time.perf_counter() - t0
    return ckpt, seconds, ckpt.history


def print_means(rows: list[dict]) -> None:
    """Mean over training seeds of each dataset, method and TTA mode."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["method"], row["tta"]), []).append(row)
    for (dataset, method, tta), group in groups.items():
        keys = [k for k in group[0] if k in ("seconds", "miou") or k.startswith("iou/")]
        mean = {k: round(float(np.mean([r[k] for r in group])), 3) for k in keys}
        print(json.dumps({"mean_of_seeds": [r["seed"] for r in group],
                          "dataset": dataset, "method": method, "tta": tta, **mean}))  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="sample,xct-soc")
    parser.add_argument("--methods", default="rf,scratch,pretrained,full")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, help="training time budget (s)")
    parser.add_argument(
        "--steps", type=int, help="training steps (default: TrainConfig's schedule)"
    )
    parser.add_argument("--json", help="append results (JSON lines) to this file")
    add_rare_paste_option(parser)
    parser.add_argument("--precision", default="auto", help="TrainConfig.precision")
    add_set_option(parser)
    parser.add_argument(
        "--seeds", default="0", help="comma-separated training seeds of our models"
    )
    parser.add_argument(
        "--tta",
        default="none,flips",
        help="test-time augmentation modes to score our models with",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = TrainConfig(
        steps=args.steps,
        time_budget_s=args.budget,
        precision=args.precision,
        **rare_paste_override(args),
    )
    config = with_set_options(config, args.set)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for name in args.datasets.split(","):
        ds = load(name)
        if ds is None:
            continue
        encoder = None
        runs = [
            (method, seed)
            for method in args.methods.split(",")
            for seed in (seeds if method in ("scratch", "pretrained") else seeds[:1])
        ]
        for method, seed in runs:
            extra: dict = {}
            if method == "rf":
                pred, seconds = random_forest(ds, args.threads)
                predictions = {"none": (pred, None)}
            else:
                if method == "scratch":
                    ckpt, seconds, _ = ours(ds, config, seed=seed)
                elif method == "pretrained":
                    t0 = time.perf_counter()
                    encoder = encoder or run_to_end(
                        pretrain(ds.train_image, axis=ds.axis, config=PretrainConfig())
                    )
                    extra["pretrain_s"] = round(time.perf_counter() - t0, 1)
                    ckpt, seconds, _ = ours(ds, config, init=encoder, seed=seed)
                elif method == "full":
                    every = list(range(n_slices(ds.train_image.shape, ds.axis)))
                    full = dataclasses.replace(
                        config, steps=None, max_steps=4 * config.max_steps
                    )
                    ckpt, seconds, _ = ours(ds, full, slices=every)
                else:
                    raise SystemExit(f"unknown method {method!r}")
                extra["precision"] = ckpt.history["precision"]
                predictions = {}
                for mode in args.tta.split(","):
                    t0 = time.perf_counter()
                    pred = segment(ckpt, ds.test_image, mode)
                    predictions[mode] = (pred, round(time.perf_counter() - t0, 1))
            for mode, (pred, predict_s) in predictions.items():
                scores = evaluate(pred, ds.test_labels, ds.classes)
                row = {
                    "dataset": name,
                    "method": method,
                    "seed": seed,
                    "tta": mode,
                    "seconds": round(seconds, 1),
                    "predict_s": predict_s,
                    **extra,
                    "miou": round(scores["miou"], 3),
                    **{
                        f"iou/{c}": round(scores[f"iou/{c}"], 3)
                        for c in ds.classes.names
                    },
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.json:
                    with open(args.json, "a") as fh:
                        fh.write(json.dumps(row) + "\n")
    if len(seeds) > 1:
        print_means(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
