from __future__ import annotations

import dataclasses

import torch

from napari_xrm_al.core.training.augment import (
    augment_pair,
    contrastive_view,
    gaussian_blur,
    histogram_shift,
    intensity,
    mixed_crops,
)


def test_geometry_moves_labels_with_the_image(no_augment):
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(-1, 4, (16, 24, 24))
    x = torch.stack([y, y + 10], dim=1).float()  # two channels that encode y
    config = dataclasses.replace(no_augment, flips=True, rot90=True)
    xa, ya = augment_pair(x, y, config, gen)
    assert torch.equal(xa[:, 0].long(), ya) and torch.equal(xa[:, 1].long(), ya + 10)
    assert not torch.equal(ya, y)  # something did move


def test_switched_off_augmentation_is_the_identity(no_augment):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 16, 16)
    y = torch.randint(0, 3, (4, 16, 16))
    xa, ya = augment_pair(x, y, no_augment, gen)
    assert torch.equal(xa, x) and torch.equal(ya, y)


def test_contrast_curve_is_monotone_with_fixed_ends():
    gen = torch.Generator().manual_seed(1)
    u = torch.linspace(0, 1, 101).repeat(8, 1, 1, 1)
    out = histogram_shift(u, 0.3, gen)
    assert (out.diff(dim=-1) >= 0).all()
    assert torch.allclose(out[..., 0], torch.zeros(1)) and torch.allclose(
        out[..., -1], torch.ones(1)
    )
    assert not torch.allclose(out, u)


def test_intensity_keeps_shape_and_blur_keeps_mean(no_augment):
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(4, 3, 20, 20)
    out = intensity(x, dataclasses.replace(no_augment, noise_std=0.1), gen)
    assert out.shape == x.shape and not torch.equal(out, x)
    blurred = gaussian_blur(x, torch.tensor([0.0, 0.5, 1.0, 1.5]))
    torch.testing.assert_close(blurred[0], x[0], atol=1e-4, rtol=0)
    assert blurred[3].std() < x[3].std()
    torch.testing.assert_close(blurred.mean(), x.mean(), atol=2e-2, rtol=0)


def test_contrastive_views_differ_and_have_the_view_size(no_augment):
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(5, 3, 40, 40)
    a = contrastive_view(x, 24, (0.3, 1.0), no_augment, gen)
    b = contrastive_view(x, 24, (0.3, 1.0), no_augment, gen)
    assert a.shape == (5, 3, 24, 24) and not torch.equal(a, b)


def test_mixed_crops_are_those_showing_three_common_classes() -> None:
    y = torch.zeros(4, 10, 10, dtype=torch.long)
    y[0, :, :3], y[0, :, 3:6] = 1, 2  # background, copper, solder
    y[1, :, :5] = 1  # two classes
    y[2, :, :3], y[2, :, 3:6] = 3, 2  # background, void (rare), solder
    y[3] = -1  # nothing labelled
    assert mixed_crops(y, common=(0, 1, 2)).tolist() == [True, False, False, False]


def test_grey_levels_change_on_a_share_of_mixed_crops_and_on_every_other(no_augment):
    y = torch.zeros(400, 8, 8, dtype=torch.long)
    y[:200, :, :3], y[:200, :, 3:6] = 1, 2  # the first 200 crops are mixed
    x = torch.rand(400, 3, 8, 8)
    changes = dataclasses.replace(no_augment, intensity_scale=0.2, gamma=(0.7, 1.4))

    def kept(share: float, common=(0, 1, 2)) -> tuple[int, int]:
        gen = torch.Generator().manual_seed(4)
        cfg = dataclasses.replace(changes, mixed_grey_share=share)
        out, _ = augment_pair(x, y, cfg, gen, common)
        same = [torch.equal(a, b) for a, b in zip(out, x, strict=True)]
        return sum(same[:200]), sum(same[200:])

    assert kept(1.0) == (0, 0) and kept(0.0) == (200, 0)
    mixed_kept, others_kept = kept(0.5)
    assert 70 < mixed_kept < 130 and others_kept == 0
    assert kept(0.5, common=None) == (0, 0)  # no labels' classes: every crop changes
