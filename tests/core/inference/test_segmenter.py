"""The segmenter object: a network loaded from its checkpoint, with its metadata."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from napari_xrm_al.core.inference.segmenter import Segmenter
from napari_xrm_al.core.model.checkpoint import save_checkpoint
from napari_xrm_al.core.model.network import SliceSegmenter
from napari_xrm_al.errors import InputError, XrmError


def test_loaded_segmenter_predicts_like_the_saved_one(tmp_path, segmenter_ckpt):
    path = save_checkpoint(tmp_path / "model.pt", segmenter_ckpt)
    segmenter = Segmenter.from_checkpoint(path, device="cpu")
    assert segmenter.classes == segmenter_ckpt.classes
    assert segmenter.normalisation == segmenter_ckpt.normalisation
    assert segmenter.model_config == segmenter_ckpt.model_config
    assert segmenter.axis == "y" and segmenter.context == 1
    assert segmenter.checkpoint.provenance["value"] == 1.5
    assert segmenter.device == torch.device("cpu")
    assert not segmenter.net.training
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(
            segmenter.net(x), Segmenter.build(segmenter_ckpt, "cpu").net(x)
        )


def test_a_checkpoint_already_read_is_not_read_again(tmp_path, segmenter_ckpt):
    unread = tmp_path / "never-written.pt"
    segmenter = Segmenter.from_checkpoint(unread, checkpoint=segmenter_ckpt)
    assert segmenter.checkpoint is segmenter_ckpt


def test_weights_that_do_not_fit_are_reported(tmp_path, segmenter_ckpt):
    segmenter_ckpt.state_dict = {
        k: v for i, (k, v) in enumerate(segmenter_ckpt.state_dict.items()) if i
    }
    path = save_checkpoint(tmp_path / "m.pt", segmenter_ckpt)
    with pytest.raises(InputError, match="do not fit") as err:
        Segmenter.from_checkpoint(path)
    assert str(err.value).startswith(f"{path}: ")


def test_encoders_and_other_networks_are_refused(
    tmp_path, segmenter_ckpt, tiny_model_config
):
    encoder = dataclasses.replace(segmenter_ckpt, kind="encoder", classes=None)
    net = SliceSegmenter(tiny_model_config)
    with pytest.raises(XrmError, match="Expected a segmenter checkpoint"):
        Segmenter(net, encoder)
    with pytest.raises(XrmError, match="Expected a segmenter checkpoint"):
        Segmenter.build(encoder)
    with pytest.raises(InputError, match="kind 'segmenter'"):
        Segmenter.from_checkpoint(save_checkpoint(tmp_path / "e.pt", encoder))
    other = SliceSegmenter(dataclasses.replace(tiny_model_config, context=2))
    with pytest.raises(XrmError, match="does not match"):
        Segmenter(other, segmenter_ckpt)
