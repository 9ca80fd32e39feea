"""Time and peak memory of void metrology on a large synthetic mask.

The mask (default 256×1024×1024, annotation ids) is a grid of 64³ bump cells
(pad, solder cap with 0–3 voids, pillar) shifted by half a cell in x so the
bumps on two sides are cut by the border (partial). Each mode runs in its own
process so its peak resident memory is its own:

* ``memory-1slab``: numpy array, the whole volume labelled at once;
* ``memory-auto``: numpy array, the default slab depth;
* ``zarr-auto``: a zarr v3 store on disk, read slab by slab (the mask is never
  in memory whole).

All modes must write byte-identical CSVs.

    .venv/bin/python benchmarks/bench_metrology.py [--shape Z Y X]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

from napari_xrm_al.core.metrology.bumps import measure_bumps
from napari_xrm_al.core.metrology.report import write_bumps_csv

CELL = 64
SOLDER, VOID, COPPER = 3, 4, 2  # annotation ids of the HBM table


def bump_cells(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` different 64³ cells: pad, solder cap (with voids), pillar."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:CELL, :CELL, :CELL]
    r2 = (y - CELL / 2 + 0.5) ** 2 + (x - CELL / 2 + 0.5) ** 2
    cells = []
    for _ in range(n):
        cell = np.zeros((CELL,) * 3, np.uint8)
        cell[(r2 < 20**2) & (z >= 14) & (z < 18)] = COPPER
        cell[(r2 < 20**2) & (z >= 18) & (z < 34)] = SOLDER
        cell[(r2 < 17**2) & (z >= 34) & (z < 56)] = COPPER
        for _ in range(rng.integers(0, 5)):
            c = rng.uniform((21, 20, 20), (31, 44, 44))
            r = rng.uniform(2.0, 10.0)
            ball = (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < r**2
            cell[ball & (cell == SOLDER)] = VOID
        cells.append(cell)
    return cells


def make_mask(shape: tuple[int, int, int]) -> np.ndarray:
    cells = bump_cells(16)
    mask = np.empty(shape, np.uint8)
    grid = [range(0, s, CELL) for s in shape]
    k = 0
    for z0 in grid[0]:
        for y0 in grid[1]:
            for x0 in grid[2]:
                block = mask[z0 : z0 + CELL, y0 : y0 + CELL, x0 : x0 + CELL]
                block[...] = cells[k % len(cells)][
                    tuple(slice(0, s) for s in block.shape)
                ]
                k += 7
    return np.roll(mask, CELL // 2, axis=2)


def run_mode(mode: str, shape: tuple[int, int, int], store: Path, out: Path) -> dict:
    if mode == "write":
        zarr.create_array(store, data=make_mask(shape), chunks=(16, 256, 256))
        return {}
    if mode.startswith("zarr"):
        labels = zarr.open_array(store, mode="r")
    else:
        labels = make_mask(shape)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    slab = shape[0] if mode == "memory-1slab" else None
    start = time.perf_counter()
    bumps = measure_bumps(labels, solder_id=SOLDER, void_id=VOID, slab=slab)
    seconds = time.perf_counter() - start
    write_bumps_csv(out, bumps)
    return {
        "mode": mode,
        "seconds": round(seconds, 2),
        "rss_before_mb": round(base),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "bumps": len(bumps),
        "partial": sum(b.partial for b in bumps),
        "failed": sum(not b.passed for b in bumps),
        "voids": sum(b.n_voids for b in bumps),
        "csv_sha1": hashlib.sha1(out.read_bytes()).hexdigest()[:12],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 1024, 1024))
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = tuple(args.shape)
    if args.mode:  # a child process: one mode, result as JSON
        with tempfile.TemporaryDirectory() as tmp:
            result = run_mode(args.mode, shape, args.store, Path(tmp) / "bumps.csv")
        print(json.dumps(result))
        return

    # Every step runs in a child: on Linux a child inherits its parent's peak
    # RSS through fork + exec, so the parent must stay small.
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "mask.zarr"
        rows = []
        for mode in ("write", "memory-1slab", "memory-auto", "zarr-auto"):
            cmd = [sys.executable, __file__, "--mode", mode, "--store", str(store)]
            cmd += ["--shape", *map(str, shape)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.splitlines()[-1]))
        rows = rows[1:]
    print(f"shape {'×'.join(map(str, shape))} uint8 ({np.prod(shape) / 2**20:.0f} MiB)")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    if len({r["csv_sha1"] for r in rows}) != 1:
        sys.exit("The modes disagree: the CSVs differ.")


if __name__ == "__main__":
    main()
