"""Test-time augmentation of the inference engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.inference.predict import PredictConfig
from napari_xrm_al.core.inference.slice_inference import tta_transforms
from napari_xrm_al.errors import XrmError


def _probs(segmenter, raw: np.ndarray, tta: str) -> torch.Tensor:
    with segmenter.inference(precision="float32", tta=tta) as e:
        return e.probabilities(e.prepare(raw))


def test_transforms_are_the_flip_and_dihedral_groups():
    assert tta_transforms("none") == [(0, False)]
    assert len(set(tta_transforms("flips"))) == 4
    assert len(set(tta_transforms("dihedral"))) == 8
    with pytest.raises(XrmError, match="test-time augmentation"):
        tta_transforms("rotate")


@pytest.mark.parametrize("tta", ["flips", "dihedral"])
def test_tta_is_equivariant_to_flips(segmenter, tta):
    raw = np.random.default_rng(0).normal(size=(2, 3, 24, 40)).astype(np.float32)
    flipped = np.ascontiguousarray(raw[..., ::-1])
    plain = _probs(segmenter, raw, "none")
    # The untrained net itself is not flip-equivariant: the check below can fail.
    assert not torch.allclose(_probs(segmenter, flipped, "none").flip(-1), plain)
    p = _probs(segmenter, raw, tta)
    assert p.shape == plain.shape
    torch.testing.assert_close(p.sum(1), torch.ones(2, 24, 40))
    torch.testing.assert_close(_probs(segmenter, flipped, tta).flip(-1), p)
    if tta == "dihedral":
        square = np.ascontiguousarray(raw[..., :24])
        turned = np.ascontiguousarray(np.rot90(square, 1, (-2, -1)))
        torch.testing.assert_close(
            _probs(segmenter, turned, tta).rot90(-1, (-2, -1)),
            _probs(segmenter, square, tta),
        )


def test_predict_volume_and_slices_use_tta(segmenter, smooth_volume):
    data = smooth_volume((6, 20, 28))
    out = np.zeros(data.shape, np.uint8)
    run_to_end(
        segmenter.predict_volume(
            data,
            PredictConfig(summaries=False, precision="float32", tta="dihedral"),
            out=out,
        )
    )
    idx = list(range(data.shape[0]))
    with_tta = segmenter.predict_slices(
        data, idx, PredictConfig(precision="float32", tta="dihedral")
    )
    without = segmenter.predict_slices(data, idx, PredictConfig(precision="float32"))
    assert not np.array_equal(with_tta.argmax(1), without.argmax(1))
    np.testing.assert_array_equal(out, with_tta.argmax(1) + 1)
