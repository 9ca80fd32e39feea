"""Peak memory of opening, ranking and predicting zarr volumes larger than RAM budgets.

Writes synthetic ``(Z, 1024, 1024)`` uint16 zarr v3 volumes under ``/tmp``
chunk by chunk (the generator never holds more than one slab of chunks), saves
an untrained segmenter of the default architecture (``TrainConfig()``; peak
memory does not depend on the weights), then runs each measurement as the
``napari-xrm-al`` command a user would type, in a fresh Python process whose
peak resident memory (``ru_maxrss``) and wall time are reported:

* ``predict`` of the 768 MB volume (384 slices) to a zarr class map; target
  under 600 MB;
* ``info``, ``rank`` and ``predict`` of the 2 GB volume (1024 slices); target
  under 1.5 GB each.

With ``--shapes``, ``predict``, ``rank``, ``train`` and ``pretrain`` run
instead with ``--max-memory 256`` on volumes of every shape (:data:`SHAPES`):
many small slices, long thin slices, a few huge slices (sparse zarr) and a
4 × 50000 × 50000 sparse BigTIFF (memory-mapped); the target is a peak under
256 MiB + 400 MB for each. Runs that would take too long on a CPU are
interrupted after ``--stop-after`` seconds (as Ctrl-C would) and their peak
so far reported; a refusal (exit status 2) is a result too.

Volumes and outputs are deleted afterwards. Set ``GLIBC_TUNABLES`` (e.g.
``glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=4194304``) to measure
another allocator setting; the children inherit it and it is recorded.

Run: ``.venv/bin/python benchmarks/bench_memory.py [--threads 1] [--sizes 384,1024]
[--chunks 16,256,256] [--only predict]``, or
``.venv/bin/python benchmarks/bench_memory.py --shapes [--stop-after 60]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PLANE = (1024, 1024)
#: Peak RSS targets in MB (10⁶ bytes) by number of slices of the volume.
TARGETS_MB = {384: 600, 1024: 1500}
#: ``--shapes``: the memory limit given to every command (MiB) and the target,
#: the limit plus 400 MB.
SHAPES_LIMIT_MIB = 256
SHAPES_TARGET_MB = SHAPES_LIMIT_MIB * 2**20 / 1e6 + 400


@dataclass(frozen=True)
class Shape:
    """A ``--shapes`` volume: uint16, written sparsely (only a structured patch
    and the labelled patches hold data) unless ``dense``; ``long``: commands
    whose prediction is interrupted after ``--stop-after`` seconds."""

    name: str
    shape: tuple[int, int, int]
    chunks: tuple[int, int, int] | None  # None: an uncompressed BigTIFF
    labelled: tuple[int, ...]
    dense: bool = False
    long: tuple[str, ...] = ()


SHAPES = (
    Shape("many small slices", (512, 128, 128), (16, 128, 128), (10, 250, 500), True),
    Shape("x-long slices", (2, 192, 24_000), (1, 192, 4096), (1,)),
    Shape(
        "few huge slices",
        (2, 16_000, 16_000),
        (1, 512, 512),
        (1,),
        long=("predict", "rank"),
    ),  # fmt: skip
    Shape("huge BigTIFF", (4, 50_000, 50_000), None, (2,), long=("predict", "rank")),
)

CHILD = """
import json, os, resource, signal, sys, time
t0 = time.perf_counter()
if os.environ.get("BENCH_STOP_AFTER"):  # interrupt as Ctrl-C would
    signal.signal(signal.SIGALRM, signal.default_int_handler)
    signal.alarm(int(os.environ["BENCH_STOP_AFTER"]))
