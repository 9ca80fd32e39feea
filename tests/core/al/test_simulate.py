"""The oracle simulation, end to end with a tiny model."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.al import simulate as simulate_module
from napari_xrm_al.core.al.curves import (
    learning_curves,
    paired_differences,
    plot_curves,
    summary_table,
)
from napari_xrm_al.core.al.simulate import (
    rare_class_of,
    score_as_predicted,
    score_model,
    simulate,
    split_holdout,
)
from napari_xrm_al.core.al.simulation_config import (
    RunSpec,
    SimulationConfig,
    parse_run,
    recorded_codes,
)
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.inference.fused_prediction import predict_fused
from napari_xrm_al.core.inference.predict import PredictConfig
from napari_xrm_al.core.model.normalization import fit_normalisation
from napari_xrm_al.core.slice_refs import SliceRef
from napari_xrm_al.core.synthetic.sample import make_hbm_sample
from napari_xrm_al.core.training.configs import PretrainConfig, TrainConfig
from napari_xrm_al.core.training.train import train
from napari_xrm_al.errors import XrmError

CLASSES = ClassTable.parse("background,copper,solder,void")


def tiny_config(*runs: RunSpec, **overrides) -> SimulationConfig:
    """A simulation of a few optimiser steps, for 40-pixel volumes."""
    settings = dict(
        initial=2,
        per_cycle=2,
        cycles=1,
        seeds=(0,),
        min_distance=2,
        train=TrainConfig(steps=4, crop_size=32, batch_size=2),
        pretrain=PretrainConfig(steps=2, batch_size=4, time_budget_s=None),
    )
    return SimulationConfig(runs=runs, **{**settings, **overrides})


@pytest.fixture
def trainings(monkeypatch) -> list[list[int]]:
    """The labelled slices (sorted indices) of every training the simulation
    runs from now on."""
    seen: list[list[int]] = []

    def counted(*args, **kwargs):
        seen.append(sorted(ref.index for ref in args[2]))
        return train(*args, **kwargs)

    monkeypatch.setattr(simulate_module, "train", counted)
    return seen


def test_run_specs() -> None:
    assert parse_run("rareness", True) == RunSpec("rareness", True)
    assert parse_run("rareness:no-pretrain", True) == RunSpec("rareness", False)
    assert parse_run("entropy:pretrain", False) == RunSpec("entropy", True)
    with pytest.raises(XrmError, match="suffix"):
        parse_run("entropy:maybe", True)
    with pytest.raises(XrmError, match="Unknown acquisition strategy"):
        parse_run("oracle", True)


def test_rare_class_defaults_to_the_least_frequent() -> None:
    labels = np.array([0] * 50 + [1] * 30 + [2] * 5 + [3] * 15)
    assert rare_class_of(labels, CLASSES) == "solder"
    assert rare_class_of(labels, CLASSES.with_rare(["copper"])) == "copper"


def test_holdout_is_the_last_quarter_along_the_axis() -> None:
    image = np.arange(8 * 2 * 3).reshape(8, 2, 3)
    pool, pool_labels, test, _ = split_holdout(image, image, "z")
    assert pool.shape == (6, 2, 3) and test.shape == (2, 2, 3)
    np.testing.assert_array_equal(test, image[6:])
    pool, *_ = split_holdout(image, image, "x")
    assert pool.shape == (8, 2, 2)


def test_simulation_runs_every_strategy_from_the_same_start(tmp_path) -> None:
    pool = make_hbm_sample(shape=(24, 40, 40), seed=0)
    test = make_hbm_sample(shape=(12, 40, 40), seed=1)
    config = tiny_config(
        RunSpec("rareness", True), RunSpec("random", True), RunSpec("entropy", False)
    )
    result = run_to_end(
        simulate(
            pool.image, pool.labels, CLASSES, config,
            test_image=test.image, test_labels=test.labels,
        )
    )  # fmt: skip
    assert result["classes"] == list(CLASSES.names)
    assert result["rare_class"] == "void"
    assert [r["strategy"] for r in result["runs"]] == ["rareness", "random", "entropy"]
    assert [r["pretrain"] for r in result["runs"]] == [True, True, False]
    starts = {tuple(r["cycles"][0]["labelled"]) for r in result["runs"]}
    assert len(starts) == 1
    for run in result["runs"]:
        first, second = run["cycles"]
        assert (first["n_labelled"], second["n_labelled"]) == (2, 4)
        added = set(second["labelled"]) - set(first["labelled"])
        assert len(added) == 2
        labelled = second["labelled"]
        assert all(abs(a - b) >= 2 for a in labelled for b in labelled if a != b)
        for cycle in run["cycles"]:
            assert 0.0 <= cycle["miou"] <= 1.0
            assert set(cycle["iou"]) == set(CLASSES.names)
            assert cycle["train_seconds"] > 0
            assert cycle["precision"] in ("float32", "bfloat16")
    curves = learning_curves(result)
    assert [c.label for c in curves] == ["rareness", "random", "entropy (no pretrain)"]
    assert "rareness" in summary_table(result)
    png = plot_curves(result, tmp_path / "curve.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_runs_that_reach_the_same_slices_share_one_training(trainings) -> None:
    # Labelled 0 and 5 of 12 with min_distance 3 leave only {8, 11} to add:
    # every strategy reaches the same four slices.
    pool = make_hbm_sample(shape=(12, 40, 40), seed=0)
    test = make_hbm_sample(shape=(12, 40, 40), seed=1)
    config = tiny_config(
        RunSpec("rareness", True), RunSpec("random", True),
        start_with=(0, 5), min_distance=3,
    )  # fmt: skip
    result = run_to_end(
        simulate(
            pool.image, pool.labels, CLASSES, config,
            test_image=test.image, test_labels=test.labels,
        )
    )  # fmt: skip
    assert trainings == [[0, 5], [0, 5, 8, 11]]
    first, second = (r["cycles"][1] for r in result["runs"])
    assert sorted(first["labelled"]) == sorted(second["labelled"]) == [0, 5, 8, 11]
    assert first["miou"] == second["miou"]


def test_curves_say_how_many_seeds_each_strategy_has(tmp_path) -> None:
    def run(strategy: str, seed: int) -> dict:
        cycles = [
            {"n_labelled": n, "miou": 0.1 * n + seed, "iou": {"void": 0.05 * n}}
            for n in (2, 4)
        ]
        return {"strategy": strategy, "pretrain": True, "seed": seed, "cycles": cycles}

    result = {
        "rare_class": "void",
        "runs": [run("rareness", 0), run("rareness", 1), run("random", 0)],
    }
    curves = learning_curves(result)
    assert [c.n_seeds for c in curves] == [2, 1]
    assert curves[0].miou_mean.tolist() == pytest.approx([0.7, 0.9])
    table = summary_table(result)
    assert "| rareness (2 seeds) |" in table and "| random (1 seed) |" in table
    assert plot_curves(result, tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    result["runs"].append(run("random", 1))
    assert "| random |" in summary_table(result)


def test_paired_differences_compare_each_seed_with_itself() -> None:
    def run(strategy: str, seed: int, void: list[float]) -> dict:
        cycles = [
            {"n_labelled": n, "miou": 0.5, "iou": {"void": v}}
            for n, v in zip((4, 8), void, strict=True)
        ]
        return {"strategy": strategy, "pretrain": True, "seed": seed, "cycles": cycles}

    # Seed 1 is far better for both strategies: unpaired, the curves overlap;
    # paired, rareness is ahead by 0.1 on every seed at 8 slices.
    result = {
        "rare_class": "void",
        "runs": [
            run("rareness", 0, [0.2, 0.3]),
            run("rareness", 1, [0.5, 0.8]),
            run("rareness", 2, [0.3, 0.5]),
            run("entropy", 0, [0.2, 0.2]),
            run("entropy", 1, [0.4, 0.7]),
            run("entropy", 2, [0.3, 0.4]),
            run("entropy", 3, [0.9, 0.9]),  # no rareness run to pair with
        ],
    }
    (diff,) = paired_differences(result)
    assert diff.label == "entropy" and diff.n_seeds == 3
    assert diff.mean.tolist() == pytest.approx([0.1 / 3, 0.1])
    assert diff.ci95[1] == pytest.approx(0.0, abs=1e-12)
    assert diff.ci95[0] > 0.1  # one seed ahead, two level: not a sure gain
    assert (diff.ahead.tolist(), diff.level.tolist(), diff.behind.tolist()) == (
        [1, 3],
        [2, 0],
        [0, 0],
    )
    table = summary_table(result)
    assert "| entropy | 3 | +0.033" in table and "+0.100±0.000 (3/0/0)" in table
    assert paired_differences({"rare_class": "void", "runs": result["runs"][:3]}) == []


def test_an_interrupted_simulation_resumes_where_it_stopped(trainings) -> None:
    pool = make_hbm_sample(shape=(24, 40, 40), seed=0)
    test = make_hbm_sample(shape=(12, 40, 40), seed=1)
    config = tiny_config(RunSpec("rareness", True), RunSpec("entropy", True), cycles=2)

    def run(earlier=None, cfg=config):
        snapshots: list[dict] = []
        result = run_to_end(
            simulate(
                pool.image, pool.labels, CLASSES, cfg,
                test_image=test.image, test_labels=test.labels,
                earlier=earlier, on_cycle=lambda r: snapshots.append(copy.deepcopy(r)),
            )
        )  # fmt: skip
        return result, snapshots

    full, snapshots = run()
    assert full["complete"] and len(snapshots) == 6  # 2 runs x 3 cycles
    assert not any(s["complete"] for s in snapshots)
    # Stopped during entropy's last cycle: rareness is whole, entropy has
    # recorded two of its three cycles.
    stopped = snapshots[4]
    assert [len(r["cycles"]) for r in stopped["runs"]] == [3, 2]
    trainings.clear()
    resumed, again = run(stopped)
    # Entropy goes on from its last recorded cycle: that model is trained again
    # to rank the next picks, then the last cycle's; nothing else runs.
    assert len(again) == 1
    recorded = [
        sorted(int(i) for i in c["labelled"]) for c in full["runs"][1]["cycles"]
    ]
    assert trainings == recorded[1:]
    assert resumed["runs"][0] is stopped["runs"][0]

    def scores(result):
        return [
            [(c["labelled"], c["miou"], c["iou"]) for c in r["cycles"]]
            for r in result["runs"]
        ]

    assert scores(resumed) == scores(full)
    # A finished result with one more strategy runs only that one and keeps
    # runs not asked for.
    more = dataclasses.replace(config, runs=(RunSpec("random", True),))
    extended, extra = run(full, more)
    assert len(extra) == 3
    order = [r["strategy"] for r in extended["runs"]]
    assert order == ["rareness", "entropy", "random"]
    other = dataclasses.replace(config, per_cycle=1)
    with pytest.raises(XrmError, match="another settings"):
        run(full, other)


def test_recorded_slices_read_back_as_the_codes_that_were_labelled() -> None:
    along_y = recorded_codes([3, 7], "y")
    assert along_y == [SliceRef.of("y", 3).code, SliceRef.of("y", 7).code]
    mixed = recorded_codes(["x:3", "y:40", "z:2"], "z")
    refs = [SliceRef.of("z", 2), SliceRef.of("y", 40), SliceRef.of("x", 3)]
    assert sorted(mixed) == sorted(r.code for r in refs)


def test_start_with_puts_chosen_slices_among_the_initial_ones() -> None:
    pool = make_hbm_sample(shape=(24, 32, 32), seed=0)
    config = tiny_config(
        RunSpec("random", True),
        initial=3,
        start_with=(11,),
        cycles=0,
        train=TrainConfig(steps=2, crop_size=32, batch_size=2),
    )
    result = run_to_end(simulate(pool.image, pool.labels, CLASSES, config))
    labelled = result["runs"][0]["cycles"][0]["labelled"]
    assert 11 in labelled and len(labelled) == 3
    assert all(abs(a - b) >= 2 for a in labelled for b in labelled if a != b)
    assert result["settings"]["start_with"] == [11]
    with pytest.raises(XrmError, match="start with"):
        bad = dataclasses.replace(config, start_with=(40,))
        run_to_end(simulate(pool.image, pool.labels, CLASSES, bad))


def test_mismatched_ground_truth_is_refused() -> None:
    config = SimulationConfig(runs=(RunSpec("random", False),))
    with pytest.raises(XrmError, match="differ in shape"):
        run_to_end(
            simulate(np.zeros((8, 8, 8)), np.zeros((8, 8, 4), int), CLASSES, config)
        )
    with pytest.raises(XrmError, match="beyond the 4 classes"):
        run_to_end(
            simulate(np.zeros((8, 8, 8)), np.full((8, 8, 8), 7), CLASSES, config)
        )


def test_score_model_scores_the_fused_prediction_when_asked(
    untrained_segmenter, tiny_model_config, smooth_volume
) -> None:
    segmenter = untrained_segmenter(tiny_model_config)
    volume = smooth_volume((10, 16, 16))
    truth = np.zeros(volume.shape, np.int16)  # background-only truth: IoU = share
    device = torch.device("cpu")

    def score(**kw):
        run = score_model(segmenter.checkpoint, volume, truth, ClassTable.hbm(), "z", device, **kw)  # fmt: skip
        return run_to_end(run)["iou"]["background"]

    def background_share(axes) -> float:
        out = np.zeros(volume.shape, np.uint8)
        run_to_end(predict_fused(segmenter, volume, axes, PredictConfig(device=device), out=out))  # fmt: skip
        return float(np.mean(out == 1))

    assert score() == score(fuse_axes=("z",)) == pytest.approx(background_share("z"))
    assert score(fuse_axes=("z", "y", "x")) == pytest.approx(background_share("zyx"))
    assert background_share("zyx") != background_share("z")


def test_a_simulated_model_is_scored_as_a_project_predicts(
    untrained_segmenter, tiny_model_config, smooth_volume
) -> None:
    """Along the axis of its training slices; fused along several."""
    segmenter = untrained_segmenter(tiny_model_config)
    volume = smooth_volume((10, 16, 16))
    truth = np.zeros(volume.shape, np.int16)
    device = torch.device("cpu")
    ckpt = dataclasses.replace(
        segmenter.checkpoint, axis="z", history={"slices": [["x", 2], ["x", 9]]}
    )

    def score(axis, **kw) -> float:  # background IoU = its predicted share
        run = score_model(ckpt, volume, truth, CLASSES, axis, device, **kw)
        return run_to_end(run)["iou"]["background"]

    def predicted() -> float:
        run = score_as_predicted(ckpt, volume, truth, CLASSES, device)
        return run_to_end(run)["iou"]["background"]

    assert predicted() == score("x") != score("z")
    ckpt.history["slices"].append(["y", 3])
    assert predicted() == score("x", fuse_axes=("x", "y")) != score("x")


def test_full_supervision_alone_trains_on_every_slice_once(trainings) -> None:
    pool = make_hbm_sample(shape=(12, 40, 40), seed=0)
    test = make_hbm_sample(shape=(12, 40, 40), seed=1)
    config = tiny_config(
        full_supervision=True,
        train=TrainConfig(steps=4, crop_size=32, batch_size=2, max_steps=1),
    )
    result = run_to_end(
        simulate(
            pool.image, pool.labels, CLASSES, config,
            test_image=test.image, test_labels=test.labels,
        )
    )  # fmt: skip
    assert trainings == [list(range(12))]
    assert result["runs"] == [] and result["complete"]
    assert set(result["full_supervision"]["iou"]) == set(CLASSES.names)


def test_a_test_scan_far_from_the_pool_grey_levels_is_scored_by_its_own(
    monkeypatch,
) -> None:
    """As ``predict --intensity auto`` would predict it."""
    used = []

    def recorded(*args, **kwargs):
        used.append(kwargs["normalisation"])
        return score_as_predicted(*args, **kwargs)

    monkeypatch.setattr(simulate_module, "score_as_predicted", recorded)
    pool = make_hbm_sample(shape=(12, 40, 40), seed=0)
    test = make_hbm_sample(shape=(12, 40, 40), seed=5)  # near the pool's levels
    config = tiny_config(
        full_supervision=True,
        train=TrainConfig(steps=4, crop_size=32, batch_size=2, max_steps=1),
    )
    for image in (test.image, 0.3 * test.image.astype(np.float32)):
        run_to_end(
            simulate(
                pool.image, pool.labels, CLASSES, config,
                test_image=image, test_labels=test.labels,
            )
        )  # fmt: skip
    pool_norm, own = fit_normalisation(pool.image), fit_normalisation(test.image)
    assert used[0] == pool_norm  # within the tolerance: the model's
    assert used[1].high == pytest.approx(0.3 * own.high, rel=1e-3)
