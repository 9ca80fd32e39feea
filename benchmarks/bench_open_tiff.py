"""Peak memory of opening a large uint16 TIFF lazily.

Writes a synthetic ``(Z, 1024, 1024)`` uint16 stack of about ``--size-gb`` GB
into a temporary folder (streamed one slice at a time, never whole in RAM),
then, in a fresh Python process, times ``open_volume`` (which also computes
the contrast limits from a subsample) and reading one full slice, and reports
that process's peak resident memory (``ru_maxrss``). The target is under
500 MB for a 2 GB file.

Run: ``.venv/bin/python benchmarks/bench_open_tiff.py [--size-gb 2] [--compression zlib]``
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

PLANE = (1024, 1024)
TARGET_MB = 500

CHILD = """
import json, os, resource, sys, time
import numpy as np
from napari_xrm_al.io.volumes import open_volume
imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
volume = open_volume(sys.argv[1])
t1 = time.perf_counter()
plane = np.array(volume.data[volume.shape[0] // 2])  # a copy: really read
t2 = time.perf_counter()
print(json.dumps({
    "shape": volume.shape, "type": type(volume.data).__name__,
    "contrast_limits": volume.contrast_limits, "plane_mean": float(plane.mean()),
    "open_s": t1 - t0, "slice_s": t2 - t1, "import_rss_mb": imported,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "rss_now_mb": int(open("/proc/self/statm").read().split()[1])
    * os.sysconf("SC_PAGE_SIZE") / 2**20 if os.path.exists("/proc/self/statm") else None,
}))
"""


def slices(n: int, seed: int = 0):
    """Synthetic XRM-like planes: a smooth ramp, a per-slice offset and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : PLANE[0], 0 : PLANE[1]]
    base = (8000 + 4 * yy + 2 * xx).astype(np.uint16)
    noise = rng.integers(0, 512, size=(16, *PLANE), dtype=np.uint16)
    for z in range(n):
        yield base + noise[z % 16] + np.uint16(z % 1000)


def write_stack(path: Path, size_gb: float, compression: str | None) -> int:
    """Stream-write the stack; returns its number of slices."""
    n = math.ceil(size_gb * 1e9 / (PLANE[0] * PLANE[1] * 2))
    with tifffile.TiffWriter(path, bigtiff=size_gb > 3.5) as tif:
        tif.write(
            slices(n),
            shape=(n, *PLANE),
            dtype=np.uint16,
            compression=compression,
            photometric="minisblack",
            metadata={"axes": "ZYX"},
        )
    return n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--compression", default=None, help="e.g. zlib (default: none)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_open_tiff_") as tmp:
        path = Path(tmp) / "big.tif"
        t0 = time.perf_counter()
        n = write_stack(path, args.size_gb, args.compression)
        written = time.perf_counter() - t0
        result = subprocess.run(
            [sys.executable, "-c", CHILD, str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        figures = json.loads(result.stdout)
        figures.update(
            slices=n,
            file_gb=path.stat().st_size / 1e9,
            compression=args.compression or "none",
            write_s=written,
        )
    print(json.dumps(figures, indent=1))
    ok = figures["peak_rss_mb"] < TARGET_MB
    print(
        f"peak RSS {figures['peak_rss_mb']:.0f} MB "
        f"({'under' if ok else 'OVER'} the {TARGET_MB} MB target) for a "
        f"{figures['file_gb']:.2f} GB file; open {figures['open_s']:.2f} s, "
        f"one slice {figures['slice_s'] * 1000:.0f} ms"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
