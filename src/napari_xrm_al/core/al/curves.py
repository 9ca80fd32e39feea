"""Learning curves of a simulation: mean and spread over seeds, area under them,
and paired differences between strategies."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_xrm_al.io.atomic import atomic_path


@dataclass
class Curve:
    """One strategy's metric against the number of labelled slices."""

    label: str
    n_labelled: np.ndarray
    miou_mean: np.ndarray
    miou_std: np.ndarray
    rare_mean: np.ndarray
    rare_std: np.ndarray
    n_seeds: int

    def area(self, which: str = "miou") -> float:
        """Mean of the curve over its budgets (normalised area under it)."""
        values = self.miou_mean if which == "miou" else self.rare_mean
        return float(np.nanmean(values))


def run_label(run: dict[str, Any]) -> str:
    """``rareness`` or ``rareness (no pretrain)``."""
    return (
        run["strategy"]
        if run.get("pretrain", True)
        else f"{run['strategy']} (no pretrain)"
    )


def runs_by_label(result: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``result['runs']`` grouped by :func:`run_label`, in order of first appearance."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in result["runs"]:
        grouped[run_label(run)].append(run)
    return grouped


def learning_curves(result: dict[str, Any]) -> list[Curve]:
    """Aggregate ``result['runs']`` over seeds, one :class:`Curve` per strategy."""
    rare = result["rare_class"]
    grouped = runs_by_label(result)
    curves = []
    for label, runs in grouped.items():
        length = min(len(r["cycles"]) for r in runs)
        miou = np.array(
            [[c["miou"] for c in r["cycles"][:length]] for r in runs], float
        )
        rare_iou = np.array(
            [[c["iou"][rare] for c in r["cycles"][:length]] for r in runs], float
        )
        rare_iou = np.nan_to_num(rare_iou, nan=0.0)
        n = np.array([c["n_labelled"] for c in runs[0]["cycles"][:length]])
        curves.append(
            Curve(
                label=label,
                n_labelled=n,
                miou_mean=miou.mean(0),
                miou_std=miou.std(0),
                rare_mean=rare_iou.mean(0),
                rare_std=rare_iou.std(0),
                n_seeds=len(runs),
            )
        )
    return curves


@dataclass
class PairedDifference:
    """``reference − other`` rare-class IoU at each budget, paired by seed.

    Runs of one seed share the pretraining and the initial slices, so the
    difference within a seed is what the strategies changed; its spread over
    seeds is far smaller than either curve's.
    """

    label: str
    n_labelled: np.ndarray
    mean: np.ndarray
    ci95: np.ndarray
    ahead: np.ndarray
    level: np.ndarray
    behind: np.ndarray
    n_seeds: int


def _rare_by_seed(runs: list[dict[str, Any]], rare: str) -> dict[int, list[float]]:
    return {
        r["seed"]: [float(np.nan_to_num(c["iou"][rare])) for c in r["cycles"]]
        for r in runs
    }


def paired_differences(result: dict[str, Any]) -> list[PairedDifference]:
    """Every other strategy against the first one, on the seeds both ran.

    ``ci95`` is the half-width of the 95 % t-interval of the mean difference
    (NaN with a single seed); ``ahead`` / ``level`` / ``behind`` count the
    seeds where the reference scored higher, the same (identical picks train
    identically), or lower.
    """
    from scipy.stats import t  # only here: scipy.stats is slow to import

    rare = result["rare_class"]
    grouped = runs_by_label(result)
    if len(grouped) < 2:
        return []
    reference, *others = grouped
    ref = _rare_by_seed(grouped[reference], rare)
    budgets = {
        r["seed"]: [c["n_labelled"] for c in r["cycles"]] for r in grouped[reference]
    }
    out = []
    for label in others:
        other = _rare_by_seed(grouped[label], rare)
        seeds = sorted(set(ref) & set(other))
        if not seeds:
            continue
        length = min(min(len(ref[s]), len(other[s])) for s in seeds)
        diff = np.array(
            [np.subtract(ref[s][:length], other[s][:length]) for s in seeds]
        )
        n = len(seeds)
        sem = diff.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.full(length, np.nan)
        ci = t.ppf(0.975, n - 1) * sem if n > 1 else sem
        out.append(
            PairedDifference(
                label=label,
                n_labelled=np.array(budgets[seeds[0]][:length]),
                mean=diff.mean(0),
                ci95=ci,
                ahead=(diff > 1e-9).sum(0),
                level=(np.abs(diff) <= 1e-9).sum(0),
                behind=(diff < -1e-9).sum(0),
                n_seeds=n,
            )
        )
    return out


def paired_table(result: dict[str, Any]) -> str:
    """Markdown table of :func:`paired_differences` (empty with one strategy)."""
    diffs = paired_differences(result)
    if not diffs:
        return ""
    reference = run_label(result["runs"][0])
    rare = result["rare_class"]
    budgets = diffs[0].n_labelled
    head = (
        f"{reference} − strategy, {rare} IoU, paired by seed: mean ± 95 % CI "
        f"(seeds where {reference} is ahead / level / behind)\n\n"
        "| strategy | seeds | " + " | ".join(f"{b} slices" for b in budgets) + " |\n"
    )
    head += "|---" * (len(budgets) + 2) + "|\n"
    rows = []
    for d in diffs:
        cells = [
            f"{m:+.3f}" + ("" if np.isnan(c) else f"±{c:.3f}") + f" ({a}/{lv}/{b})"
            for m, c, a, lv, b in zip(
                d.mean, d.ci95, d.ahead, d.level, d.behind, strict=True
            )
        ]
        rows.append(f"| {d.label} | {d.n_seeds} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + "\n"


def shown_labels(curves: list[Curve]) -> list[str]:
    """Curve labels for tables and legends, with seed counts where they differ."""
    if len({c.n_seeds for c in curves}) <= 1:
        return [c.label for c in curves]
    return [f"{c.label} ({c.n_seeds} seed{'s' * (c.n_seeds != 1)})" for c in curves]


def summary_table(result: dict[str, Any]) -> str:
    """Markdown table: per strategy, mIoU and rare IoU at each budget, and the means."""
    curves = learning_curves(result)
    if not curves:
        return ""
    budgets = curves[0].n_labelled
    rare = result["rare_class"]
    head = "| strategy | " + " | ".join(f"{b} slices" for b in budgets)
    head += " | mean mIoU | mean " + rare + " IoU |\n"
    head += "|---" * (len(budgets) + 3) + "|\n"
    rows = []
    for c, label in zip(curves, shown_labels(curves), strict=True):
        cells = [
            f"{m:.3f}±{s:.3f} / {r:.3f}±{t:.3f}"
            for m, s, r, t in zip(
                c.miou_mean, c.miou_std, c.rare_mean, c.rare_std, strict=False
            )
        ]
        rows.append(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {c.area():.3f} | {c.area('rare'):.3f} |"
        )
    full = result.get("full_supervision")
    tail = ""
    if full:
        tail = f"\nFull supervision: mIoU {full['miou']:.3f}, {rare} IoU {full['iou'][rare]:.3f}.\n"
    paired = paired_table(result)
    return head + "\n".join(rows) + "\n" + tail + ("\n" + paired if paired else "")


def plot_curves(result: dict[str, Any], path: str | Path) -> Path:
    """mIoU and rare-class IoU against labelled slices (mean ± std over seeds)."""
    from matplotlib.figure import Figure  # only here: ~40 MB of resident memory

    curves = learning_curves(result)
    rare = result["rare_class"]
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True)
    for c, label in zip(curves, shown_labels(curves), strict=True):
        for ax, mean, std in (
            (axes[0], c.miou_mean, c.miou_std),
            (axes[1], c.rare_mean, c.rare_std),
        ):
            (line,) = ax.plot(c.n_labelled, mean, marker="o", label=label)
            ax.fill_between(
                c.n_labelled, mean - std, mean + std, alpha=0.15, color=line.get_color()
            )
    full = result.get("full_supervision")
    if full:
        axes[0].axhline(
            full["miou"], color="k", ls="--", lw=1, label="full supervision"
        )
        axes[1].axhline(full["iou"][rare], color="k", ls="--", lw=1)
    axes[0].set(
        title="mIoU on the test volume", xlabel="labelled slices", ylabel="mIoU"
    )
    axes[1].set(
        title=f"{rare} IoU (rare class)", xlabel="labelled slices", ylabel="IoU"
    )
    counts = {c.n_seeds for c in curves}
    over = f"{counts.pop()} seed(s)" if len(counts) == 1 else "seeds"
    axes[0].legend(fontsize=8, title=f"mean ± std over {over}", title_fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    return path
