"""Slice embeddings from a pretrained encoder, read lazily."""

from __future__ import annotations

import numpy as np
import torch
import zarr

from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.inference.embedding import embed_slices, encoder_network
from napari_xrm_al.core.slices import read_slices
from napari_xrm_al.core.training.pretrain import pretrain


def test_embeddings_match_the_encoder_on_a_lazy_volume(
    tmp_path, sample0, tiny_pretrain_config
):
    ckpt = run_to_end(pretrain(sample0.image, config=tiny_pretrain_config))
    lazy = zarr.create_array(
        tmp_path / "scan.zarr",
        shape=sample0.image.shape,
        chunks=(1, *sample0.image.shape[1:]),
        dtype=sample0.image.dtype,
    )
    lazy[...] = sample0.image
    events = []
    index, emb, spread = run_to_end(
        embed_slices(ckpt, lazy, axis="y", batch_size=5), events.append
    )
    n = sample0.image.shape[1]
    assert np.array_equal(index, np.arange(n))
    assert emb.shape == (n, encoder_network(ckpt).embedding_dim)
    assert spread.shape == (n,) and (spread >= 0).all()
    assert events[-1].step == events[-1].total == n
    # The same numbers as the encoder applied to those slices directly.
    picked = [0, n // 2, n - 1]
    x = read_slices(sample0.image, picked, "y", ckpt.model_config.context)
    net = encoder_network(ckpt)
    with torch.inference_mode():
        x = torch.from_numpy(ckpt.normalisation.apply(x))
        direct = net.encode(x)
        features = net.encoder_features(x)
    np.testing.assert_allclose(emb[picked], direct.numpy(), rtol=1e-4, atol=1e-5)
    # The spread: the feature map's variance over the slice, mean over channels.
    var = features.flatten(2).var(dim=2, correction=0).mean(dim=1)
    np.testing.assert_allclose(spread[picked], var.numpy(), rtol=1e-3, atol=1e-6)
    # Different structures embed differently.
    assert np.linalg.norm(emb[0] - emb[n // 2]) > 0
