"""Active learning simulated with an oracle (method.md, evaluation protocol).

The pool is a volume whose dense ground truth stays hidden until a strategy
picks a slice; the oracle then reveals that slice. After each cycle a model is
trained **from the pretrained initialisation** on all labelled slices and the
test volume is scored. Pretraining runs once per seed and is shared by every
strategy of that seed; every strategy starts from the same seed's initial
slices.

Without a test volume, the last :data:`HOLDOUT_FRACTION` of the slices along
the axis is held out as a contiguous test block and the pool is the rest.
The pool and test volumes are loaded into memory: simulation is a benchmark
tool for volumes of a few hundred MB at most.

A simulation can run for hours. ``on_cycle`` hands the result so far to the
caller after every cycle (the command line writes it to disk), and ``earlier``
takes such a partial result back: runs it holds in full are kept (also those
not asked for this time) and come first; a run stopped part-way keeps the cycles
it recorded and goes on from the last one (its model trained again, once, to rank
the next picks). Every step is seeded, so the resumed result is
the one an uninterrupted run would have given (on the same device, and as long
as step counts rather than time budgets end the training).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import torch

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.al.acquisition import get_strategy
from napari_xrm_al.core.al.batch_picking import pick_batch
from napari_xrm_al.core.al.ranking import (
    BALD_SAMPLES,
    Ranking,
    first_ranking,
    rank_summary,
    summarise,
)
from napari_xrm_al.core.al.simulation_config import (
    SimulationConfig,
    finished_runs,
    recorded_codes,
    settings_of,
    stopped_runs,
)
from napari_xrm_al.core.events import Progress
from napari_xrm_al.core.inference.fused_prediction import (
    predict_along,
    prediction_axes,
)
from napari_xrm_al.core.inference.predict import PredictConfig
from napari_xrm_al.core.inference.segmenter import Segmenter
from napari_xrm_al.core.model.checkpoint import Checkpoint
from napari_xrm_al.core.model.network import pick_device
from napari_xrm_al.core.model.normalization import (
    Normalisation,
    fit_normalisation,
    normalisation_for_scan,
)
from napari_xrm_al.core.slice_refs import SliceRef, by_axis, ref_of_code, slice_codes
from napari_xrm_al.core.slices import axis_index, n_slices
from napari_xrm_al.core.training.configs import TrainConfig
from napari_xrm_al.core.training.metrics import evaluate
from napari_xrm_al.core.training.pretrain import pretrain
from napari_xrm_al.core.training.step_loop import RunOptions
from napari_xrm_al.core.training.train import train
from napari_xrm_al.errors import XrmError

HOLDOUT_FRACTION = 0.25


def rare_class_of(labels: np.ndarray, classes: ClassTable) -> str:
    """The named rare class, else the least frequent class in ``labels``."""
    if classes.rare:
        return classes.rare[0]
    counts = np.bincount(np.asarray(labels).ravel(), minlength=len(classes))[
        : len(classes)
    ]
    return classes.names[int(np.argmin(counts))]


def split_holdout(image: Any, labels: Any, axis: str) -> tuple[np.ndarray, ...]:
    """Pool and test block: the test is the last quarter of slices along ``axis``."""
    ax = axis_index(axis)
    n = n_slices(image.shape, axis)
    cut = n - max(1, int(round(n * HOLDOUT_FRACTION)))
    take = lambda a, s: np.asarray(a)[(slice(None),) * ax + (s,)]  # noqa: E731
    return (
        take(image, slice(0, cut)),
        take(labels, slice(0, cut)),
        take(image, slice(cut, None)),
        take(labels, slice(cut, None)),
    )


def score_model(
    ckpt: Checkpoint,
    image: np.ndarray,
    labels: np.ndarray,
    classes: ClassTable,
    axis: str,
    device: torch.device,
    tta: str = "none",
    fuse_axes: Sequence[str] = (),
    normalisation: Normalisation | None = None,
) -> Generator[Progress, None, dict[str, Any]]:
    """Predict ``image`` (with test-time augmentation ``tta``; along ``axis``,
    or the mean of the predictions along ``fuse_axes`` when given; normalised
    by ``normalisation``, None: the model's) and score it against dense
    ``labels``: mIoU and IoU per class."""
    out = np.zeros(image.shape, np.uint8)
    config = PredictConfig(
        summaries=False, device=device, tta=tta, normalisation=normalisation
    )
    segmenter = Segmenter.build(ckpt)
    yield from predict_along(segmenter, image, fuse_axes or (axis,), config, out=out)
    scores = evaluate(out.astype(np.int16) - 1, labels, classes)
    return {
        "miou": scores["miou"],
        "iou": {c: scores[f"iou/{c}"] for c in classes.names},
    }


def score_as_predicted(
    ckpt: Checkpoint,
    image: np.ndarray,
    labels: np.ndarray,
    classes: ClassTable,
    device: torch.device,
    normalisation: Normalisation | None = None,
) -> Generator[Progress, None, dict[str, Any]]:
    """:func:`score_model` predicting as a project does: along the axes of the
    model's training slices, fused when several
    (:func:`~napari_xrm_al.core.inference.fused_prediction.prediction_axes`)."""
    axes, _ = prediction_axes(ckpt, image.shape)
    return (
        yield from score_model(
            ckpt,
            image,
            labels,
            classes,
            axes[0],
            device,
            fuse_axes=axes,
            normalisation=normalisation,
        )
    )


def rank_pool(
    ckpt: Checkpoint,
    image: np.ndarray,
    labels: np.ndarray,
    labelled: Sequence[int],
    classes: ClassTable,
    strategies: Sequence[str],
    k: int,
    *,
    axes: Sequence[str],
    min_distance: int,
    seed: int,
    device: torch.device,
) -> Generator[Progress, None, dict[str, Ranking]]:
    """The next ``k`` picks of each strategy, from one prediction pass over the
    pool per axis of ``axes``; ``labelled`` and the picks are slice codes.

    The oracle's ``labels`` of the ``labelled`` slices give the class counts
    behind the rareness weights; the pass draws MC-dropout samples when a
    strategy needs them.
    """
    bald = any("bald" in get_strategy(name).needs for name in strategies)
    summary = yield from summarise(
        None, image, axes=axes, mc_samples=BALD_SAMPLES if bald else 1,
        device=device, checkpoint=ckpt,
    )  # fmt: skip
    revealed = [
        np.take(labels, indices, axis=ax).ravel()
        for ax, indices in by_axis(map(ref_of_code, labelled)).items()
    ]
    counts = np.bincount(np.concatenate(revealed), minlength=len(classes))
    return {
        name: rank_summary(
            summary,
            name,
            k,
            labelled=labelled,
            labelled_counts=counts,
            min_distance=min_distance,
            seed=seed,
        )
        for name in strategies
    }


def _labelled_record(codes: Sequence[int], axes: Sequence[str]) -> list[Any]:
    """Labelled slices for ``result.json``: indices along one axis, else ``'y:40'``."""
    refs = sorted(ref_of_code(c) for c in codes)
    return [r.index if len(axes) == 1 else str(r) for r in refs]


def simulate(
    image: Any,
    labels: Any,
    classes: ClassTable,
    config: SimulationConfig,
    *,
    test_image: Any = None,
    test_labels: Any = None,
    device: str | torch.device | None = None,
    earlier: dict[str, Any] | None = None,
    on_cycle: Callable[[dict[str, Any]], None] | None = None,
) -> Generator[Progress, None, dict[str, Any]]:
    """Run the oracle simulation; yields progress, returns the ``result.json`` dict.

    ``labels`` and ``test_labels`` hold dense class ids ``0..C-1``. ``earlier``
    is a partial result of the same simulation to resume (``"complete":
    false``); ``on_cycle(result)`` is called with the result so far after each
    cycle.
    """
    if test_image is None:
        image, labels, test_image, test_labels = split_holdout(
            image, labels, config.axis
        )
    image, labels = np.asarray(image), np.asarray(labels)
    test_image, test_labels = np.asarray(test_image), np.asarray(test_labels)
    for name, a, b in (("pool", image, labels), ("test", test_image, test_labels)):
        if a.shape != b.shape:
            raise XrmError(
                f"The {name} image {a.shape} and labels {b.shape} differ in shape."
            )
    if int(labels.max()) >= len(classes) or int(test_labels.max()) >= len(classes):
        raise XrmError(
            f"Ground truth holds ids beyond the {len(classes)} classes given."
        )
    n = n_slices(image.shape, config.axis)
    pool_axes = config.axes or (config.axis,)
    if len(config.start_with) > config.initial or not all(
        0 <= s < n for s in config.start_with
    ):
        raise XrmError(
            f"The slices to start with {list(config.start_with)} must be at most "
            f"{config.initial} (the initial slices) and lie in 0..{n - 1}."
        )
    dev = pick_device(device)
    rare = rare_class_of(labels, classes)
    norm = fit_normalisation(image)
    result: dict[str, Any] = {
        "classes": list(classes.names),
        "rare_class": rare,
        "axis": config.axis,
        "pool_shape": list(image.shape),
        "test_shape": list(test_image.shape),
        "settings": settings_of(config),
        "complete": False,
        "runs": [],
    }
    identity = ("classes", "rare_class", "pool_shape", "test_shape", "settings")
    finished = finished_runs(earlier, {k: result[k] for k in identity}, config.cycles)
    # The earlier result's finished runs come first, in their order (its
    # first strategy stays the reference of paired comparisons).
    result["runs"] = list(finished.values())
    if earlier is not None and "full_supervision" in earlier:
        result["full_supervision"] = earlier["full_supervision"]
    stopped = stopped_runs(earlier, config.cycles)
    to_run = [
        (seed, run)
        for seed in config.seeds
        for run in config.runs
        if (seed, run.strategy, run.pretrain) not in finished
    ]
    total_cycles = max(
        sum(
            config.cycles
            + 1
            - len(stopped.get((seed, run.strategy, run.pretrain), {}).get("cycles", ()))
            for seed, run in to_run
        ),
        1,
    )
    done_cycles = 0
    started = time.perf_counter()

    # The test scan is predicted as `predict` would (--intensity auto): by its
    # own grey levels when they differ from the pool's.
    test_norm, _ = normalisation_for_scan(norm, test_image)
    evaluate_cycle = partial(
        score_as_predicted, image=test_image, labels=test_labels, classes=classes,
        device=dev, normalisation=test_norm,
    )  # fmt: skip

    def fit(codes: Sequence[int], init: Checkpoint | None, seed: int, cfg: TrainConfig):
        slices = [ref_of_code(c) for c in codes]
        return train(
            image, labels, slices, classes, axis=config.axis, dense_labels=True,
            init=init, config=cfg,
            run=RunOptions(seed=seed, device=dev, normalisation=norm),
        )  # fmt: skip

    need_full = config.full_supervision and "full_supervision" not in result
    for seed in config.seeds:
        runs = [r for s, r in to_run if s == seed]
        encoder = None
        if any(r.pretrain for r in runs) or (need_full and seed == config.seeds[-1]):
            encoder = yield from pretrain(
                image, axis=config.axis, config=config.pretrain,
                run=RunOptions(seed=seed, device=dev, normalisation=norm),
            )  # fmt: skip
        if runs:
            initial = yield from initial_slices(encoder, image, config, seed, dev)
        # Training depends on which slices are labelled, not on their order
        # (load_labelled) nor on the strategy: every run of a seed that reaches
        # the same labelled set with the same initialisation (cycle 0 always,
        # later cycles where strategies agree) reuses that model and its scores.
        trained: dict[tuple, tuple[Checkpoint, dict[str, Any], float]] = {}
        for run in config.runs:
            if run not in runs:
                continue
            labelled = list(initial)
            record = {
                "strategy": run.strategy,
                "pretrain": run.pretrain,
                "seed": seed,
                "cycles": [],
            }
            resumed = stopped.get((seed, run.strategy, run.pretrain))
            if resumed is not None:  # go on from its last recorded cycle
                record["cycles"] = [dict(c) for c in resumed["cycles"]]
                last = record["cycles"][-1]
                labelled = recorded_codes(last["labelled"], config.axis)
            first = len(record["cycles"]) - 1 if resumed is not None else 0
            result["runs"].append(record)
            for cycle in range(first, config.cycles + 1):
                key = (run.pretrain, frozenset(int(c) for c in labelled))
                if key not in trained:
                    t0 = time.perf_counter()
                    ckpt = yield from fit(
                        labelled, encoder if run.pretrain else None, seed, config.train
                    )
                    seconds = time.perf_counter() - t0
                    trained[key] = (ckpt, (yield from evaluate_cycle(ckpt)), seconds)
                ckpt, metrics, seconds = trained[key]
                if resumed is not None and cycle == first:
                    entry = record["cycles"][-1]  # recorded before the stop
                else:
                    entry = {
                        "cycle": cycle,
                        "n_labelled": len(labelled),
                        "labelled": _labelled_record(labelled, pool_axes),
                        **metrics,
                        "train_seconds": round(seconds, 2),
                        # A result resumed on another machine may mix precisions.
                        "precision": ckpt.history["precision"],
                        "rank_seconds": 0.0,
                    }
                    record["cycles"].append(entry)
                    done_cycles += 1
                    elapsed = time.perf_counter() - started
                    yield Progress(
                        "simulate", done_cycles, total_cycles,
                        eta_seconds=elapsed / done_cycles * (total_cycles - done_cycles),
                        metrics={"miou": metrics["miou"], f"iou/{rare}": metrics["iou"][rare]},
                        message=f"seed {seed} {run.label} cycle {cycle} ({len(labelled)} slices)",
                    )  # fmt: skip
                    if on_cycle is not None:
                        on_cycle(result)
                if cycle == config.cycles:
                    break
                t2 = time.perf_counter()
                rankings = yield from rank_pool(
                    ckpt, image, labels, labelled, classes, [run.strategy],
                    config.per_cycle, axes=pool_axes,
                    min_distance=config.min_distance, seed=seed * 1000 + cycle,
                    device=dev,
                )  # fmt: skip
                ranking = rankings[run.strategy]
                labelled += [p.slice for p in ranking.picks]
                entry["rank_seconds"] = round(time.perf_counter() - t2, 2)
                if ranking.plan is not None:  # the split of the next picks
                    entry["next_cover"] = ranking.plan.cover
    if need_full:
        seed = config.seeds[-1]  # the encoder left by the last seed
        cfg = replace(config.train, steps=None, max_steps=config.train.max_steps * 4)
        every = slice_codes(SliceRef.of(config.axis, i) for i in range(n))
        ckpt = yield from fit(every, encoder, seed, cfg)
        result["full_supervision"] = yield from evaluate_cycle(ckpt)
    result["complete"] = True
    return result


def initial_slices(
    encoder: Checkpoint | None,
    image: np.ndarray,
    config: SimulationConfig,
    seed: int,
    device: torch.device,
) -> Generator[Progress, None, list[int]]:
    """The slices (codes) every strategy of ``seed`` starts from.

    ``config.start_with`` first; then, with a pretrained encoder (pretrained
    with ``seed``), its first picks (method.md: picked with the pretrained
    model where possible; :func:`~napari_xrm_al.core.al.ranking.first_ranking`);
    without one, random slices drawn with ``seed``; candidates along every
    axis of ``config.axes``.
    """
    axes = config.axes or (config.axis,)
    given = slice_codes(SliceRef.of(config.axis, s) for s in config.start_with)
    given = given.tolist()
    k = config.initial - len(given)
    if encoder is None:
        index = slice_codes(
            SliceRef.of(a, i) for a in axes for i in range(n_slices(image.shape, a))
        )
        picks = pick_batch(
            index,
            np.random.default_rng(seed).random(len(index)),
            k,
            labelled=given,
            min_distance=config.min_distance,
        )
    else:
        ranking = yield from first_ranking(
            None, image, k, axes=axes, labelled=given,
            min_distance=config.min_distance, device=device,
            checkpoint=encoder,
        )  # fmt: skip
        picks = ranking.picks
    return given + [p.slice for p in picks]
