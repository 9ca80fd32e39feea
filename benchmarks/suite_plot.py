"""The suite's learning curves in one figure: a column per pool, mIoU above and
the rare class's IoU below, one line per strategy (mean over the seeds every
strategy of the pool finished), the full-supervision reference dashed."""

from __future__ import annotations

from pathlib import Path

from napari_xrm_al.core.al.curves import learning_curves
from napari_xrm_al.io.atomic import atomic_path


def pool_and_axes(key: str) -> tuple[str, str]:
    """The pool and candidate axes of a result key: ``'thick-dies_zyx'`` →
    ``('thick-dies', 'zyx')``, ``'thick-dies'`` (a run along z) → ``('thick-dies', 'z')``."""
    name, _, axes = key.partition("_")
    return name, axes or "z"


def plot_suite(
    merged: dict[str, dict], ceilings: dict[str, tuple[float, float]], path: Path
) -> Path:
    """Write the figure of ``merged`` (pool → merged result, as the report
    averages it) to ``path``; ``ceilings``: pool → full-supervision (mIoU, rare IoU)."""
    from matplotlib.figure import Figure  # only here: ~40 MB of resident memory

    pools = list(merged)
    fig = Figure(figsize=(2.6 * len(pools) + 1.2, 5.4), layout="constrained")
    axes = fig.subplots(2, len(pools), sharex=True, sharey="row", squeeze=False)
    colours: dict[str, str] = {}
    drew_ceiling = False
    for col, pool in enumerate(pools):
        result = merged[pool]
        top, bottom = axes[0, col], axes[1, col]
        seeds = set()
        for curve in learning_curves(result):
            colour = colours.setdefault(curve.label, f"C{len(colours)}")
            top.plot(curve.n_labelled, curve.miou_mean, marker="o", ms=3, color=colour)
            bottom.plot(
                curve.n_labelled, curve.rare_mean, marker="o", ms=3, color=colour
            )
            seeds.add(curve.n_seeds)
        # Runs along z and along z, y, x of one pool are columns of their own.
        name, axes_run = pool_and_axes(pool)
        along = ", ".join(axes_run)
        seeds_run = "/".join(map(str, sorted(seeds)))
        top.set_title(f"{name} along {along} ({seeds_run} seed(s))", fontsize=9)
        bottom.set_xlabel("labelled slices")
        ceiling = ceilings.get(name)
        drew_ceiling = drew_ceiling or ceiling is not None
        if ceiling is not None:
            top.axhline(ceiling[0], color="k", ls="--", lw=1)
            bottom.axhline(ceiling[1], color="k", ls="--", lw=1)
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("mIoU on the test scan")
    axes[1, 0].set_ylabel("rare-class IoU")
    handles = [
        axes[0, 0].plot([], [], color=c, marker="o", ms=3, label=lb)[0]
        for lb, c in colours.items()
    ]
    if drew_ceiling:
        handles.append(
            axes[0, 0].plot([], [], "k--", lw=1, label="full supervision")[0]
        )
    fig.legend(
        handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8
    )
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format=path.suffix.lstrip(".") or "png")
    return path
