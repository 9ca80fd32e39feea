"""Draw docs/images/sample_slices.png: the synthetic HBM sample and its ground truth.

Two rows (an xz cross-section through a row of bumps, an xy slice through the
solder caps), image on the left and ground truth on the right.

    .venv/bin/python benchmarks/sample_figure.py [--seed N] [--out PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from napari_xrm_al.core.synthetic.sample import make_hbm_sample  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs/images/sample_slices.png"
    )
    args = parser.parse_args()

    sample = make_hbm_sample(seed=args.seed)
    solder, void = sample.classes.index("solder"), sample.classes.index("void")
    # The xy slice with the most void voxels, and the xz plane through the most voids.
    z = int(np.argmax((sample.labels == void).sum(axis=(1, 2))))
    y = int(np.argmax((sample.labels == void).sum(axis=(0, 2))))
    if not (sample.labels[z] == void).any():
        z = int(np.argmax((sample.labels == solder).sum(axis=(1, 2))))
    lo, hi = np.percentile(sample.image, [0.5, 99.8])
    cmap = ListedColormap(sample.classes.colours)
    views = [
        (f"xz cross-section (y = {y})", sample.image[:, y, :], sample.labels[:, y, :]),
        (f"xy slice (z = {z})", sample.image[z], sample.labels[z]),
    ]
    nz, ny, nx = sample.labels.shape
    fig, axes = plt.subplots(
        2,
        2,
        figsize=(10, 5 * (nz + ny) / nx + 1),
        height_ratios=[nz, ny],
        constrained_layout=True,
    )
    for row, (title, image, labels) in zip(axes, views, strict=True):
        row[0].imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        row[0].set_title(f"image, {title}")
        row[1].imshow(
            labels,
            cmap=cmap,
            vmin=-0.5,
            vmax=len(sample.classes) - 0.5,
            interpolation="nearest",
        )
        row[1].set_title(f"ground truth, {title}")
        for ax in row:
            ax.set_axis_off()
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in sample.classes.colours]
    fig.legend(handles, sample.classes.names, loc="lower center", ncol=4, frameon=False)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
