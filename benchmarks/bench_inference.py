"""Inference speed on the CPU: slices/s and achieved GFLOP/s next to a matmul.

Reports, in one run (so the figures share the machine's state):

* a plain float32 matmul (2048³) in GFLOP/s — the reference — and bf16's;
* the naive baseline: MONAI's tutorial ``UNet`` (channels 16…256, two residual
  units, instance norm, PReLU) run as one usually writes it: float32, NCHW,
  ``torch.no_grad``, one slice at a time;
* the same net and our default segmenter with our settings
  (:class:`~napari_xrm_al.core.inference.slice_inference.SliceInference`: eval, inference mode,
  channels-last, batch from the heuristic, float32 and bf16 autocast);
* end to end :meth:`~napari_xrm_al.core.inference.segmenter.Segmenter.predict_volume` (reading,
  normalising, forward, per-slice summaries, class map) on an in-memory volume;
* bf16 vs float32 class-map agreement of briefly trained models (synthetic
  sample, and the real X-ray CT block in ``../shared/data`` when present);
* ``--per-core``: one thread timed by its own CPU time, so the figures hold
  while other processes share the CPU (the matmul reference is then per core too);
* ``--what streaming`` (run it in its own process: it reads the peak RSS):
  a compressed zarr volume several times larger than the slab budget predicted
  along z and along y; peak memory growth and time.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode``
(2 × multiply-adds of convolutions and matmuls). Times are the best of several
short trials because other processes may share the CPU; the load average is
printed.

Usage::

    .venv/bin/python benchmarks/bench_inference.py [--threads 2] [--size 256]
        [--train-seconds 60] [--what speed,agreement] [--per-core]
    .venv/bin/python benchmarks/bench_inference.py --what streaming
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import zarr
from monai.networks.nets import UNet
from torch.utils.flop_counter import FlopCounterMode

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.inference.predict import PredictConfig
from napari_xrm_al.core.inference.segmenter import Segmenter
from napari_xrm_al.core.inference.slice_inference import (
    SliceInference,
    default_batch_size,
    native_bf16_cpu,
)
from napari_xrm_al.core.model.checkpoint import Checkpoint
from napari_xrm_al.core.model.network import ModelConfig, SliceSegmenter
from napari_xrm_al.core.model.normalization import Normalisation
from napari_xrm_al.core.synthetic.sample import make_hbm_sample
from napari_xrm_al.core.training.configs import TrainConfig
from napari_xrm_al.core.training.train import train

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


#: Clock of :func:`best_time`: wall time, or with ``--per-core`` the CPU time
#: of the (single) computing thread, which other processes barely disturb.
CLOCK = [time.perf_counter]


def best_time(fn: Callable[[], object], trials: int = 7, min_s: float = 0.3) -> float:
    """Best per-call time over ``trials`` runs of at least ``min_s`` each."""
    clock = CLOCK[0]
    fn()
    best = float("inf")
    for _ in range(trials):
        n, t0 = 0, clock()
        while (elapsed := clock() - t0) < min_s or n == 0:
            fn()
            n += 1
        best = min(best, elapsed / n)
    return best


def matmul_gflops(dtype: torch.dtype, n: int = 2048) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n**3 / best_time(lambda: a @ b) / 1e9


def flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return float(counter.get_total_flops())


def naive_unet(in_channels: int, n_classes: int) -> torch.nn.Module:
    """MONAI's tutorial 2D UNet."""
    return UNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=n_classes,
        channels=(16, 32, 64, 128, 256),
        strides=(2, 2, 2, 2),
        num_res_units=2,
    ).eval()


def naive_rate(model: torch.nn.Module, x1: torch.Tensor) -> float:
    """Slices/s run the naive way: float32, NCHW, no_grad, batch 1."""
    model.to(memory_format=torch.contiguous_format)

    def run() -> None:
        with torch.no_grad():
            model(x1)

    return 1.0 / best_time(run)


def tuned_rate(model: torch.nn.Module, x: torch.Tensor, precision: str) -> float:
    """Slices/s of logits+softmax with our inference settings (forward only)."""
    engine = SliceInference(model, Normalisation(0.0, 1.0), "cpu", precision)
    with engine:
        xc = x.contiguous(memory_format=torch.channels_last)
        return len(x) / best_time(lambda: engine.probabilities(xc))


