"""The tables of ``al_suite.py --report``: per pool, paired, over the suite,
and against issue 17's targets."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bench_active_learning import merge
from napari_xrm_al.core.al.curves import (
    PairedDifference,
    learning_curves,
    paired_differences,
    run_label,
    runs_by_label,
)
from napari_xrm_al.core.al.simulation_config import finished_runs, read_result
from suite_plot import plot_suite, pool_and_axes


def at_budget(run: dict, n: int) -> dict | None:
    """The cycle of ``run`` with ``n`` labelled slices."""
    return next((c for c in run["cycles"] if c["n_labelled"] == n), None)


def pool_rows(name: str, result: dict, budgets: tuple[int, ...]) -> list[str]:
    """Markdown rows: each strategy's mean scores at ``budgets`` on one pool."""
    rows = []
    for label, runs in runs_by_label(result).items():
        means = [pool_means(result, label, n) for n in budgets]
        cells = ["–" if m is None else " / ".join(f"{v:.3f}" for v in m) for m in means]
        rows.append(f"| {name} | {label} | {len(runs)} | " + " | ".join(cells) + " |")
    return rows


def budget_index(d: PairedDifference, n: int) -> int | None:
    """Where ``d`` holds the difference at ``n`` labelled slices (None if nowhere)."""
    hit = np.flatnonzero(d.n_labelled == n)
    return int(hit[0]) if len(hit) else None


def paired_rows(name: str, result: dict, budgets: tuple[int, ...]) -> list[str]:
    """Markdown rows: first strategy − each other, rare IoU, at ``budgets``."""
    rows = []
    for d in paired_differences(result):
        cells = []
        for n in budgets:
            i = budget_index(d, n)
            if i is None:
                cells.append("–")
                continue
            ci = "" if np.isnan(d.ci95[i]) else f" ± {d.ci95[i]:.3f}"
            cells.append(
                f"{d.mean[i]:+.3f}{ci} ({d.ahead[i]}/{d.level[i]}/{d.behind[i]})"
            )
        rows.append(f"| {name} | {d.label} | {d.n_seeds} | " + " | ".join(cells) + " |")
    return rows


