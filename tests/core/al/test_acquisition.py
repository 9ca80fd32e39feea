"""Acquisition strategies and the batch picker on inputs with known answers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from napari_xrm_al.core.al.acquisition import (
    STRATEGIES,
    AcquisitionContext,
    rareness_weights,
    score_slices,
    select,
)
from napari_xrm_al.core.al.batch_picking import axis_room, pick_batch
from napari_xrm_al.core.slice_refs import SliceRef, slice_codes
from napari_xrm_al.errors import XrmError

BG, CU, SOLDER, VOID = range(4)


def make_context(n: int = 20, n_classes: int = 4, **kwargs) -> AcquisitionContext:
    """Every slice mostly confident background with equal entropy."""
    fraction = np.zeros((n, n_classes))
    fraction[:, BG] = 1.0
    entropy_by_class = np.zeros((n, n_classes))
    entropy_by_class[:, BG] = 0.2
    defaults = dict(
        index=np.arange(n),
        mean_entropy=np.full(n, 0.2),
        mean_margin=np.full(n, 0.3),
        class_fraction=fraction,
        entropy_by_class=entropy_by_class,
        labelled_counts=np.zeros(n_classes),
    )
    defaults.update(kwargs)
    return AcquisitionContext(**defaults)


def put_class(ctx: AcquisitionContext, s: int, cls: int, share: float) -> None:
    """Move ``share`` of slice ``s``'s pixels (and their entropy) to ``cls``."""
    ctx.class_fraction[s, BG] -= share
    ctx.class_fraction[s, cls] += share
    moved = ctx.entropy_by_class[s, BG] * share
    ctx.entropy_by_class[s, BG] -= moved
    ctx.entropy_by_class[s, cls] += moved


def test_predicted_rare_class_outranks_equally_uncertain_slice() -> None:
    ctx = make_context(labelled_counts=np.array([9000.0, 900.0, 90.0, 10.0]))
    put_class(ctx, 5, VOID, 0.02)
    put_class(ctx, 9, CU, 0.02)
    scores = score_slices("rareness", ctx)
    # Every slice has the same mean entropy, so entropy cannot tell them apart...
    assert np.ptp(score_slices("entropy", ctx)) == 0
    # ...while the rareness-aware score puts the void slice first.
    assert int(np.argmax(scores)) == 5
    assert scores[5] > scores[9] > scores[0]


def test_labelled_frequencies_keep_common_classes_wanted() -> None:
    # Plenty of voids labelled but copper never seen: copper is now the rare one.
    ctx = make_context(labelled_counts=np.array([9000.0, 0.0, 500.0, 500.0]))
    put_class(ctx, 3, VOID, 0.05)
    put_class(ctx, 12, CU, 0.05)
    w = rareness_weights(ctx)
    assert w[CU] == pytest.approx(1.0)
    assert w[CU] > w[VOID]
    assert int(np.argmax(score_slices("rareness", ctx))) == 12


def test_unlabelled_classes_make_any_uncertainty_count() -> None:
    # Solder and void never labelled: the model cannot predict them, so they
    # can only show up as uncertainty, also where background is predicted.
    ctx = make_context(labelled_counts=np.array([9000.0, 900.0, 0.0, 0.0]))
    ctx.mean_entropy[4] = ctx.entropy_by_class[4, BG] = 0.9  # unsure background
    put_class(ctx, 9, CU, 0.5)  # half copper, as unsure as the other slices
    assert int(np.argmax(score_slices("rareness", ctx))) == 4
    # Once every class has labelled pixels, copper (rarer than background) wins.
    ctx.labelled_counts = np.array([9000.0, 900.0, 90.0, 10.0])
    assert int(np.argmax(score_slices("rareness", ctx))) == 9


def test_weights_before_labels_come_from_predictions() -> None:
    ctx = make_context()
    put_class(ctx, 2, SOLDER, 0.5)
    put_class(ctx, 7, VOID, 0.01)
    w = rareness_weights(ctx)
    # Predicted void is rarer than predicted solder, which is rarer than background.
    assert w[VOID] > w[SOLDER] > w[BG]
    assert w.max() == pytest.approx(1.0)


