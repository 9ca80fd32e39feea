"""Rare-class copy-paste into training crops."""

from __future__ import annotations

import dataclasses

import numpy as np

from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.training import train as train_module
from napari_xrm_al.core.training.rare_paste import RING, cut_stamps, paste_stamps

HOST, OTHER, RARE = 2, 1, 3


def _slice_with_objects() -> tuple[np.ndarray, np.ndarray]:
    """One 2-channel slice: a host region holding one rare 3×3 object, a
    second rare object inside unannotated pixels (no host: left out)."""
    labels = np.full((1, 40, 40), OTHER, np.int16)
    labels[0, 5:20, 5:20] = HOST
    labels[0, 10:13, 10:13] = RARE
    labels[0, 25:40, 25:40] = -1
    labels[0, 30:32, 30:32] = RARE
    images = np.zeros((1, 2, 40, 40), np.float32)
    images[0, 0] = 1.0 + labels[0]
    images[0, 1] = 10.0 + labels[0]
    return images, labels


def test_cut_stamps_keeps_objects_with_a_host():
    images, labels = _slice_with_objects()
    stamps = cut_stamps(images, labels, [RARE])
    assert len(stamps) == 1
    (stamp,) = stamps
    assert stamp.host == HOST
    assert stamp.footprint.shape == (3 + 2 * RING, 3 + 2 * RING)
    assert (stamp.labels[stamp.footprint] == RARE).sum() == 9
    np.testing.assert_array_equal(stamp.image[1], 10.0 + stamp.labels)


def test_paste_lands_on_the_host_class_only():
    images, labels = _slice_with_objects()
    stamps = cut_stamps(images, labels, [RARE])
    crops = np.zeros((6, 2, 24, 24), np.float32)
    crop_labels = np.full((6, 24, 24), OTHER, np.int16)
    crop_labels[:, 2:14, 4:20] = HOST
    crop_labels[5] = OTHER  # no host: nothing pasted
    before = crop_labels.copy()
    rng = np.random.default_rng(0)
    paste_stamps(crops, crop_labels, stamps, 1.0, rng)
    changed = crop_labels != before
    assert (crop_labels[:5] == RARE).sum(axis=(1, 2)).min() >= 9
    assert not changed[5].any()
    assert (before[changed] == HOST).all()
    # Grey values travel with the labels, in every channel.
    np.testing.assert_array_equal(crops[:, 1][changed], 10.0 + crop_labels[changed])
    untouched = crops.copy()
    paste_stamps(crops, crop_labels, stamps, 0.0, rng)
    np.testing.assert_array_equal(crops, untouched)


def test_objects_land_against_the_host_border():
    """A host region just the size of the object still receives it; the ring
    is pasted over the host only, so the surroundings keep their labels."""
    images, labels = _slice_with_objects()
    stamps = cut_stamps(images, labels, [RARE])
    crops = np.zeros((1, 2, 12, 12), np.float32)
    crop_labels = np.full((1, 12, 12), OTHER, np.int16)
    crop_labels[0, 4:7, 5:8] = HOST
    paste_stamps(crops, crop_labels, stamps, 1.0, np.random.default_rng(0))
    expected = np.full((12, 12), OTHER)
    expected[4:7, 5:8] = RARE
    np.testing.assert_array_equal(crop_labels[0], expected)
    assert (crops[0, 1][crop_labels[0] == OTHER] == 0).all()


def test_training_pastes_rare_objects(
    sample0, annotate, tiny_train_config, monkeypatch
):
    seen = []
    original = train_module.paste_stamps

    def spy(images, labels, stamps, probability, rng):
        original(images, labels, stamps, probability, rng)
        seen.append((len(stamps), probability))

    monkeypatch.setattr(train_module, "paste_stamps", spy)
    classes = sample0.classes
    labelled = annotate(sample0.labels, [8, 18, 26])
    config = dataclasses.replace(tiny_train_config, rare_paste=0.7)
    run_to_end(
        train_module.train(sample0.image, labelled, [8, 18, 26], classes, config=config)
    )
    assert len(seen) == config.n_steps(3)
    assert all(n > 0 and p == 0.7 for n, p in seen)