def report(
    out_dir: Path,
    rare_slice_share: Callable[[str], float],
    budgets: tuple[int, ...] = (8, 12),
    plot: Path | None = None,
    strategies: Sequence[str] | None = None,
) -> None:
    """Per-pool and suite tables from every result JSON in ``out_dir``, then the
    issue's targets (:func:`targets`; ``rare_slice_share(pool)``: the share of
    a pool's slices that hold its rare class); with ``plot``, the learning
    curves drawn there (:func:`suite_plot.plot_suite`), a figure per set of
    candidate axes (``<stem>_z.png``, ``<stem>_zyx.png``) when runs hold several.

    ``strategies``: only these runs, in this order (the first present in a
    table is its reference); None: every run, in the files' order."""
    by_pool: dict[str, list[dict]] = {}
    fulls: dict[str, list[dict]] = {}
    for path in sorted(out_dir.glob("*_s*.json")):
        pool = path.stem.rsplit("_s", 1)[0]
        result = read_result(path)
        if pool.startswith("full_"):
            if "full_supervision" in result:
                fulls.setdefault(pool.removeprefix("full_"), []).append(result)
            continue
        cycles = result["settings"]["cycles"]
        # A run stopped part-way (the file of a run still going) is left out.
        result["runs"] = list(finished_runs(result, {}, cycles).values())
        if strategies is not None:
            result["runs"] = sorted(
                (r for r in result["runs"] if r["strategy"] in strategies),
                key=lambda r: list(strategies).index(r["strategy"]),
            )
        if result["runs"]:
            by_pool.setdefault(pool, []).append(result)
    if not by_pool:
        sys.exit(f"no result in {out_dir}")
    head = " | ".join(f"{n} slices" for n in budgets)
    merged, partial = {}, []
    for pool, results in by_pool.items():
        merged[pool], left = on_common_seeds(merge(results))
        partial += [f"{pool} seed {seed}" for seed in left]
    print("mIoU / rare-class IoU / worst class IoU, mean over seeds\n")
    mixed = [f"{pool} {note}" for pool, r in merged.items() for note in unpaired(r)]
    if mixed:
        print(
            "Not paired (the strategies of a seed started from other first slices, "
            "so from another encoder: another machine or precision?): "
            f"{'; '.join(mixed)}.\n"
        )
    if partial:
        print(
            f"Left out until every strategy has finished them: {', '.join(partial)}.\n"
        )
    print(f"| pool | strategy | seeds | {head} |\n" + "|---" * (3 + len(budgets)) + "|")
    for pool, result in merged.items():
        print("\n".join(pool_rows(pool, result, budgets)))
    ceilings = {pool: merge(results) for pool, results in fulls.items()}
    for pool, result in ceilings.items():
        print(ceiling_row(pool, result, len(budgets)))
    print("\nEach pool's first strategy − strategy, rare-class IoU, paired by seed: "
          "mean ± 95 % CI (seeds ahead/level/behind)\n")  # fmt: skip
    print(f"| pool | strategy | seeds | {head} |\n" + "|---" * (3 + len(budgets)) + "|")
    for pool, result in merged.items():
        print("\n".join(paired_rows(pool, result, budgets)))
    shares = {pool: rare_slice_share(pool_and_axes(pool)[0]) for pool in merged}
    groups: dict[str, dict[str, dict]] = {}
    for pool, result in merged.items():
        axes = pool_and_axes(pool)[1]
        groups.setdefault(axes, {})[pool] = result
    for axes, group in groups.items():
        print(f"\n## Candidates along {', '.join(axes)}")
        suite_table(group, budgets, head)
        print("\n" + "\n".join(suite_paired(group, budgets, head)))
        print("\n" + "\n".join(targets(group, shares)))
    compared = axes_paired(groups, budgets, head)
    if compared:
        print("\n## Along z, y, x against along z\n\n" + "\n".join(compared))
    if ceilings:
        miou, rare = np.mean([ceiling(r)[:2] for r in ceilings.values()], axis=0)
        print(
            f"\nFull supervision (every z slice labelled) on {len(ceilings)} "
            f"pools: mIoU {miou:.3f}, rare-class IoU {rare:.3f} (mean over pools)."
        )
    print(f"\nCycles by training precision: {precisions(merged)}.")
    if plot is not None:
        tops = {pool: ceiling(result)[:2] for pool, result in ceilings.items()}
        for axes, group in groups.items():
            # One figure per candidate axes: PLOT itself when there is one set.
            path = plot if len(groups) == 1 else plot.with_stem(f"{plot.stem}_{axes}")
            drawn = plot_suite(group, tops, path)
            print(f"Learning curves along {', '.join(axes)}: {drawn}")


def unpaired(result: dict) -> list[str]:
    """The seeds of ``result`` whose strategies did not all start from the same
    first slices (each a note naming the differing sets)."""
    firsts: dict[int, set[tuple[str, ...]]] = {}
    for run in result["runs"]:
        first = tuple(sorted(run["cycles"][0]["labelled"]))
        firsts.setdefault(run["seed"], set()).add(first)
    return [
        f"seed {seed} ({' against '.join(', '.join(f) for f in sorted(sets))})"
        for seed, sets in sorted(firsts.items())
        if len(sets) > 1
    ]


def on_common_seeds(result: dict) -> tuple[dict, list[int]]:
    """``result`` with only the seeds that every strategy of it has finished
    (so every row of a pool averages the same seeds), and the seeds left out."""
    seeds = [{run["seed"] for run in runs} for runs in runs_by_label(result).values()]
    common = set.intersection(*seeds)
    left = sorted(set.union(*seeds) - common)
    return {**result, "runs": [r for r in result["runs"] if r["seed"] in common]}, left


def precisions(merged: dict[str, dict]) -> str:
    """How many reported cycles trained in each precision (files resumed on
    another machine may mix them; cycles before the field: "not recorded")."""
    counts = Counter(
        cycle.get("precision", "not recorded")
        for result in merged.values()
        for run in result["runs"]
        for cycle in run["cycles"]
    )
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))


