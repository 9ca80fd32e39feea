"""Ensembles of segmenters: averaged probabilities, shares of the batch, checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.inference.segmenter import Segmenter
from napari_xrm_al.core.model.checkpoint import save_checkpoint
from napari_xrm_al.core.model.ensemble import (
    SegmenterEnsemble,
    build_network,
    split_loss,
)
from napari_xrm_al.core.model.network import ModelConfig, SliceSegmenter
from napari_xrm_al.core.training.losses import MaskedSegLoss
from napari_xrm_al.core.training.pretrain import pretrain
from napari_xrm_al.core.training.train import train
from napari_xrm_al.errors import XrmError

CFG = ModelConfig(n_classes=3, features=(8, 16), members=3)


def test_eval_output_is_the_log_of_the_mean_member_probabilities():
    torch.manual_seed(0)
    model = build_network(CFG).eval()
    assert isinstance(model, SegmenterEnsemble) and len(model.members) == 3
    x = torch.randn(2, CFG.in_channels, 20, 28)
    with torch.no_grad():
        mean = sum(m(x).softmax(1) for m in model.members) / 3
        probs = model(x).softmax(1)
        single = model.members[0](x).softmax(1)
    torch.testing.assert_close(probs, mean)
    assert float((probs - single).abs().max()) > 1e-3
    assert isinstance(
        build_network(dataclasses.replace(CFG, members=1)), SliceSegmenter
    )
    with pytest.raises(XrmError, match="at least 1 member"):
        dataclasses.replace(CFG, members=0)


def test_in_training_each_member_sees_only_its_share_of_the_batch():
    torch.manual_seed(0)
    model = build_network(CFG).train()
    x = torch.randn(7, CFG.in_channels, 16, 16, requires_grad=True)
    logits = model(x)
    assert logits.shape == (7, 3, 16, 16)
    # The second member's share is rows 3..4 (tensor_split of 7 into 3: 3, 2, 2).
    logits[3:5].sum().backward()
    touched = [
        any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
        for m in model.members
    ]
    assert touched == [False, True, False]
    assert float(x.grad[:3].abs().sum()) == 0 and float(x.grad[5:].abs().sum()) == 0


def test_split_loss_is_the_mean_of_the_members_losses():
    loss_fn = MaskedSegLoss(3)
    logits = torch.randn(6, 3, 8, 8)
    target = torch.randint(0, 3, (6, 8, 8))
    whole = split_loss(loss_fn, logits, target, 1)
    torch.testing.assert_close(whole, loss_fn(logits, target))
    each = [loss_fn(logits[i : i + 2], target[i : i + 2]) for i in (0, 2, 4)]
    torch.testing.assert_close(
        split_loss(loss_fn, logits, target, 3), torch.stack(each).mean()
    )


def test_an_ensemble_trains_from_the_encoder_saves_and_predicts(
    tmp_path, sample0, tiny_train_config, tiny_pretrain_config
):
    encoder = run_to_end(pretrain(sample0.image, config=tiny_pretrain_config))
    config = dataclasses.replace(tiny_train_config, steps=40, batch_size=6, ensemble=3)
    ckpt = run_to_end(
        train(
            sample0.image,
            sample0.labels,
            [3, 12, 20],
            sample0.classes,
            dense_labels=True,
            init=encoder,
            config=config,
        )
    )
    assert ckpt.model_config.members == 3
    losses = ckpt.history["loss"]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    # Every member starts from the pretrained encoder and ends somewhere else.
    enc_key = next(iter(encoder.state_dict))
    starts = [ckpt.state_dict[f"members.{i}.{enc_key}"] for i in range(3)]
    assert not torch.equal(starts[0], starts[1])
    path = save_checkpoint(tmp_path / "ensemble.pt", ckpt)
    loaded = Segmenter.from_checkpoint(path)
    assert isinstance(loaded.net, SegmenterEnsemble)
    assert loaded.model_config.members == 3
    raw = sample0.image[10:13][None].astype(np.float32)
    with loaded.inference(precision="float32") as engine:
        probs = engine.probabilities(engine.prepare(raw))
    assert probs.shape[1] == len(sample0.classes)
    torch.testing.assert_close(probs.sum(1), torch.ones_like(probs[:, 0]))


def test_an_ensemble_needs_a_crop_per_member(sample0, tiny_train_config):
    config = dataclasses.replace(tiny_train_config, batch_size=2, ensemble=3)
    gen = train(
        sample0.image, sample0.labels, [3], sample0.classes, dense_labels=True,
        config=config,
    )  # fmt: skip
    with pytest.raises(XrmError, match=r"fewer crops per step \(2\) than networks"):
        run_to_end(gen)
