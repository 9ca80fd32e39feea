"""Fusing the predictions along z, y and x (``predict --fuse-axes``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.inference.fused_prediction import (
    fused_bytes,
    predict_fused,
    prediction_axes,
)
from napari_xrm_al.core.inference.predict import PredictConfig
from napari_xrm_al.errors import XrmError
from napari_xrm_al.io.mask_reader import read_mask

SHAPE = (10, 24, 20)
FLOAT32 = PredictConfig(precision="float32")


@pytest.fixture(scope="module")
def volume(smooth_volume):
    return smooth_volume(SHAPE)


def along(segmenter, volume, axis) -> np.ndarray:
    out = np.zeros(SHAPE, np.uint8)
    run_to_end(
        segmenter.predict_volume(
            volume, PredictConfig(axis=axis, precision="float32"), out=out
        )
    )
    return out


def fused(segmenter, volume, axes, **kw) -> np.ndarray:
    out = np.zeros(SHAPE, np.uint8)
    run_to_end(predict_fused(segmenter, volume, axes, FLOAT32, out=out, **kw))
    return out


@pytest.mark.parametrize("axis", ["z", "y", "x"])
def test_one_axis_fused_is_that_axis_prediction(segmenter, volume, axis) -> None:
    np.testing.assert_array_equal(
        fused(segmenter, volume, [axis]), along(segmenter, volume, axis)
    )


def test_three_axes_fused_keep_what_every_axis_agrees_on(
    segmenter, volume, tmp_path
) -> None:
    single = [along(segmenter, volume, a) for a in "zyx"]
    result = fused(segmenter, volume, ["x", "y", "z"])
    agree = (single[0] == single[1]) & (single[1] == single[2])
    assert agree.any() and not agree.all()
    np.testing.assert_array_equal(result[agree], single[0][agree])
    assert not (result == single[0]).all()  # the other axes changed something

    path = tmp_path / "fused.ome.zarr"
    done = run_to_end(predict_fused(segmenter, volume, "zyx", FLOAT32, out=str(path)))
    assert done.axis == "z,y,x" and done.n_slices == sum(SHAPE)
    np.testing.assert_array_equal(np.asarray(read_mask(path).data), result)


def test_fusing_a_volume_too_large_is_refused_before_any_work(
    segmenter, volume
) -> None:
    need = fused_bytes(SHAPE, 4)
    with pytest.raises(XrmError, match="predict along one axis"):
        fused(segmenter, volume, "zyx", max_fused_memory=need - 1)


def test_prediction_follows_the_axes_of_the_training_slices(segmenter) -> None:
    ckpt = dataclasses.replace(
        segmenter.checkpoint, axis="z", history={"slices": [["y", 3], ["y", 9]]}
    )
    assert prediction_axes(ckpt, SHAPE) == (("y",), "")
    ckpt.history["slices"].append(["z", 4])
    assert prediction_axes(ckpt, SHAPE) == (("y", "z"), "")
    need = fused_bytes(SHAPE, 4)
    axes, note = prediction_axes(ckpt, SHAPE, max_fused_memory=need - 1)
    assert axes == ("y",) and "fusing them needs about" in note


def test_a_fused_run_has_one_progress_bar(segmenter, volume) -> None:
    events = []
    out = np.zeros(SHAPE, np.uint8)
    run_to_end(predict_fused(segmenter, volume, "zyx", FLOAT32, out=out), events.append)
    assert {e.total for e in events} == {sum(SHAPE)}  # slices of every axis
    steps = [e.step for e in events]
    assert steps == sorted(steps) and steps[-1] == events[-1].total
    assert events[0].message.startswith("along z (1/3)")
    assert events[-1].message.startswith("along x (3/3)")


def test_a_volume_is_predicted_along_the_main_training_axis_by_default(
    segmenter, volume
) -> None:
    ckpt = dataclasses.replace(
        segmenter.checkpoint, axis="z", history={"slices": [["x", 3], ["x", 9]]}
    )
    other = type(segmenter)(segmenter.net, ckpt)
    out = np.zeros(SHAPE, np.uint8)
    result = run_to_end(other.predict_volume(volume, FLOAT32, out=out))
    assert result.axis == "x"
    np.testing.assert_array_equal(out, along(segmenter, volume, "x"))


def test_a_stopped_fused_prediction_leaves_no_output(segmenter, volume, tmp_path):
    out, unsure = tmp_path / "fused.ome.zarr", tmp_path / "unsure.zarr"
    job = predict_fused(
        segmenter, volume, "zyx", FLOAT32, out=out, uncertainty_out=unsure
    )
    next(job)
    job.close()
    assert list(tmp_path.iterdir()) == []


def test_the_precision_is_calibrated_once_for_every_pass(
    segmenter, volume, calibrations
) -> None:
    out = np.zeros(SHAPE, np.uint8)
    result = run_to_end(predict_fused(segmenter, volume, "zyx", out=out))
    assert len(calibrations) == 1 and result.precision in ("float32", "bfloat16")
