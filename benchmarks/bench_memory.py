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

Volumes and outputs are deleted afterwards. Set ``GLIBC_TUNABLES`` (e.g.
``glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=4194304``) to measure
another allocator setting; the children inherit it and it is recorded.

Run: ``.venv/bin/python benchmarks/bench_memory.py [--threads 1] [--sizes 384,1024]
[--chunks 16,256,256] [--only predict]``
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
from pathlib import Path

import numpy as np

PLANE = (1024, 1024)
#: Peak RSS targets in MB (10⁶ bytes) by number of slices of the volume.
TARGETS_MB = {384: 600, 1024: 1500}

CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
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
from napari_xrm_al.core.checkpoint import Checkpoint, save_checkpoint
from napari_xrm_al.core.classes import ClassTable
from napari_xrm_al.core.model import SliceSegmenter
from napari_xrm_al.core.normalization import Normalisation
from napari_xrm_al.core.train import TrainConfig
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


def measure(argv: list[str]) -> dict:
    """Run ``napari-xrm-al argv`` in a fresh process; its peak RSS and time."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *argv],
        capture_output=True,
        text=True,
        env=env,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed:\n{result.stderr[-2000:]}")
    lines = result.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    said = [line for line in lines if line.startswith("predicted ")]
    figures["summary"] = said[0] if said else ""
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--sizes", default="384,1024", help="volume depths (slices of 1024²)"
    )
    parser.add_argument("--chunks", default="16,256,256", help="zarr chunk shape")
    parser.add_argument(
        "--only", help="comma-separated steps (info,rank,predict); default all"
    )
    args = parser.parse_args()
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
