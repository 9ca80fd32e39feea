"""Fusing the predictions along z, y and x (``predict --fuse-axes``)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.inference.fused_prediction import fused_bytes, predict_fused
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
