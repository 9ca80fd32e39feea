"""Ranking the slices along z, y and x together."""

from __future__ import annotations

import numpy as np

from napari_xrm_al.core.al.ranking import rank_summary, summarise
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.slice_refs import SliceRef, ref_of_code, slice_codes

SHAPE = (12, 20, 28)


def test_three_axes_are_scored_and_picked_apart_along_each(
    tmp_path, tiny_model_file
) -> None:
    model = tiny_model_file(tmp_path / "m.pt")
    volume = np.random.default_rng(0).random(SHAPE).astype(np.float32)
    summary = run_to_end(
        summarise(model, volume, axes=["x", "z", "y"], cache_dir=tmp_path)
    )
    scored = [ref_of_code(c) for c in summary.index]
    assert [sum(r.axis == a for r in scored) for a in range(3)] == list(SHAPE)
    assert len(list(tmp_path.glob("summary-*.npz"))) == 3  # one cache per axis

    labelled = [SliceRef.of("z", 5), SliceRef.of("x", 10)]
    ranking = rank_summary(
        summary,
        "entropy",
        12,
        labelled=slice_codes(labelled).tolist(),
        labelled_counts=np.ones(4),
        min_distance=3,
    )
    picks = [p.ref for p in ranking.picks]
    # 12 picks 3 apart: z holds at most 3 beside z:5, so they spread over axes.
    assert len(picks) == 12 and len({r.axis for r in picks}) >= 2
    for axis in range(3):
        along = sorted(r.index for r in [*picks, *labelled] if r.axis == axis)
        assert all(b - a >= 3 for a, b in zip(along, along[1:], strict=False))
    assert ranking.axes == ["z", "y", "x"]

    again = run_to_end(summarise(model, volume, axes="zyx", cache_dir=tmp_path))
    np.testing.assert_array_equal(again.index, summary.index)  # from the caches
    z_only = run_to_end(summarise(model, volume, axes="z", cache_dir=tmp_path))
    np.testing.assert_array_equal(z_only.mean_entropy, summary.mean_entropy[:12])


def test_one_model_is_calibrated_once_for_all_axes(
    tmp_path, tiny_model_file, calibrations
) -> None:
    model = tiny_model_file(tmp_path / "m.pt")
    volume = np.random.default_rng(0).random(SHAPE).astype(np.float32)
    summary = run_to_end(summarise(model, volume, axes="zyx"))
    assert len(summary.index) == sum(SHAPE) and len(calibrations) == 1
