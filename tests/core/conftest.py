"""Tiny volumes and models shared by the engine tests (seconds each)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.inference.segmenter import Segmenter
from napari_xrm_al.core.inference.slice_inference import SliceInference
from napari_xrm_al.core.model.checkpoint import Checkpoint
from napari_xrm_al.core.model.network import ModelConfig, SliceSegmenter
from napari_xrm_al.core.model.normalization import Normalisation
from napari_xrm_al.core.synthetic.sample import HbmSample, make_hbm_sample
from napari_xrm_al.core.training.augment import AugmentConfig
from napari_xrm_al.core.training.configs import PretrainConfig, TrainConfig

#: Feature widths of the tiny test network (UNet, one per level).
TINY_FEATURES = (4, 8, 16)
#: Small sample volumes: (z, y, x).
SMALL_SHAPE = (32, 96, 96)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every engine test on one torch thread (``one_thread``)."""


@pytest.fixture(scope="session")
def sample0() -> HbmSample:
    """A small synthetic HBM scan (seed 0)."""
    return make_hbm_sample(seed=0, shape=SMALL_SHAPE)


@pytest.fixture(scope="session")
def sample1() -> HbmSample:
    """Another scan (seed 1): a domain shift from ``sample0``."""
    return make_hbm_sample(seed=1, shape=SMALL_SHAPE)


@pytest.fixture
def tiny_model_config() -> ModelConfig:
    return ModelConfig(n_classes=4, context=1, features=TINY_FEATURES)


@pytest.fixture
def segmenter_ckpt(tiny_model_config) -> Checkpoint:
    """A segmenter checkpoint of an untrained tiny net (slices along y)."""
    torch.manual_seed(0)
    model = SliceSegmenter(tiny_model_config)
    return Checkpoint(
        kind="segmenter",
        model_config=tiny_model_config,
        state_dict=model.state_dict(),
        normalisation=Normalisation(10.0, 250.0),
        axis="y",
        classes=ClassTable.hbm(),
        provenance={"image_shape": (4, 5, 6), "value": np.float32(1.5)},
        history={"loss": [1.0, 0.5]},
    )


@pytest.fixture
def tiny_train_config() -> TrainConfig:
    return TrainConfig(features=TINY_FEATURES, steps=4, batch_size=2, crop_size=32)


@pytest.fixture
def tiny_pretrain_config() -> PretrainConfig:
    return PretrainConfig(
        features=TINY_FEATURES,
        steps=4,
        time_budget_s=None,
        batch_size=8,
        region_size=32,
        view_size=32,
        pool_voxels=200_000,
    )


def _annotate(labels: np.ndarray, slices, axis: int = 0) -> np.ndarray:
    out = np.zeros(labels.shape, np.uint8)
    key = [slice(None)] * 3
    for s in slices:
        key[axis] = s
        out[tuple(key)] = labels[tuple(key)] + 1
    return out


@pytest.fixture
def annotate():
    """``annotate(dense, slices, axis=0)``: sparse annotation volume (ids 1..C,
    0 elsewhere) with the given slices of the dense ground truth."""
    return _annotate


@pytest.fixture
def no_augment() -> AugmentConfig:
    """Augmentation switched off."""
    return AugmentConfig(
        flips=False,
        rot90=False,
        zoom=(1.0, 1.0),
        intensity_scale=0.0,
        intensity_shift=0.0,
        gamma=(1.0, 1.0),
        histogram_shift=0.0,
        noise_std=0.0,
        blur_prob=0.0,
    )


class BoundedReads:
    """A lazy array that fails any read of more than ``limit`` voxels and
    records the largest read, the number of reads and the voxels read."""

    def __init__(self, array, limit: int) -> None:
        self.array, self.limit = array, limit
        self.largest = self.reads = self.voxels = 0
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, 3
        self.chunks = getattr(array, "chunks", (1, *array.shape[1:]))

    def __getitem__(self, key):
        size = math.prod(
            len(range(*k.indices(n))) if isinstance(k, slice) else 1
            for k, n in zip(key, self.shape, strict=True)
        )
        assert size <= self.limit, f"read of {size} voxels: {key}"
        self.largest, self.reads = max(self.largest, size), self.reads + 1
        self.voxels += size
        return self.array[key]


@pytest.fixture
def bounded_reads():
    """``bounded_reads(array, limit)``: ``array`` failing any read of more than
    ``limit`` voxels, counting its reads (:class:`BoundedReads`)."""
    return BoundedReads


def _untrained_segmenter(config: ModelConfig, seed: int = 0, **changes):
    torch.manual_seed(seed)
    cfg = dataclasses.replace(config, **changes)
    model = SliceSegmenter(cfg)
    # Random BatchNorm statistics so the untrained net gives varied classes.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    ckpt = Checkpoint(
        "segmenter", cfg, model.state_dict(), Normalisation(0.0, 1.0), "z",
        ClassTable.hbm(),
    )  # fmt: skip
    return Segmenter(model.eval(), ckpt)


@pytest.fixture(scope="session")
def untrained_segmenter():
    """``untrained_segmenter(config, seed=0, **changes)``: a :class:`Segmenter` of
    an untrained net with random BatchNorm statistics (varied classes)."""
    return _untrained_segmenter


def _smooth_volume(shape: tuple[int, int, int]) -> np.ndarray:
    rng = np.random.default_rng(0)
    z, y, x = np.meshgrid(*(np.linspace(0, 3, n) for n in shape), indexing="ij")
    smooth = np.sin(2 * z + y) * np.cos(3 * x - y)
    return (smooth + 0.3 * rng.standard_normal(shape)).astype(np.float32)


@pytest.fixture(scope="session")
def smooth_volume():
    """``smooth_volume(shape)``: a float32 volume of smooth structures plus noise."""
    return _smooth_volume


@pytest.fixture
def calibrations(monkeypatch) -> list[tuple[int, ...]]:
    """The shapes of the batches on which inference calibrates its precision
    (``SliceInference.calibrate``) from now on, one per calibration."""
    seen: list[tuple[int, ...]] = []
    calibrate = SliceInference.calibrate

    def counted(engine, x):
        seen.append(tuple(x.shape))
        return calibrate(engine, x)

    monkeypatch.setattr(SliceInference, "calibrate", counted)
    return seen