def speed_rows(size: int) -> list[tuple[str, float, float]]:
    """(row name, slices/s, GFLOP/slice) of every speed configuration."""
    cfg = ModelConfig(n_classes=4)
    ours = SliceSegmenter(cfg).eval()
    naive = naive_unet(cfg.in_channels, cfg.n_classes)
    batch = default_batch_size((size, size))
    x = torch.rand(batch, cfg.in_channels, size, size)
    rows = []
    precisions = ["float32"] + (["bfloat16"] if native_bf16_cpu() else [])
    for name, model in (("MONAI tutorial UNet", naive), (f"default {cfg.arch}", ours)):
        per_slice = flops(model, x[:1]) / 1e9
        rows.append(
            (
                f"{name}, naive (fp32, NCHW, no_grad, batch 1)",
                naive_rate(model, x[:1]),
                per_slice,
            )
        )
        for precision in precisions:
            label = f"{name}, ours ({precision}, channels-last, batch {batch})"
            rows.append((label, tuned_rate(model, x, precision), per_slice))
        print(f"  measured {name}", flush=True)
    volume = np.random.default_rng(0).random((64, size, size), np.float32)
    segmenter = Segmenter(
        ours,
        Checkpoint(
            "segmenter",
            cfg,
            ours.state_dict(),
            Normalisation(0.0, 1.0),
            "z",
            ClassTable.hbm(),
        ),
    )
    for precision in precisions:

        def run(precision: str = precision) -> None:
            run_to_end(
                segmenter.predict_volume(
                    volume,
                    PredictConfig(precision=precision, embeddings=False),
                    out=np.zeros(volume.shape, np.uint8),
                )
            )

        rate = len(volume) / best_time(run, trials=3, min_s=0.0)
        rows.append(
            (
                (
                    f"default {cfg.arch}, predict_volume end to end ({precision}, "
                    "64 slices: read, normalise, summaries, class map)"
                ),
                rate,
                flops(ours, x[:1]) / 1e9,
            )
        )
    return rows


def agreement(
    image: np.ndarray,
    labels: np.ndarray,
    classes: ClassTable,
    test: np.ndarray,
    seconds: float,
) -> float:
    """Train briefly on ``image``; bf16 vs fp32 class agreement on ``test``."""
    slices = np.linspace(0, image.shape[0] - 1, 16).round().astype(int)
    config = TrainConfig(time_budget_s=seconds)
    ckpt = run_to_end(
        train(image, labels, slices, classes, dense_labels=True, config=config)
    )
    model = SliceSegmenter(ckpt.model_config)
    model.load_state_dict(ckpt.state_dict)
    segmenter = Segmenter(model, ckpt)
    maps = {}
    for precision in ("float32", "bfloat16"):
        maps[precision] = np.zeros(test.shape, np.uint8)
        result = run_to_end(
            segmenter.predict_volume(
                test, PredictConfig(precision=precision), out=maps[precision]
            )
        )
        print(f"  {precision}: {result.slices_per_second:.1f} slices/s", flush=True)
    return float((maps["float32"] == maps["bfloat16"]).mean())