def test_confident_rare_pixels_still_count_through_lambda() -> None:
    ctx = make_context(labelled_counts=np.array([9000.0, 900.0, 90.0, 10.0]))
    ctx.class_fraction[4] = [0.95, 0.0, 0.0, 0.05]
    ctx.entropy_by_class[4] = [0.19, 0.0, 0.0, 0.0]  # voids predicted with certainty
    scores = score_slices("rareness", ctx)
    assert scores[4] > scores[0]


def test_baselines_rank_by_their_quantity() -> None:
    ctx = make_context()
    ctx.mean_entropy[6] = 0.9
    ctx.mean_margin[8] = 0.9
    ctx.bald = np.zeros(20)
    ctx.bald[11] = 0.5
    assert int(np.argmax(score_slices("entropy", ctx))) == 6
    assert int(np.argmax(score_slices("margin", ctx))) == 8
    assert int(np.argmax(score_slices("bald", ctx))) == 11
    random_a = score_slices("random", ctx)
    ctx.seed = 1
    assert not np.array_equal(random_a, score_slices("random", ctx))


def test_strategy_without_its_inputs_says_what_is_missing() -> None:
    with pytest.raises(XrmError, match="bald"):
        score_slices("bald", make_context())
    with pytest.raises(XrmError, match="Unknown acquisition strategy 'nope'"):
        score_slices("nope", make_context())


def test_every_registered_strategy_scores_every_slice() -> None:
    ctx = make_context(n=31, bald=np.linspace(0, 1, 31), embedding=np.eye(31))
    for name in STRATEGIES:
        assert score_slices(name, ctx).shape == (31,)


def test_picks_skip_labelled_slices_and_keep_their_distance() -> None:
    index = np.arange(50)
    scores = np.linspace(0.0, 1.0, 50)  # the best slices sit together at the end
    picks = pick_batch(index, scores, 4, labelled=[49], min_distance=3)
    chosen = [p.slice for p in picks]
    assert chosen == [46, 43, 40, 37]
    for a in chosen:
        assert all(abs(a - b) >= 3 for b in chosen if b != a)
        assert abs(a - 49) >= 3
    assert [p.rank for p in picks] == [1, 2, 3, 4]


def test_picker_returns_fewer_when_the_axis_is_full() -> None:
    picks = pick_batch(np.arange(10), np.ones(10), 8, min_distance=4)
    assert len(picks) == 3
    assert [p.slice for p in picks] == [0, 4, 8]


def test_coreset_spreads_over_embedding_clusters() -> None:
    # Three clusters of slices in embedding space; labelled slice is in cluster A.
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    cluster = np.repeat([0, 1, 2], [20, 5, 5])
    embedding = centres[cluster] + rng.normal(0, 0.1, (30, 2))
    order = rng.permutation(30)
    ctx = make_context(
        n=30,
        embedding=embedding[order],
        labelled=[int(np.flatnonzero(cluster[order] == 0)[0])],
    )
    _, picks, _ = select("coreset", ctx, 2, min_distance=1)
    picked_clusters = {int(cluster[order][p.slice]) for p in picks}
    assert picked_clusters == {1, 2}


@pytest.mark.parametrize(
    ("plain_name", "diverse_name"),
    [
        ("rareness", "rareness-diverse"),
        ("rareness-discovery", "rareness-discovery-diverse"),
        ("rareness-discovery", "rareness-discovery-spread"),  # one axis: no cap
    ],
)
def test_diverse_rareness_does_not_pick_two_near_duplicates(
    plain_name: str, diverse_name: str
) -> None:
    # Slice 0 is labelled and every class has labels: no slice is novel, so the
    # discovery strategies spend the whole batch on the rare class.
    ctx = make_context(
        n=40, labelled_counts=np.array([9000.0, 900.0, 90.0, 10.0]), labelled=[0]
    )
    embedding = np.zeros((40, 2))
    embedding[:, 0] = np.arange(40)
    for s in (10, 20):  # two look-alike void slices far apart on the axis
        put_class(ctx, s, VOID, 0.03)
        embedding[s] = [100.0, 0.0]
    put_class(ctx, 30, VOID, 0.02)
    embedding[30] = [0.0, 100.0]
    ctx.embedding = embedding
    _, plain, _ = select(plain_name, ctx, 2, min_distance=2)
    _, diverse, _ = select(diverse_name, ctx, 2, min_distance=2)
    assert {p.slice for p in plain} == {10, 20}
    assert {p.slice for p in diverse} == {10, 30}