def strategy_labels(merged: dict[str, dict]) -> list[str]:
    """Every strategy of any pool, in order of first appearance."""
    return list(dict.fromkeys(lb for r in merged.values() for lb in runs_by_label(r)))


def suite_table(merged: dict[str, dict], budgets: tuple[int, ...], head: str) -> None:
    """The suite-mean table of ``merged`` pools, with each learning curve's area."""
    print("\nSuite mean over pools (each pool's mean over seeds; area: the mean of"
          " the learning curve over every budget run: 2 to 12 slices in the full suite):\n")  # fmt: skip
    print(f"| strategy | {head} | area |\n" + "|---" * (2 + len(budgets)) + "|")
    for label in strategy_labels(merged):
        cells = []
        for n in budgets:
            miou, rare, pools = suite_mean(merged, label, n)
            cells.append(f"{miou:.3f} / {rare:.3f} ({pools} pools)")
        areas = [
            (c.area(), c.area("rare"))
            for result in merged.values()
            for c in learning_curves(result)
            if c.label == label
        ]
        miou, rare = np.mean(areas, axis=0)
        cells.append(f"{miou:.3f} / {rare:.3f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


def suite_paired(
    merged: dict[str, dict], budgets: tuple[int, ...], head: str
) -> list[str]:
    """Markdown lines: the first strategy − each other over every pool-seed
    pair that ran both (mIoU / rare-class IoU / worst class IoU: mean ± 95 %
    interval; the pairs where the first is ahead/level/behind on mIoU)."""
    first, *others = strategy_labels(merged)
    lines = [
        (
            f"{first} − strategy over the pool-seed pairs, paired: mIoU / rare-class "
            "IoU / worst class IoU, mean ± 95 % interval (pairs ahead/level/behind "
            "on mIoU)"
        ),
        "",
        f"| strategy | {head} |",
        "|---" * (1 + len(budgets)) + "|",
    ]
    for other in others:
        cells = [paired_cell(paired_scores(merged, first, other, n)) for n in budgets]
        lines.append(f"| {other} | " + " | ".join(cells) + " |")
    return lines


def axes_paired(
    groups: dict[str, dict[str, dict]], budgets: tuple[int, ...], head: str
) -> list[str]:
    """Markdown lines: each strategy with candidates along z, y, x − along z,
    over the pools and seeds that ran both (as :func:`suite_paired`)."""
    wide, narrow = groups.get("zyx", {}), groups.get("z", {})
    pools = {pool_and_axes(k)[0]: k for k in narrow}
    both = {k: pools[pool_and_axes(k)[0]] for k in wide if pool_and_axes(k)[0] in pools}
    if not both:
        return []
    lines = [
        (
            "Candidates along z, y, x − along z, each strategy over the pool-seed "
            f"pairs that ran both ({len(both)} pools): mIoU / rare-class IoU / "
            "worst class IoU, mean ± 95 % interval (pairs ahead/level/behind on mIoU)"
        ),
        "",
        f"| strategy | {head} |",
        "|---" * (1 + len(budgets)) + "|",
    ]
    for label in strategy_labels(wide):
        cells = []
        for n in budgets:
            rows = [
                row
                for w, z in both.items()
                for row in seed_differences(wide[w], label, narrow[z], label, n)
            ]
            cells.append(paired_cell(np.array(rows).reshape(-1, 3)))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def paired_cell(diff: np.ndarray) -> str:
    """``(pairs, 3)`` differences as a table cell: mean ± 95 % interval of each
    score, then the pairs ahead/level/behind on the first ("–" under 2 pairs)."""
    from scipy.stats import t  # only here: scipy.stats is slow to import

    if len(diff) < 2:
        return "–"
    half = t.ppf(0.975, len(diff) - 1) * diff.std(0, ddof=1) / np.sqrt(len(diff))
    d = diff[:, 0]
    counts = (d > 1e-9).sum(), (np.abs(d) <= 1e-9).sum(), (d < -1e-9).sum()
    return " / ".join(
        f"{m:+.3f} ± {h:.3f}" for m, h in zip(diff.mean(0), half, strict=True)
    ) + " ({}/{}/{})".format(*counts)


def paired_scores(
    merged: dict[str, dict], label: str, other: str, n: int
) -> np.ndarray:
    """``(pairs, 3)``: :func:`three_scores` of ``label`` − ``other`` at ``n``
    slices, one row per pool and seed that ran both."""
    rows = [
        row
        for result in merged.values()
        for row in seed_differences(result, label, result, other, n)
    ]
    return np.array(rows).reshape(-1, 3)


def seed_differences(
    mine: dict, label: str, theirs: dict, other: str, n: int
) -> list[np.ndarray]:
    """:func:`three_scores` of strategy ``label`` in result ``mine`` − ``other``
    in ``theirs`` (the same pool, e.g. along other axes) at ``n`` slices, one
    row per seed that both ran to ``n``."""
    rare = mine["rare_class"]
    ours = {r["seed"]: at_budget(r, n) for r in runs_by_label(mine).get(label, [])}
    others = {r["seed"]: at_budget(r, n) for r in runs_by_label(theirs).get(other, [])}
    return [
        np.subtract(three_scores(ours[s], rare), three_scores(others[s], rare))
        for s in sorted(set(ours) & set(others))
        if ours[s] and others[s]
    ]


def three_scores(scores: dict, rare: str) -> tuple[float, float, float]:
    """mIoU, ``rare`` class IoU and worst class IoU of one scoring (a cycle's,
    or the full-supervision reference); a NaN class IoU counts as 0."""
    ious = np.nan_to_num(list(scores["iou"].values()))
    return (
        float(scores["miou"]),
        float(np.nan_to_num(scores["iou"][rare])),
        float(ious.min()),
    )


def ceiling(result: dict) -> tuple[float, float, float]:
    """:func:`three_scores` of a merged full-supervision result (mean over its
    seeds)."""
    return three_scores(result["full_supervision"], result["rare_class"])


def ceiling_row(pool: str, result: dict, budgets: int) -> str:
    """A markdown row: the full-supervision reference of one pool, in every
    budget column (it does not depend on the budget)."""
    cell = " / ".join(f"{v:.3f}" for v in ceiling(result))
    seeds = result["full_supervision"].get("n_runs", 1)
    return (
        f"| {pool} | full supervision (every z slice) | {seeds} | "
        + " | ".join([cell] * budgets)
        + " |"
    )


def pool_means(result: dict, label: str, n: int) -> tuple[float, float, float] | None:
    """Mean over seeds of mIoU, rare-class IoU and worst class IoU of one
    strategy at ``n`` labelled slices on one pool (None if it has no run there)."""
    runs = runs_by_label(result).get(label, [])
    cycles = [c for c in (at_budget(r, n) for r in runs) if c]
    if not cycles:
        return None
    means = np.mean([three_scores(c, result["rare_class"]) for c in cycles], axis=0)
    return tuple(float(m) for m in means)  # type: ignore[return-value]


def suite_mean(merged: dict[str, dict], label: str, n: int) -> tuple[float, float, int]:
    """Suite mean (each pool's mean over seeds) of mIoU and rare-class IoU, and
    the number of pools that have the strategy at ``n`` slices."""
    per_pool = [m[:2] for m in (pool_means(r, label, n) for r in merged.values()) if m]
    if not per_pool:
        return np.nan, np.nan, 0
    miou, rare = np.mean(per_pool, axis=0)
    return float(miou), float(rare), len(per_pool)


#: Issue 17's targets on the suite.
MIOU_TARGET, RARE_TARGET, CLASS_TARGET = 0.80, 0.60, 0.5
#: Pools whose rare class is in fewer slices than this must show the lead.
RARE_POOL_SHARE = 0.10
#: A class is lost below this IoU, found at or above CLASS_TARGET.
LOST = 0.1


def targets(merged: dict[str, dict], shares: dict[str, float]) -> list[str]:
    """Markdown lines: each rareness-family strategy against issue 17's targets,
    with the margin where one is missed.

    ``shares``: the share of each pool's slices that hold its rare class.
    """
    labels = [lb for lb in strategy_labels(merged) if lb.startswith("rareness")]
    lines = [
        "Issue 17's targets (suite mean over pools; margins where missed):",
        "",
        "| target | " + " | ".join(labels) + " |",
        "|---" * (1 + len(labels)) + "|",
    ]

    def row(name: str, cell: Callable[[str], str]) -> None:
        lines.append(
            f"| {name} | " + " | ".join(cell(label) for label in labels) + " |"
        )

    def against(goal: float, value: float) -> str:
        if np.isnan(value):
            return "–"
        return f"{value:.3f} ({'met' if value >= goal else f'{value - goal:+.3f}'})"

    row(
        f"mIoU ≥ {MIOU_TARGET} at 12",
        lambda lb: against(MIOU_TARGET, suite_mean(merged, lb, 12)[0]),
    )
    row(
        f"rare IoU ≥ {RARE_TARGET} at 12",
        lambda lb: against(RARE_TARGET, suite_mean(merged, lb, 12)[1]),
    )

    def every_class(label: str) -> str:
        worst = {p: m[2] for p, r in merged.items() if (m := pool_means(r, label, 8))}
        short = [f"{p} {w:.2f}" for p, w in worst.items() if w <= CLASS_TARGET]
        met = f"{len(worst) - len(short)}/{len(worst)} pools"
        return met + (f"; short: {', '.join(short)}" if short else "")

    row(f"every class > {CLASS_TARGET} at 8, every pool", every_class)
    rare_pools = [p for p in merged if shares[p] < RARE_POOL_SHARE]
    for other in ("entropy", "random"):
        for n in (8, 12):
            row(
                f"ahead of {other} on rare IoU at {n}, interval > 0, pools with the "
                f"rare class in < {RARE_POOL_SHARE:.0%} of slices",
                lambda lb, other=other, n=n: ahead_on(merged, rare_pools, lb, other, n),
            )
    row(
        "no pool-seed losing a class that entropy finds",
        lambda lb: lost_classes(merged, lb),
    )
    return lines


def ahead_on(
    merged: dict[str, dict], pools: list[str], label: str, other: str, n: int
) -> str:
    """On how many ``pools`` ``label`` leads ``other`` on rare-class IoU at ``n``
    slices with the 95 % interval above 0, and each pool's mean ± interval."""
    cells, met = [], 0
    for pool in pools:
        result = merged[pool]
        first = [r for r in result["runs"] if run_label(r) == label]
        rest = [r for r in result["runs"] if run_label(r) == other]
        # Two strategies: at most one difference, ``label`` − ``other``.
        pair = {**result, "runs": first + rest}
        diffs = paired_differences(pair) if first and rest else []
        i = budget_index(diffs[0], n) if diffs else None
        if i is None:
            continue
        d = diffs[0]
        ci = d.ci95[i]
        met += bool(d.mean[i] - ci > 0)  # NaN (one seed) never counts
        cells.append(
            f"{pool} {d.mean[i]:+.3f}" + ("" if np.isnan(ci) else f" ± {ci:.3f}")
        )
    return f"{met}/{len(cells)} pools" + (f" ({'; '.join(cells)})" if cells else "")


def lost_classes(merged: dict[str, dict], label: str) -> str:
    """Pool-seed-budgets where ``label`` has a class below :data:`LOST` IoU that
    entropy, on the same seed and budget, has at :data:`CLASS_TARGET` or above."""
    lost = []
    for pool, result in merged.items():
        runs = runs_by_label(result)
        entropy = {r["seed"]: r for r in runs.get("entropy", [])}
        for run in runs.get(label, []):
            if run["seed"] not in entropy:
                continue
            for n in (8, 12):
                mine, theirs = at_budget(run, n), at_budget(entropy[run["seed"]], n)
                if mine and theirs:
                    lost += [
                        f"{pool} s{run['seed']} {n}: {c}"
                        for c, iou in mine["iou"].items()
                        if np.nan_to_num(iou) < LOST
                        and np.nan_to_num(theirs["iou"][c]) >= CLASS_TARGET
                    ]
    return "none" if not lost else f"{len(lost)}: " + ", ".join(lost)