from napari_xrm_al.cli import main
status = main(sys.argv[1:])
print(json.dumps({
    "status": status,
    "seconds": time.perf_counter() - t0,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6,
}))
"""

MODEL = """
import sys
from napari_xrm_al.core.model.checkpoint import Checkpoint, save_checkpoint
from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.model.network import SliceSegmenter
from napari_xrm_al.core.model.normalization import Normalisation
from napari_xrm_al.core.training.configs import TrainConfig
import torch
torch.manual_seed(0)
cfg = TrainConfig().model_config(n_classes=4)
model = SliceSegmenter(cfg)
save_checkpoint(sys.argv[1], Checkpoint(
    "segmenter", cfg, model.state_dict(), Normalisation(8000.0, 14000.0), "z",
    ClassTable.hbm(),
))
"""


def write_volume(path: Path, depth: int, chunks: tuple[int, int, int]) -> None:
    """Stream a smooth ramp plus noise into a zarr array, one chunk layer at a time."""
    import zarr

    array = zarr.create_array(
        path, shape=(depth, *PLANE), chunks=chunks, dtype=np.uint16
    )
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0 : PLANE[0], 0 : PLANE[1]]
    base = (8000 + 4 * yy + 2 * xx).astype(np.uint16)
    for z0 in range(0, depth, chunks[0]):
        n = min(chunks[0], depth - z0)
        noise = rng.integers(0, 512, size=(n, *PLANE), dtype=np.uint16)
        array[z0 : z0 + n] = base + noise + np.uint16(z0 % 1000)


def write_shape(folder: Path, spec: Shape) -> tuple[Path, Path]:
    """The image and its labels (annotation ids, sparse zarr) for ``spec``."""
    import tifffile
    import zarr

    rng = np.random.default_rng(0)
    z, h, w = spec.shape
    patch = (slice(0, min(h, 512)), slice(0, min(w, 512)))
    noise = 8000 + rng.integers(0, 6000, size=(min(h, 512), min(w, 512)))
    if spec.chunks is None:
        image = folder / "image.tif"
        array = tifffile.memmap(image, shape=spec.shape, dtype=np.uint16,
                                bigtiff=True, photometric="minisblack",
                                metadata={"axes": "ZYX"})  # fmt: skip
    else:
        image = folder / "image.zarr"
        array = zarr.create_array(image, shape=spec.shape, chunks=spec.chunks,
                                  dtype=np.uint16, fill_value=10_000)  # fmt: skip
    if spec.dense:
        for z0 in range(0, z, spec.chunks[0]):
            n = min(spec.chunks[0], z - z0)
            array[z0 : z0 + n] = 8000 + rng.integers(0, 6000, size=(n, h, w))
    else:
        for i in spec.labelled:
            array[(i, *patch)] = noise
    if spec.chunks is None:
        array.flush()
    del array
    labels = folder / "labels.zarr"
    chunks = (1, min(h, 1024), min(w, 1024))
    ids = zarr.create_array(labels, shape=spec.shape, chunks=chunks, dtype=np.uint8,
                            fill_value=0)  # fmt: skip
    for i in spec.labelled:
        ids[(i, *patch)] = rng.integers(1, 5, size=noise.shape, dtype=np.uint8)
    return image, labels


def run_shapes(threads: int, stop_after: int) -> int:
    """``--shapes``: each command on each :data:`SHAPES` volume; 1 if a peak
    is over :data:`SHAPES_TARGET_MB`."""
    common = ["--max-memory", str(SHAPES_LIMIT_MIB), "--threads", str(threads),
              "--quiet"]  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_memory_", dir="/tmp") as tmp:
        folder = Path(tmp)
        model = folder / "model.pt"
        subprocess.run([sys.executable, "-c", MODEL, str(model)], check=True)
        for spec in SHAPES:
            t0 = time.perf_counter()
            image, labels = write_shape(folder, spec)
            print(f"wrote {spec.name} {spec.shape} in {time.perf_counter() - t0:.0f} s",
                  flush=True)  # fmt: skip
            commands = {
                "predict": ["--model", str(model), "--out", str(folder / "pred.zarr")],
                "rank": ["--model", str(model)],
                "train": [
                    "--labels",
                    str(labels),
                    "--slices",
                    ",".join(map(str, spec.labelled)),
                    "--steps",
                    "10",
                    "--out",
                    str(folder / "m.pt"),
                ],  # fmt: skip
                "pretrain": ["--steps", "5", "--out", str(folder / "enc.pt")],
            }
            for command, extra in commands.items():
                long = command in spec.long
                argv = [command, "--image", str(image), *common, *extra]
                figures = measure(argv, stop_after if long else None)
                status = {0: "done", 2: "refused", 130: "interrupted"}
                row = {
                    "volume": spec.name,
                    "shape": list(spec.shape),
                    "storage": f"zarr {spec.chunks}" if spec.chunks else "BigTIFF",
                    "command": command,
                    "result": status[figures["status"]],
                    "seconds": round(figures["seconds"], 1),
                    "peak_rss_mb": round(figures["peak_rss_mb"]),
                    "target_mb": round(SHAPES_TARGET_MB),
                    "said": figures["summary"][:200],
                    "load": round(os.getloadavg()[0], 1),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
                shutil.rmtree(folder / "pred.zarr", ignore_errors=True)
            shutil.rmtree(image, ignore_errors=True)
            image.unlink(missing_ok=True)
            shutil.rmtree(labels)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    over = [r for r in rows if r["peak_rss_mb"] > SHAPES_TARGET_MB]
    for r in over:
        print(f"OVER target: {r['command']} of {r['volume']}: {r['peak_rss_mb']} MB")
    return 1 if over else 0


def measure(argv: list[str], stop_after: int | None = None) -> dict:
    """Run ``napari-xrm-al argv`` in a fresh process; its exit status, peak RSS,
    time and what it said (first result line, or its error line).

    ``stop_after`` seconds interrupt it (exit status 130). Raises on a crash
    or an exit status other than 0, 2 (a refusal) and 130.
    """
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if stop_after:
        env["BENCH_STOP_AFTER"] = str(stop_after)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *argv],
        capture_output=True,
        text=True,
        env=env,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{argv[0]} crashed:\n{result.stderr[-2000:]}")
    figures = json.loads(lines[-1])
    if figures["status"] not in (0, 2, 130):
        raise RuntimeError(f"{argv[0]} failed:\n{result.stderr[-2000:]}")
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    said = [line for line in lines[:-1] if line.strip()]
    figures["summary"] = (errors or said or [""])[0]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--shapes",
        action="store_true",
        help="run every command with --max-memory 256 on volumes of every shape",
    )
    parser.add_argument(
        "--stop-after",
        type=int,
        default=60,
        metavar="S",
        help="with --shapes: interrupt the runs marked long after S seconds",
    )
    parser.add_argument(
        "--sizes", default="384,1024", help="volume depths (slices of 1024²)"
    )
    parser.add_argument("--chunks", default="16,256,256", help="zarr chunk shape")
    parser.add_argument(
        "--only", help="comma-separated steps (info,rank,predict); default all"
    )
    args = parser.parse_args()
    if args.shapes:
        return run_shapes(args.threads, args.stop_after)
    chunks = tuple(int(c) for c in args.chunks.split(","))
    steps = args.only.split(",") if args.only else ["info", "rank", "predict"]
    threads = ["--threads", str(args.threads)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_memory_", dir="/tmp") as tmp:
        model = Path(tmp) / "model.pt"
        subprocess.run([sys.executable, "-c", MODEL, str(model)], check=True)
        for depth in (int(d) for d in args.sizes.split(",")):
            image = Path(tmp) / f"volume-{depth}.zarr"
            t0 = time.perf_counter()
            write_volume(image, depth, chunks)
            written = time.perf_counter() - t0
            gb = depth * PLANE[0] * PLANE[1] * 2 / 1e9
            print(f"wrote {image.name} ({gb:.2f} GB) in {written:.0f} s", flush=True)
            commands = {
                "info": ["info", str(image)],
                "rank": [
                    "rank",
                    "--image",
                    str(image),
                    "--model",
                    str(model),
                    "--quiet",
                ]
                + threads,
                "predict": [
                    "predict",
                    "--image",
                    str(image),
                    "--model",
                    str(model),
                    "--out",
                    str(Path(tmp) / "pred.zarr"),
                    "--quiet",
                ]
                + threads,
            }
            wanted = steps if depth != 384 else [s for s in steps if s == "predict"]
            for step in wanted:
                load = os.getloadavg()[0]
                figures = measure(commands[step])
                if figures["status"] != 0:
                    raise RuntimeError(f"{step}: {figures['summary']}")
                row = {
                    "volume_gb": round(gb, 2),
                    "shape": [depth, *PLANE],
                    "chunks": list(chunks),
                    "step": step,
                    "seconds": round(figures["seconds"], 1),
                    "peak_rss_mb": round(figures["peak_rss_mb"]),
                    "summary": figures["summary"],
                    "target_mb": TARGETS_MB.get(depth),
                    "load_before": round(load, 1),
                    "load_after": round(os.getloadavg()[0], 1),
                    "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
                shutil.rmtree(Path(tmp) / "pred.zarr", ignore_errors=True)
            shutil.rmtree(image)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    over = [r for r in rows if r["target_mb"] and r["peak_rss_mb"] >= r["target_mb"]]
    for r in over:
        print(f"OVER target: {r['step']} of {r['volume_gb']} GB: {r['peak_rss_mb']} MB")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
