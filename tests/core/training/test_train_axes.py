"""Training on slices along z, y and x of the same scan together."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.slice_refs import SliceRef, anisotropy_note
from napari_xrm_al.core.training.step_loop import RunOptions
from napari_xrm_al.core.training.train import train
from napari_xrm_al.core.training.trainset import load_labelled
from napari_xrm_al.errors import XrmError

MIXED = [SliceRef.of("z", 4), SliceRef.of("y", 30), SliceRef.of("x", 60)]


def test_crops_come_from_the_slices_of_every_axis(sample0) -> None:
    """Each axis's slice holds one class only: every class in the crops means
    every axis was drawn from, each with its own slice shape."""
    labels = np.zeros(sample0.labels.shape, np.uint8)
    labels[4, :20, :20] = 1
    labels[10:, 30, 70:90] = 2  # the slices do not cross
    labels[10:, 40:60, 60] = 3
    data = load_labelled(
        sample0.image, labels, [*MIXED, SliceRef.of("y", 80)], sample0.classes,
        pad_to=32,
    )  # fmt: skip
    assert data.refs == MIXED and data.empty == [SliceRef.of("y", 80)]
    assert [g.images.shape[2:] for g in data.groups] == [(96, 96), (32, 96), (32, 96)]
    assert data.counts.tolist() == [400, 440, 440, 0]
    _, crops = data.batch(60, 32, 0.5, np.random.default_rng(0))
    assert set(np.unique(crops)) == {-1, 0, 1, 2}  # dense ids: classes 1, 2, 3


def test_mixed_axis_training_learns(sample0, annotate, tiny_train_config) -> None:
    labels = annotate(sample0.labels, [4, 20], axis=0)
    labels[:, 30] = sample0.labels[:, 30] + 1
    labels[:, :, 60] = sample0.labels[:, :, 60] + 1
    refs = [SliceRef.of("z", 4), SliceRef.of("z", 20), *MIXED[1:]]
    config = dataclasses.replace(tiny_train_config, steps=60, batch_size=4)
    ckpt = run_to_end(
        train(
            sample0.image,
            labels,
            refs,
            sample0.classes,
            config=config,
            run=RunOptions(seed=1),
        )
    )
    assert ckpt.history["slices"] == [["z", 4], ["z", 20], ["y", 30], ["x", 60]]
    loss = ckpt.history["loss"]
    assert np.mean(loss[-10:]) < 0.8 * np.mean(loss[:10])


@pytest.mark.parametrize(
    ("voxel", "axes", "expected"),
    [
        ((1.0, 1.0, 1.0), {0, 1, 2}, None),
        ((3.0, 1.0, 1.0), {0}, None),  # z-slices: square pixels
        ((2.0, 1.0, 1.0), {0, 2}, None),  # 2:1 is still fine
        ((3.0, 1.0, 1.0), {0, 1}, "3.0:1"),
        (None, {0, 1, 2}, None),
    ],
)
def test_anisotropy_is_noted(voxel, axes, expected) -> None:
    note = anisotropy_note(voxel, axes)
    assert (note is None) if expected is None else (expected in note)


def test_strong_anisotropy_is_refused_unless_forced() -> None:
    with pytest.raises(XrmError, match=r"along z, x are refused: .* 5.0:1"):
        anisotropy_note((5.0, 1.0, 1.0), {0, 2})
    assert "5.0:1" in anisotropy_note((5.0, 1.0, 1.0), {0, 2}, force=True)
    with pytest.raises(XrmError, match=r"force it \('Allow'\)"):
        anisotropy_note((5.0, 1.0, 1.0), {0, 2}, force_option="'Allow'")
