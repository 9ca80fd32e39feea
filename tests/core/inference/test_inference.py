"""Test-time augmentation of the inference engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.inference.predict import predict_slices, predict_volume
from napari_xrm_al.core.inference.slice_inference import SliceInference, tta_transforms
from napari_xrm_al.errors import XrmError


@pytest.fixture
def model_ckpt(untrained_segmenter, tiny_model_config):
    return untrained_segmenter(tiny_model_config)


def _probs(model, ckpt, raw: np.ndarray, tta: str) -> torch.Tensor:
    with SliceInference(model, ckpt.normalisation, precision="float32", tta=tta) as e:
        return e.probabilities(e.prepare(raw))


def test_transforms_are_the_flip_and_dihedral_groups():
    assert tta_transforms("none") == [(0, False)]
    assert len(set(tta_transforms("flips"))) == 4
    assert len(set(tta_transforms("dihedral"))) == 8
    with pytest.raises(XrmError, match="test-time augmentation"):
        tta_transforms("rotate")


@pytest.mark.parametrize("tta", ["flips", "dihedral"])
def test_tta_is_equivariant_to_flips(model_ckpt, tta):
    model, ckpt = model_ckpt
    raw = np.random.default_rng(0).normal(size=(2, 3, 24, 40)).astype(np.float32)
    flipped = np.ascontiguousarray(raw[..., ::-1])
    plain = _probs(model, ckpt, raw, "none")
    # The untrained net itself is not flip-equivariant: the check below can fail.
    assert not torch.allclose(_probs(model, ckpt, flipped, "none").flip(-1), plain)
    p = _probs(model, ckpt, raw, tta)
    assert p.shape == plain.shape
    torch.testing.assert_close(p.sum(1), torch.ones(2, 24, 40))
    torch.testing.assert_close(_probs(model, ckpt, flipped, tta).flip(-1), p)
    if tta == "dihedral":
        square = np.ascontiguousarray(raw[..., :24])
        turned = np.ascontiguousarray(np.rot90(square, 1, (-2, -1)))
        torch.testing.assert_close(
            _probs(model, ckpt, turned, tta).rot90(-1, (-2, -1)),
            _probs(model, ckpt, square, tta),
        )


def test_predict_volume_and_slices_use_tta(model_ckpt, smooth_volume):
    model, ckpt = model_ckpt
    data = smooth_volume((6, 20, 28))
    out = np.zeros(data.shape, np.uint8)
    run_to_end(
        predict_volume(
            model,
            ckpt,
            data,
            out=out,
            summaries=False,
            precision="float32",
            tta="dihedral",
        )
    )
    idx = list(range(data.shape[0]))
    ax = ckpt.axis
    with_tta = predict_slices(
        model, ckpt, data, idx, ax, precision="float32", tta="dihedral"
    )
    without = predict_slices(model, ckpt, data, idx, ax, precision="float32")
    assert not np.array_equal(with_tta.argmax(1), without.argmax(1))
    np.testing.assert_array_equal(out, with_tta.argmax(1) + 1)
