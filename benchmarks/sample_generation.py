"""Time the synthetic HBM sample and report its class make-up, as Markdown.

    .venv/bin/python benchmarks/sample_generation.py [--seeds 0 1] [--repeats 3]

For each seed, the default parameters and the thick-die preset: generation
time (best of ``--repeats``), per-class voxel fractions and the share of z
slices holding solder and voids; then the time to write the three files.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from napari_xrm_al.core.synthetic.params import SampleParams
from napari_xrm_al.core.synthetic.sample import (
    class_fractions,
    make_hbm_sample,
    slice_fractions,
    thick_die_params,
    write_sample,
)


def best_time(params: SampleParams, repeats: int) -> tuple[float, object]:
    best, sample = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        sample = make_hbm_sample(params)
        best = min(best, time.perf_counter() - start)
    return best, sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print(
        "| seed | preset | shape | time (s) | background | copper | solder | void "
        "| z slices with solder | with voids |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        for preset, params in (
            ("default", SampleParams(seed=seed)),
            ("thick dies", thick_die_params(seed)),
        ):
            seconds, sample = best_time(params, args.repeats)
            voxels, slices = class_fractions(sample), slice_fractions(sample)
            cells = " | ".join(f"{voxels[n]:.3%}" for n in sample.classes.names)
            print(
                f"| {seed} | {preset} | {'×'.join(map(str, params.shape))} | {seconds:.2f} "
                f"| {cells} | {slices['solder']:.1%} | {slices['void']:.1%} |"
            )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_sample(tmp, sample)
        print(
            f"\nwrite_sample (image.tif, labels.tif, classes.json): "
            f"{time.perf_counter() - start:.2f} s"
        )


if __name__ == "__main__":
    main()
