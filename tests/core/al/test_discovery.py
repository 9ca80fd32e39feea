"""Discovery before exploitation: covering what is not labelled yet."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from tests.core.al.test_acquisition import BG, CU, SOLDER, VOID, make_context, put_class

from napari_xrm_al.core.al.acquisition import select
from napari_xrm_al.core.al.discovery import (
    NOVELTY_THRESHOLD,
    composition_distance,
    plan_discovery,
)
from napari_xrm_al.core.al.ranking import rank_summary
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.inference.predict import PredictConfig
from napari_xrm_al.core.inference.segmenter import Segmenter
from napari_xrm_al.core.training.train import train


def test_composition_distance_is_total_variation_to_the_nearest_labelled() -> None:
    fraction = np.array([[1.0, 0, 0], [0.5, 0.5, 0], [0, 0, 1.0], [0.9, 0.1, 0]])
    d = composition_distance(np.arange(4), fraction, labelled=[0, 1])
    assert d == pytest.approx([0.0, 0.0, 1.0, 0.1])
    assert composition_distance(np.arange(4), fraction, labelled=[]) == pytest.approx(1)


def test_split_follows_unseen_classes_then_novel_slices() -> None:
    eligible = np.ones(6, bool)
    novelty = np.array([0, 0, 0.5, 0.6, 0.7, 0.0])
    unseen = plan_discovery(np.array([10, 5, 0, 0]), novelty, eligible, 5)
    assert (unseen.cover, unseen.exploit, unseen.unseen) == (3, 2, (2, 3))
    assert "no labelled solder, void" in unseen.describe(["bg", "cu", "solder", "void"])
    novel = plan_discovery(np.array([10, 5, 3, 1]), novelty, eligible, 5)
    assert (novel.cover, novel.exploit, novel.novel) == (2, 3, 3)
    assert novel.describe(["bg", "cu", "solder", "void"], "voids") == (
        "2 slices to cover what is not labelled yet (3 slices predicted unlike "
        "every labelled slice), 3 for voids."
    )
    familiar = plan_discovery(np.array([10, 5, 3, 1]), novelty * 0, eligible, 5)
    assert (familiar.cover, familiar.exploit) == (0, 5)
    # Before any label the encoder's first picks cover the scan instead.
    assert plan_discovery(np.zeros(4), novelty, eligible, 4).cover == 2


def test_a_confidently_mispredicted_structure_is_covered_before_rare_pixels() -> None:
    # Every class is labelled; slices 14-16 are predicted half solder with no
    # uncertainty (nothing like them is labelled), slices 5 and 11 uncertain void.
    ctx = make_context(labelled_counts=np.array([9000.0, 900.0, 90.0, 10.0]))
    ctx.labelled = [0, 8]
    put_class(ctx, 0, CU, 0.1)
    for s in (14, 15, 16):
        put_class(ctx, s, SOLDER, 0.5)
        ctx.entropy_by_class[s] = 0.0
    for s, entropy in ((5, 0.5), (11, 0.4)):
        put_class(ctx, s, VOID, 0.02)
        ctx.entropy_by_class[s, VOID] = entropy
    assert composition_distance(ctx.index, ctx.class_fraction, [0, 8])[15] > (
        NOVELTY_THRESHOLD
    )
    _, rareness_only, _ = select("rareness", ctx, 2, min_distance=3)
    assert [p.slice for p in rareness_only] == [5, 11]
    _, picks, plan = select("rareness-discovery", ctx, 2, min_distance=3)
    assert (plan.cover, plan.exploit) == (1, 1)
    assert picks[0].slice in (14, 15, 16) and picks[0].reason == "cover"
    assert picks[1].slice == 5 and picks[1].reason == "rare"
    assert [p.rank for p in picks] == [1, 2]


def test_novelty_finds_a_structure_absent_from_the_labelled_slices(
    sample0, annotate, tiny_train_config
):
    # Label only die slices (no solder, no void): the cover picks must reach the
    # bump layer (and the mold compound above the stack, as unlike the dies).
    labels = sample0.labels
    has_solder = np.flatnonzero((labels == SOLDER).any(axis=(1, 2)))
    dies = [s for s in range(labels.shape[0]) if abs(has_solder - s).min() > 4]
    labelled = dies[:: max(1, len(dies) // 3)][:3]
    config = dataclasses.replace(tiny_train_config, steps=40, batch_size=4)
    ckpt = run_to_end(
        train(
            sample0.image,
            annotate(labels, labelled),
            labelled,
            sample0.classes,
            config=config,
        )
    )
    result = run_to_end(
        Segmenter.build(ckpt).predict_volume(
            sample0.image, PredictConfig(device=torch.device("cpu"))
        )
    )
    counts = np.bincount(labels[labelled].ravel(), minlength=4)
    assert counts[SOLDER] == counts[VOID] == 0 and counts[BG] > 0
    ranking = rank_summary(
        result.summary, "rareness-discovery", 4, labelled=labelled,
        labelled_counts=counts, min_distance=2,
    )  # fmt: skip
    assert ranking.plan.unseen == (SOLDER, VOID)
    cover = [p.slice for p in ranking.picks if p.reason == "cover"]
    assert len(cover) == 2
    assert any(abs(has_solder - s).min() == 0 for s in cover)
