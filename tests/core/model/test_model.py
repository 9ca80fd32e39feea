from __future__ import annotations

import pytest
import torch

from napari_xrm_al.core.model.network import (
    ModelConfig,
    SliceSegmenter,
    enable_mc_dropout,
    pick_device,
)
from napari_xrm_al.errors import XrmError

ARCH_FEATURES = {
    "basicunet": (4, 8, 8, 16, 16, 8),
    "unet": (4, 8, 16),
    "flexunet": (16, 8, 8, 8, 8),
}


@pytest.mark.parametrize("arch", sorted(ARCH_FEATURES))
def test_any_input_size_gives_logits_of_that_size(arch):
    cfg = ModelConfig(3, context=2, features=ARCH_FEATURES[arch], arch=arch)
    model = SliceSegmenter(cfg).eval()
    x = torch.randn(2, cfg.in_channels, 37, 50)
    with torch.no_grad():
        assert model(x).shape == (2, 3, 37, 50)
        assert model.encode(x).shape == (2, model.embedding_dim)


@pytest.mark.parametrize("arch", ["basicunet", "unet"])
def test_encoder_weights_transfer_and_decoder_does_not(arch):
    cfg = ModelConfig(4, features=ARCH_FEATURES[arch], arch=arch)
    torch.manual_seed(0)
    a = SliceSegmenter(cfg).eval()
    torch.manual_seed(1)
    b = SliceSegmenter(cfg.with_classes(6)).eval()
    x = torch.randn(1, cfg.in_channels, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(a.encode(x), b.encode(x))
        b.load_encoder_state_dict(a.encoder_state_dict())
        torch.testing.assert_close(a.encode(x), b.encode(x))
    decoder = [k for k in a.state_dict() if not a.is_encoder_key(k)]
    assert decoder and set(a.encoder_state_dict()).isdisjoint(decoder)


def test_encoder_of_another_shape_is_refused():
    a = SliceSegmenter(ModelConfig(4, context=1, features=ARCH_FEATURES["unet"]))
    b = SliceSegmenter(ModelConfig(4, context=0, features=ARCH_FEATURES["unet"]))
    with pytest.raises(XrmError, match="does not fit"):
        b.load_encoder_state_dict(a.encoder_state_dict())


def test_mc_dropout_samples_and_restores_mode():
    model = SliceSegmenter(
        ModelConfig(3, features=ARCH_FEATURES["basicunet"], dropout=0.5)
    )
    model.train()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad(), enable_mc_dropout(model):
        assert not model.training
        assert not torch.allclose(model(x), model(x))
    assert model.training
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))


def test_config_round_trip_and_errors():
    cfg = ModelConfig(5, context=0, features=(8, 8, 16, 32, 64, 8), dropout=0.2)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(XrmError, match="needs 6"):
        ModelConfig(3, arch="basicunet", features=(8, 16))
    with pytest.raises(XrmError, match="architecture"):
        ModelConfig(3, arch="resnet")
    with pytest.raises(XrmError, match="at least 2 classes"):
        ModelConfig(1)


def test_pick_device():
    assert pick_device("cpu").type == "cpu"
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(XrmError, match="CUDA"):
            pick_device("cuda")
