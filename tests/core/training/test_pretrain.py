from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.model.checkpoint import load_checkpoint
from napari_xrm_al.core.model.network import SliceSegmenter
from napari_xrm_al.core.training.pretrain import (
    POOL_BOX,
    pretrain,
    region_pool,
    sample_regions,
)
from napari_xrm_al.core.training.step_loop import RunOptions
from napari_xrm_al.core.training.train import initial_model
from napari_xrm_al.errors import XrmError


def test_pretraining_loss_falls(sample0, tiny_pretrain_config):
    config = dataclasses.replace(
        tiny_pretrain_config, steps=100, lr=3e-3, features=(8, 16, 32)
    )
    events = []
    ckpt = run_to_end(
        pretrain(sample0.image, config=config, run=RunOptions(seed=0)), events.append
    )
    assert [e.step for e in events] == list(range(1, 101))
    raw = ckpt.history["loss"]
    chance = math.log(2 * config.batch_size - 1)  # NT-Xent of an untrained encoder
    assert np.mean(raw[-20:]) < np.mean(raw[:10]) - 0.3
    assert np.mean(raw[-20:]) < chance
    assert events[-1].loss < events[0].loss
    assert ckpt.kind == "encoder" and ckpt.classes is None


def test_encoder_initialises_the_segmenter(
    sample0, tiny_pretrain_config, tiny_train_config
):
    ckpt = run_to_end(pretrain(sample0.image, config=tiny_pretrain_config))
    model = initial_model(ckpt, sample0.classes, tiny_train_config)
    assert model.cfg.n_classes == 4
    for key, value in ckpt.state_dict.items():
        torch.testing.assert_close(model.state_dict()[key], value)
    fresh = SliceSegmenter(model.cfg)
    assert any(
        not torch.equal(fresh.state_dict()[k], v) for k, v in ckpt.state_dict.items()
    )


def test_close_saves_and_budget_stops(tmp_path, sample0, tiny_pretrain_config):
    out = tmp_path / "enc.pt"
    gen = pretrain(
        sample0.image,
        axis="x",
        config=dataclasses.replace(tiny_pretrain_config, steps=100),
        run=RunOptions(out=out),
    )
    next(gen)
    gen.close()
    ckpt = load_checkpoint(out, kind="encoder")
    assert ckpt.axis == "x" and ckpt.history["stopped"] == "cancelled"
    config = dataclasses.replace(tiny_pretrain_config, steps=100_000, time_budget_s=0.5)
    ckpt = run_to_end(pretrain(sample0.image, config=config))
    assert ckpt.history["stopped"] == "time budget" and ckpt.history["steps"] < 100_000


def test_regions_prefer_structure():
    pool = np.zeros((1, 1, 64, 128), np.float32)
    pool[0, 0, :, 64:] = np.random.default_rng(0).normal(size=(64, 64))
    regions = sample_regions(pool, 20, 16, np.random.default_rng(0))
    assert regions.shape == (20, 1, 16, 16)
    assert np.mean([r.std() > 0 for r in regions]) > 0.7


def test_pool_is_bounded_and_padded():
    vol = np.zeros((50, 20, 30), np.uint8)
    pool = region_pool(vol, "z", 1, 40, 20 * 30 * 3 * 10, np.random.default_rng(0))
    assert pool.shape == (10, 3, 40, 40)


def test_pool_of_huge_slices_reads_chunk_aligned_boxes(
    tmp_path, sparse_zarr, bounded_reads
):
    """From 20000² slices only boxes are read (with their context planes), one
    read each."""
    data = sparse_zarr(tmp_path / "big.zarr", (2, 20000, 20000), chunks=(1, 512, 512))
    data[1, 3000:3100, 7000:7100] = 5.0
    lazy = bounded_reads(data, limit=3 * POOL_BOX**2)
    pool = region_pool(lazy, "z", 1, 96, 32_000_000, np.random.default_rng(0))
    assert pool.shape == (10, 3, POOL_BOX, POOL_BOX)
    assert lazy.reads == 10 and lazy.voxels <= pool.size
    small = region_pool(lazy, "z", 1, 96, 3 * 300**2, np.random.default_rng(0))
    assert small.shape == (1, 3, 300, 300)


def test_pretraining_on_huge_sparse_slices_reads_only_boxes(
    tmp_path, sparse_zarr, bounded_reads, tiny_pretrain_config
):
    """A 2 × 20000 × 20000 scan (4.8 GB per slice with its context as float32):
    pretraining reads a normalisation sample and one box within the memory
    limit, never a slice, and takes seconds."""
    data = sparse_zarr(tmp_path / "big.zarr", (2, 20000, 20000), chunks=(1, 512, 512))
    data[0, 100:200, 100:200] = 5.0
    lazy = bounded_reads(data, limit=3 * POOL_BOX**2)
    config = dataclasses.replace(tiny_pretrain_config, pool_voxels=32_000_000)
    ckpt = run_to_end(
        pretrain(lazy, config=config, run=RunOptions(max_memory=8 * 2**20))
    )
    assert ckpt.history["pool_boxes"] == 1 and ckpt.history["steps"] == config.steps
    box = 8 * 2**20 // 4  # float32 voxels in the limit
    assert lazy.largest <= box and lazy.voxels <= box + 2_000_000


def test_pretraining_refuses_a_region_larger_than_the_limit_before_reading(
    tmp_path, sparse_zarr, bounded_reads, tiny_pretrain_config
):
    lazy = bounded_reads(sparse_zarr(tmp_path / "big.zarr", (2, 20000, 20000)), 0)
    config = dataclasses.replace(tiny_pretrain_config, region_size=1024)
    with pytest.raises(XrmError, match=r"One 1024 × 1024 region .* needs 12 MiB"):
        run_to_end(pretrain(lazy, config=config, run=RunOptions(max_memory=8 * 2**20)))
    assert lazy.reads == 0
