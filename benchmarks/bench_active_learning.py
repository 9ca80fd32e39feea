"""Active-learning benchmark: every strategy and the ablations, with an oracle.

Datasets
--------
sample
    Pool: the synthetic HBM sample with thick dies (seed 0), where solder and
    voids sit in under 10 % of the z-slices; test: another seed's thick-die scan
    (seed 1, a domain shift). Budget up to 10 % of the pool's slices.
sample-one-void-layer
    Pool: the default sample (seed 0: two bump layers, 20 of 128 z-slices
    with solder) with voids in the upper layer only (8 slices); test: the
    default sample of seed 1, voids in both layers. Uncertain solder is then
    twice as common as voids: what rareness-aware acquisition is for.
sandstone
    ``../shared/data/xrm-sandstone``: each slice tiled 2 × 2; pool = the tiles of
    six slices, test = the tiles of the other three; pyrite is the rare class.
    Tiles are not neighbours in space, so the model is plain 2D (context 0).
xct-soc
    ``../shared/data/xct-soc``: pool = the train block, test = the test block.

Usage::

    python benchmarks/bench_active_learning.py --dataset sample --seeds 0,1,2 \
        --out benchmarks/out/al_sample.json --plot docs/images/al_sample.png

Writes the ``simulate`` result JSON, the learning-curve plot, and prints a
markdown table for ``docs/benchmarks.md``.

On a shared or multi-core machine, seeds can run as separate one-thread
processes and be merged afterwards::

    for s in 0 1 2; do python benchmarks/bench_active_learning.py --seeds $s \
        --threads 1 --out out/al_$s.json & done; wait
    python benchmarks/bench_active_learning.py --merge out/al_0.json out/al_1.json \
        out/al_2.json --out out/al.json --plot docs/images/al_sample.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.al.acquisition import STRATEGIES
from napari_xrm_al.core.al.curves import plot_curves, summary_table
from napari_xrm_al.core.al.simulate import simulate
from napari_xrm_al.core.al.simulation_config import (
    RunSpec,
    SimulationConfig,
    parse_run,
    read_result,
)
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.settings import settings, with_settings
from napari_xrm_al.core.slices import parse_slice_list
from napari_xrm_al.core.synthetic.params import SampleParams
from napari_xrm_al.core.synthetic.sample import (
    make_hbm_sample,
    thick_die_params,
)
from napari_xrm_al.core.training.configs import PretrainConfig, TrainConfig
from napari_xrm_al.io.atomic import atomic_write_json

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
#: Every strategy with pretraining (entropy with pretraining is one of the two
#: ablations method.md asks for), then rareness without pretraining.
DEFAULT_RUNS = (
    *(RunSpec(name, True) for name in STRATEGIES),
    RunSpec("rareness", False),
)


def tiles(volume: np.ndarray) -> np.ndarray:
    """Each (y, x) slice cut into 2 × 2 tiles, stacked along z."""
    _, h, w = volume.shape
    h2, w2 = h // 2, w // 2
    parts = [
        volume[:, i * h2 : (i + 1) * h2, j * w2 : (j + 1) * w2]
        for i in (0, 1)
        for j in (0, 1)
    ]
    return np.stack(parts, axis=1).reshape(-1, h2, w2)


def load(dataset: str) -> dict:
    """Pool, test, classes and per-dataset settings."""
    synthetic = {
        "sample": (thick_die_params(seed=0), thick_die_params(seed=1)),
        "sample-one-void-layer": (
            SampleParams(seed=0, void_layers=(1,)),
            SampleParams(seed=1),
        ),
    }
    if dataset in synthetic:
        pool, test = (make_hbm_sample(p) for p in synthetic[dataset])
        return dict(
            image=pool.image, labels=pool.labels, test_image=test.image,
            test_labels=test.labels, classes=ClassTable.hbm(), context=1, min_distance=3,
        )  # fmt: skip
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} is absent: the {dataset} benchmark needs ../shared/data.")
    if dataset == "sandstone":
        image = tiles(tifffile.imread(SHARED / "xrm-sandstone_image.tif"))
        labels = tiles(tifffile.imread(SHARED / "xrm-sandstone_labels.tif"))
        return dict(
            image=image[:24], labels=labels[:24], test_image=image[24:],
            test_labels=labels[24:], classes=ClassTable.parse("pore,clay,quartz,pyrite", rare=["pyrite"]),
            context=0, min_distance=1,
        )  # fmt: skip
    if dataset == "xct-soc":
        read = lambda name: tifffile.imread(SHARED / f"xct-soc_{name}.tif")  # noqa: E731
        return dict(
            image=read("train_image"), labels=read("train_labels"),
            test_image=read("test_image"), test_labels=read("test_labels"),
            classes=ClassTable.parse("pore,phase1,phase2"), context=1, min_distance=3,
        )  # fmt: skip
    sys.exit(f"unknown dataset {dataset!r}")


def configs(
    context: int, train_steps: int | None, pretrain_steps: int | None
) -> tuple[TrainConfig, PretrainConfig]:
    """Training and pretraining settings: the defaults, or fixed step counts."""
    train = TrainConfig(context=context)
    if train_steps:
        train = dataclasses.replace(train, steps=train_steps)
    pre = PretrainConfig(context=context)
    if pretrain_steps:
        pre = dataclasses.replace(pre, steps=pretrain_steps, time_budget_s=None)
    return train, pre


def add_rare_paste_option(parser: argparse.ArgumentParser) -> None:
    """``--rare-paste P``: TrainConfig.rare_paste, TrainConfig's default when
    not given (see :func:`rare_paste_override`)."""
    parser.add_argument(
        "--rare-paste",
        type=float,
        help="TrainConfig.rare_paste (default: TrainConfig's)",
    )


def rare_paste_override(args: argparse.Namespace) -> dict[str, float]:
    """``rare_paste`` for TrainConfig when ``--rare-paste`` was given, else nothing."""
    return {} if args.rare_paste is None else {"rare_paste": args.rare_paste}


def add_set_option(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable): a training setting for :func:`with_set_options`."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a TrainConfig setting, e.g. ema_decay=0.995 or "
        "augment.histogram_shift=0.25 (repeatable)",
    )


def with_set_options(config: Any, pairs: list[str]) -> Any:
    """``config`` with ``--set KEY=VALUE`` options: a setting's name (dotted for a
    nested one, ``augment.histogram_shift``) and its value read as JSON."""
    known = settings(type(config))
    values = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in known:
            sys.exit(f"--set: {type(config).__name__} has no setting {key!r}")
        values[key] = json.loads(value)
    return with_settings(config, values)


def machine() -> str:
    """CPU model, vector extensions torch uses, core count, for the record (the
    model name alone does not tell an AVX2-only EPYC from one with AVX-512)."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu} ({torch.backends.cpu.get_cpu_capability()}), {os.cpu_count()} cores, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}"
    )


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset",
        default="sample",
        choices=("sample", "sample-one-void-layer", "sandstone", "xct-soc"),
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--runs",
        help="comma-separated strategies[:no-pretrain], or 'none' (default: all)",
    )
    parser.add_argument("--initial", type=int, default=4)
    parser.add_argument(
        "--start-with", default="", help="initial slices by hand, e.g. 94 or 90-94"
    )
    parser.add_argument("--per-cycle", type=int, default=2)
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument(
        "--train-steps", type=int, help="fixed steps per cycle (default: automatic)"
    )
    parser.add_argument("--pretrain-steps", type=int)
    parser.add_argument("--full-supervision", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch threads"
    )
    parser.add_argument(
        "--merge", nargs="+", metavar="JSON", help="merge results of earlier runs"
    )
    parser.add_argument("--out", required=True, help="result JSON, written every cycle")
    parser.add_argument(
        "--resume", action="store_true", help="keep the runs --out holds in full"
    )
    parser.add_argument("--plot")
    args = parser.parse_args()
    if args.merge:
        report(merge([read_result(p) for p in args.merge]), args)
        return
    torch.set_num_threads(args.threads)
    data = load(args.dataset)
    classes = data.pop("classes")
    context, min_distance = data.pop("context"), data.pop("min_distance")
    runs = DEFAULT_RUNS
    if args.runs == "none":  # e.g. only --full-supervision, in its own process
        runs = ()
    elif args.runs:
        runs = tuple(parse_run(r, True) for r in args.runs.split(","))
    train, pre = configs(context, args.train_steps, args.pretrain_steps)
    config = SimulationConfig(
        runs=runs,
        initial=args.initial,
        start_with=tuple(
            parse_slice_list(args.start_with, "--start-with", allow_empty=True)
        ),
        per_cycle=args.per_cycle,
        cycles=args.cycles,
        seeds=tuple(int(s) for s in args.seeds.split(",")),
        min_distance=min_distance,
        train=train,
        pretrain=pre,
        full_supervision=args.full_supervision,
    )
    started = time.time()
    # The commit the run starts from (HEAD may move while it runs).
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()

    def show(event) -> None:
        if event.stage == "simulate":
            print(event.describe(), flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    earlier = read_result(out) if args.resume and out.exists() else None
    result = run_to_end(
        simulate(
            classes=classes, config=config, earlier=earlier,
            on_cycle=lambda r: atomic_write_json(out, r), **data,
        ),
        show,
    )  # fmt: skip
    result["benchmark"] = {
        "dataset": args.dataset,
        "argv": sys.argv[1:],
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "load_after": os.getloadavg()[0],
        "seconds": round(time.time() - started, 1),
        "commit": commit,
    }
    report(result, args)


def merge(results: list[dict]) -> dict:
    """One result from runs of the same benchmark with different seeds."""
    merged = {**results[0], "runs": [r for res in results for r in res["runs"]]}
    # A result still being written (resumable) has no "benchmark" record yet.
    merged["benchmark"] = [res["benchmark"] for res in results if "benchmark" in res]
    fulls = [res["full_supervision"] for res in results if "full_supervision" in res]
    if fulls:
        # The reference of several seeds: mean scores, with the spread of mIoU.
        merged["full_supervision"] = {
            "miou": float(np.mean([f["miou"] for f in fulls])),
            "iou": {c: float(np.mean([f["iou"][c] for f in fulls])) for c in fulls[0]["iou"]},
            "miou_std": float(np.std([f["miou"] for f in fulls])),
            "n_runs": len(fulls),
        }  # fmt: skip
    return merged


def report(result: dict, args: argparse.Namespace) -> None:
    """Write the JSON and the plot; print the table."""
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    if args.plot:
        plot_curves(result, args.plot)
    print(summary_table(result))
    print(json.dumps(result["benchmark"]))


if __name__ == "__main__":
    main()