def test_batch_fills_a_thin_rare_layer_that_greedy_picks_would_waste() -> None:
    # A rare layer in slices 63..69, best at 67. Taking 67 first, then 64 (greedy)
    # leaves no room for a third layer slice; 63, 66, 69 fit three.
    index = np.arange(100)
    scores = np.zeros(100)
    scores[63:70] = [0.5, 0.8, 0.9, 0.95, 1.0, 0.7, 0.5]
    picks = pick_batch(index, scores, 3, min_distance=3)
    assert sorted(p.slice for p in picks) == [63, 66, 69]
    assert [p.slice for p in picks][0] == 66  # best score first
    assert [p.rank for p in picks] == [1, 2, 3]


def test_batch_is_the_best_spaced_subset_by_brute_force() -> None:
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(4, 13))
        index = np.sort(rng.choice(40, n, replace=False))
        scores = rng.random(n).round(1)
        labelled = [int(s) for s in rng.choice(40, int(rng.integers(0, 3)))]
        k, gap = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        picked = [
            p.slice
            for p in pick_batch(index, scores, k, labelled=labelled, min_distance=gap)
        ]
        free = [i for i in range(n) if all(abs(index[i] - s) >= gap for s in labelled)]
        feasible = [
            c
            for m in range(k + 1)
            for c in itertools.combinations(free, m)
            if all(index[b] - index[a] >= gap for a, b in itertools.pairwise(c))
        ]
        most = max(len(c) for c in feasible)
        best = max(sum(scores[list(c)]) for c in feasible if len(c) == most)
        assert len(picked) == most, trial
        assert len(set(picked)) == len(picked)
        rows = [int(np.flatnonzero(index == s)[0]) for s in picked]
        assert np.isclose(scores[rows].sum(), best), trial
        assert all(abs(a - b) >= gap for a, b in itertools.combinations(picked, 2))
        assert all(abs(a - s) >= gap for a in picked for s in labelled)


def three_axes_context() -> AcquisitionContext:
    """Slices along z (0..19), y and x (0..9 each); void predicted in z 5 and
    z 12 (the best two), y 4 and x 7 (a little less). Slice z 0 is labelled."""
    codes = slice_codes(
        [SliceRef.of("z", i) for i in range(20)]
        + [SliceRef.of(a, i) for a in "yx" for i in range(10)]
    )
    ctx = make_context(
        n=40, labelled_counts=np.array([9000.0, 900.0, 90.0, 10.0]), labelled=[0]
    )
    ctx.index = codes
    ctx.labelled = [int(codes[0])]
    for row, share in ((5, 0.04), (12, 0.04), (24, 0.03), (37, 0.02)):
        put_class(ctx, row, VOID, share)
    return ctx


def test_axis_room_splits_a_batch_over_the_axes() -> None:
    ctx = three_axes_context()
    y4 = int(ctx.index[24])
    assert axis_room(ctx.index, 2) == {0: 1, 1: 1, 2: 1}
    assert axis_room(ctx.index, 4, [y4]) == {0: 2, 1: 1, 2: 2}
    assert axis_room(ctx.index[:20], 2) == {0: 2}  # one axis: no cap


def test_axis_room_by_share_keeps_each_axis_to_its_share_of_the_candidates() -> None:
    """Half the 40 candidates lie along z: of the labelled slices plus a batch
    of 2, z may hold half (rounded up), y and x a quarter each."""
    ctx = three_axes_context()
    z = [int(c) for c in ctx.index[:20]]
    y4 = int(ctx.index[24])
    assert axis_room(ctx.index, 2, labelled=z[:1]) == {0: 1, 1: 1, 2: 1}
    assert axis_room(ctx.index, 2, labelled=z[:3]) == {0: 0, 1: 1, 2: 1}
    assert axis_room(ctx.index, 4, [y4], labelled=[*z[:3], y4]) == {
        0: 1,
        1: 0,
        2: 2,
    }


