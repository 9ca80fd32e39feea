"""First picks (k-centre on the encoder's embeddings) on inputs with known answers."""

from __future__ import annotations

import numpy as np

from napari_xrm_al.core.al.first_picks import first_picks


def clustered_embedding() -> np.ndarray:
    """30 slices in three blocks of ten, each block around its own point."""
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    return np.repeat(centres, 10, axis=0) + rng.normal(0, 0.1, (30, 2))


def test_first_picks_cover_every_cluster() -> None:
    emb = clustered_embedding()
    for seed in range(5):
        scores, picks = first_picks(np.arange(30), emb, 3, min_distance=2, seed=seed)
        slices = [p.slice for p in picks]
        assert sorted(s // 10 for s in slices) == [0, 1, 2]
        assert [p.rank for p in picks] == [1, 2, 3]
        # The first pick has nothing to be far from; later ones are far away.
        assert picks[0].score == 0.0 and min(p.score for p in picks[1:]) > 5
        assert np.allclose(scores[slices], 0.0)
        assert scores.max() < 1.0  # every slice is now near a pick


def test_first_picks_prefer_slices_that_hold_many_structures() -> None:
    """Ten cross-sections (everything, high spread) at (0, 0), ten uniform die
    slices far away at (10, 0), ten bump-layer slices at (0, 8): plain k-centre
    goes from a cross-section to the far die; weighted by the spread it goes
    to the bump layer, and it starts from a cross-section."""
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 8.0]])
    emb = np.repeat(centres, 10, axis=0) + rng.normal(0, 0.1, (30, 2))
    spread = np.repeat([4.0, 0.01, 1.0], 10)
    _, weighted = first_picks(np.arange(30), emb, 2, spread=spread, min_distance=2)
    assert [p.slice // 10 for p in weighted] == [0, 2]
    _, plain = first_picks(
        np.arange(30), emb, 1, labelled=[weighted[0].slice], min_distance=2
    )
    assert plain[0].slice // 10 == 1  # the far, uniform die


def test_first_picks_start_from_labelled_slices() -> None:
    emb = clustered_embedding()
    scores, picks = first_picks(
        np.arange(30), emb, 2, labelled=[3, 14], min_distance=3, seed=0
    )
    assert len(picks) == 2
    assert picks[0].slice // 10 == 2  # the only cluster without a labelled slice
    assert all(abs(p.slice - s) >= 3 for p in picks for s in (3, 14))
    assert scores[3] == 0.0 and scores[14] == 0.0