def peak_rss() -> int:
    """Peak resident memory of this process so far, in bytes (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def synthetic_zarr(path: Path, shape: tuple[int, int, int]) -> zarr.Array:
    """A compressed uint16 zarr volume (z-chunks of 16), written chunk by chunk."""
    arr = zarr.create_array(path, shape=shape, chunks=(16, 256, 256), dtype=np.uint16)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[: shape[1], : shape[2]]
    for z0 in range(0, shape[0], 16):
        z = np.arange(z0, min(z0 + 16, shape[0]))[:, None, None]
        smooth = 20000 + 8000 * np.sin(x / 17 + z / 9) * np.cos(y / 23)
        noise = rng.normal(0, 1500, (len(z), *shape[1:]))
        arr[z0 : z0 + 16] = np.clip(smooth + noise, 0, 65535).astype(np.uint16)
    return arr


def streaming(depth: int, side: int, budget_mib: int) -> None:
    """Peak memory and time of predicting a zarr volume larger than the budget."""
    cfg = ModelConfig(n_classes=4)
    model = SliceSegmenter(cfg).eval()
    segmenter = Segmenter(
        model,
        Checkpoint(
            "segmenter",
            cfg,
            model.state_dict(),
            Normalisation(10000.0, 30000.0),
            "z",
            ClassTable.hbm(),
        ),
    )
    with tempfile.TemporaryDirectory() as tmp:
        small = synthetic_zarr(Path(tmp) / "small.zarr", (32, side, side))
        big = synthetic_zarr(Path(tmp) / "big.zarr", (depth, side, side))
        stored = sum(f.stat().st_size for f in (Path(tmp) / "big.zarr").rglob("*"))
        print(
            f"volume {big.shape} uint16 = {big.nbytes / 2**20:.0f} MiB "
            f"({stored / 2**20:.0f} MiB compressed, chunks {big.chunks}); "
            f"slab budget {budget_mib} MiB"
        )
        config = PredictConfig(max_memory=budget_mib * 2**20, embeddings=False)
        run_to_end(segmenter.predict_volume(small, config, out=Path(tmp) / "s.zarr"))
        for axis in ("z", "y"):
            before = peak_rss()
            result = run_to_end(
                segmenter.predict_volume(
                    zarr.open_array(Path(tmp) / "big.zarr", mode="r"),
                    replace(config, axis=axis),
                    out=Path(tmp) / f"{axis}.zarr",
                )
            )
            growth = (peak_rss() - before) / 2**20
            print(
                f"axis {axis}: {result.n_slices} slices in {result.seconds:.1f} s "
                f"({result.slices_per_second:.1f} slices/s, slab {result.slab}, "
                f"{result.precision}); peak RSS grew {growth:.0f} MiB "
                f"(peak {peak_rss() / 2**20:.0f} MiB)",
                flush=True,
            )


def speed(size: int) -> None:
    """Print the matmul reference and the speed table."""
    mm32, mm16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    print(f"matmul 2048³: float32 {mm32:.0f} GFLOP/s, bf16 {mm16:.0f} GFLOP/s")
    rows = speed_rows(size)
    print(
        f"\n| {size}² slices, 3 input channels, 4 classes | slices/s | "
        "GFLOP/slice | GFLOP/s | % of fp32 matmul |"
    )
    print("|---|---|---|---|---|")
    for name, rate, per_slice in rows:
        gf = rate * per_slice
        print(
            f"| {name} | {rate:.1f} | {per_slice:.2f} | {gf:.0f} | "
            f"{100 * gf / mm32:.0f} % |"
        )
    print(f"\nload average after speed runs: {os.getloadavg()[0]:.2f}", flush=True)


def bf16_agreement(train_seconds: float) -> None:
    """Print bf16 vs float32 class-map agreement of briefly trained models."""
    print(
        f"\nbf16 vs float32 class-map agreement (models trained {train_seconds:.0f} s):"
    )
    s0, s1 = make_hbm_sample(seed=0), make_hbm_sample(seed=1)
    frac = agreement(s0.image, s0.labels, s0.classes, s1.image, train_seconds)
    print(f"  synthetic HBM (train seed 0, predict seed 1): {100 * frac:.3f} %")
    if not (SHARED / "xct-soc_train_image.tif").is_file():
        print(f"  (real data not found at {SHARED}; skipped)")
        return
    import tifffile

    read = {
        k: tifffile.imread(SHARED / f"xct-soc_{k}.tif")
        for k in ("train_image", "train_labels", "test_image")
    }
    table = ClassTable(("pore", "phase1", "phase2"))
    frac = agreement(
        read["train_image"],
        read["train_labels"],
        table,
        read["test_image"],
        train_seconds,
    )
    print(f"  real X-ray CT (xct-soc train -> test): {100 * frac:.3f} %")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--per-core",
        action="store_true",
        help="one thread, timed by its CPU time (robust when the CPU is shared)",
    )
    parser.add_argument("--size", type=int, default=256, help="slice side in pixels")
    parser.add_argument("--train-seconds", type=float, default=60.0)
    parser.add_argument(
        "--what", default="speed,agreement", help="speed, agreement and/or streaming"
    )
    parser.add_argument("--depth", type=int, default=384, help="streaming: slices")
    parser.add_argument("--side", type=int, default=512, help="streaming: y = x")
    parser.add_argument("--budget", type=int, default=64, help="streaming: MiB")
    args = parser.parse_args(argv)
    torch.set_num_threads(1 if args.per_core else args.threads)
    if args.per_core:
        CLOCK[0] = time.thread_time
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(
        f"machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, native bf16: {native_bf16_cpu()}"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    what = set(args.what.split(","))
    if "streaming" in what:
        streaming(args.depth, args.side, args.budget)
    if "speed" in what:
        speed(args.size)
    if "agreement" in what and native_bf16_cpu():
        bf16_agreement(args.train_seconds)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