@pytest.mark.parametrize("diversity", [0.0, 1.0])
def test_picks_respect_the_room_of_each_axis(diversity: float) -> None:
    ctx = three_axes_context()
    scores = score_slices("rareness", ctx)
    emb = np.eye(40) if diversity else None  # every slice equally far: scores decide
    plain = pick_batch(ctx.index, scores, 2, labelled=ctx.labelled, min_distance=2)
    assert {p.ref.axis_name for p in plain} == {"z"}
    spread = pick_batch(
        ctx.index, scores, 2, labelled=ctx.labelled, min_distance=2,
        embedding=emb, diversity=diversity, axis_room=axis_room(ctx.index, 2),
    )  # fmt: skip
    assert sorted(str(p.ref) for p in spread) == ["y:4", "z:5"] or sorted(
        str(p.ref) for p in spread
    ) == ["y:4", "z:12"]
    four = pick_batch(
        ctx.index, scores, 4, labelled=ctx.labelled, min_distance=2,
        axis_room={0: 2, 1: 1, 2: 1},
    )  # fmt: skip
    assert sorted(str(p.ref) for p in four) == ["x:7", "y:4", "z:12", "z:5"]


@pytest.mark.parametrize("diversity", [0.0, 1.0])
def test_the_axis_cap_yields_when_other_axes_cannot_fill_the_batch(
    diversity: float,
) -> None:
    """A thin volume: 2 z slices (1 apart, so one fits) and 12 y slices. A batch
    of 4 caps each axis at 2; z takes 1, so y takes the other 3."""
    index = slice_codes(
        [SliceRef.of("z", i) for i in range(2)]
        + [SliceRef.of("y", i) for i in range(12)]
    )
    scores = np.linspace(1.0, 0.5, len(index))  # z first
    emb = np.eye(len(index)) if diversity else None
    room = axis_room(index, 4)
    assert room == {0: 2, 1: 2}
    picks = pick_batch(
        index, scores, 4, min_distance=3, embedding=emb, diversity=diversity,
        axis_room=room,
    )  # fmt: skip
    axes = sorted(p.ref.axis_name for p in picks)
    assert axes == ["y", "y", "y", "z"]
    gaps = np.diff(sorted(p.ref.index for p in picks if p.ref.axis_name == "y"))
    assert (gaps >= 3).all()


@pytest.mark.parametrize(
    "name", ["rareness-discovery-axes", "rareness-discovery-spread"]
)
def test_rareness_discovery_axes_spreads_its_batch(name: str) -> None:
    ctx = three_axes_context()
    ctx.embedding = np.eye(40)  # every slice equally far: the scores decide
    _, plain, _ = select("rareness-discovery", ctx, 2, min_distance=2)
    _, spread, plan = select(name, ctx, 2, min_distance=2)
    assert sorted(str(p.ref) for p in plain) == ["z:12", "z:5"]
    assert {p.ref.axis_name for p in spread} == {"z", "y"}
    assert plan is not None and plan.exploit == 2


def test_rareness_discovery_share_leaves_an_axis_that_holds_its_share() -> None:
    """The three labelled slices lie along z, which has half the candidates:
    of 3 + 2 slices z holds its 3, so the batch goes to y and x, though the
    best scores lie along z."""
    ctx = three_axes_context()
    ctx.embedding = np.eye(40)
    ctx.labelled = [int(ctx.index[i]) for i in (0, 16, 19)]
    _, spread, _ = select("rareness-discovery-spread", ctx, 2, min_distance=2)
    _, share, _ = select("rareness-discovery-share", ctx, 2, min_distance=2)
    assert "z" in {p.ref.axis_name for p in spread}
    assert sorted(str(p.ref) for p in share) == ["x:7", "y:4"]
