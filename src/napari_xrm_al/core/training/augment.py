"""Batch-level data augmentation on torch tensors (fast on the CPU).

Images are ``(B, K, H, W)`` float tensors (K = slice + context channels,
transformed together); labels ``(B, H, W)`` integer tensors with ``-1`` for
unannotated pixels. Every random draw comes from the ``torch.Generator`` passed
in, so runs are reproducible. The set suits X-ray microscopy: geometry
(crop/rescale, flips, 90° rotations), grey-level changes (scale, shift, gamma),
Gaussian noise and slight blur; no colour jitter (one channel).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from napari_xrm_al.core.settings import setting

#: Range and box of every augmentation strength that a person may set.
_STRENGTH = dict(minimum=0.0, step=0.01, decimals=3, advanced=True)


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of each augmentation (0 or ``(1, 1)`` switches one off).

    Parameters
    ----------
    flips
        Random horizontal/vertical flips.
    rot90
        Random 90° rotations (square crops only).
    zoom
        Range of the random rescale factor applied to crops.
    intensity_scale, intensity_shift, histogram_shift, mixed_grey_share,
    noise_std, blur_prob
        Described by their settings (label, range, help).
    gamma
        Range of the gamma applied to each crop's grey-value range.
    blur_sigma
        Range of the blur's Gaussian sigma in pixels.
    """

    flips: bool = True
    rot90: bool = True
    zoom: tuple[float, float] = (0.85, 1.2)
    intensity_scale: float = setting(
        0.1,
        label="Brightness change",
        help="Grey values are multiplied by a random factor in 1 ± this.",
        maximum=1.0,
        **_STRENGTH,
    )
    intensity_shift: float = setting(
        0.1,
        label="Brightness offset",
        help="Grey values are shifted by up to ± this (normalised units).",
        maximum=1.0,
        **_STRENGTH,
    )
    gamma: tuple[float, float] = (0.75, 1.35)
    histogram_shift: float = setting(
        0.1,
        label="Contrast-curve change",
        help="Largest move of the inner points of a random monotone grey-value "
        "curve, as a fraction of a crop's range: teaches that the grey-value gaps "
        "between materials change from scan to scan. Raised to 0.25 with the "
        "weight average, it steadies retraining on slices that each show one "
        "material (z slices through bump layers) but costs 0.03-0.06 mIoU where "
        'slices show the materials together (docs/benchmarks.md, "Stable retraining").',
        maximum=0.5,
        **_STRENGTH,
    )
    mixed_grey_share: float = setting(
        0.5,
        label="Grey-level change on mixed crops",
        help="Share of the crops that show several materials side by side (three "
        "common classes or more) whose grey levels are changed (contrast curve, "
        "gamma, brightness change and offset); the others keep the scan's own, so "
        "the network learns the grey-level gaps between materials. Crops that show "
        "one material are always changed: there the grey level alone would decide "
        'the class (docs/benchmarks.md, "Retraining luck in the suite\'s loop").',
        maximum=1.0,
        **_STRENGTH,
    )
    noise_std: float = setting(
        0.04,
        label="Noise",
        help="Largest standard deviation of the added Gaussian noise "
        "(normalised units).",
        maximum=0.5,
        **_STRENGTH,
    )
    blur_prob: float = setting(
        0.25,
        label="Blur share",
        help="Share of crops slightly blurred.",
        maximum=1.0,
        **_STRENGTH,
    )
    blur_sigma: tuple[float, float] = (0.4, 1.0)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _log_uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return torch.exp(_uniform(n, math.log(lo), math.log(hi), gen))


def flip_rotate(
    x: torch.Tensor,
    y: torch.Tensor | None,
    gen: torch.Generator,
    *,
    flips: bool = True,
    rot90: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Random element of the dihedral group per item (same for image and labels).

    Items are grouped by transform (at most 8 groups), so the cost does not
    grow with per-item Python work.
    """
    n = x.shape[0]
    square = x.shape[-1] == x.shape[-2]
    rot = torch.randint(0, 4 if rot90 and square else 1, (n,), generator=gen)
    if not rot90 or not square:  # without rotations, flip each axis independently
        rot = 2 * torch.randint(0, 2 if flips else 1, (n,), generator=gen)
    flip = torch.randint(0, 2 if flips else 1, (n,), generator=gen)
    x = x.clone()
    y = y.clone() if y is not None else None
    for k in range(4):
        for f in range(2):
            idx = torch.nonzero((rot == k) & (flip == f)).flatten()
            if not idx.numel() or (k == 0 and f == 0):
                continue
            for t in (x, y):
                if t is None:
                    continue
                part = t[idx]
                if f:
                    part = part.flip(-1)
                if k:
                    part = part.rot90(k, (-2, -1))
                t[idx] = part
    return x, y


def resized_crop(
    x: torch.Tensor,
    out_size: int,
    scale: torch.Tensor,
    gen: torch.Generator,
    y: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per item, a random square window of side ``scale`` × input side, resized.

    ``scale`` (B,) may exceed 1 (zoom out; borders are reflected). Images are
    resampled bilinearly, labels by nearest neighbour.
    """
    n = x.shape[0]
    s = scale.to(x.dtype)
    room = (1.0 - s).clamp(min=0.0)
    tx = (2 * torch.rand(n, generator=gen) - 1).to(x.dtype) * room
    ty = (2 * torch.rand(n, generator=gen) - 1).to(x.dtype) * room
    theta = torch.zeros(n, 2, 3, dtype=x.dtype)
    theta[:, 0, 0] = s
    theta[:, 1, 1] = s
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, [n, 1, out_size, out_size], align_corners=False)
    xo = F.grid_sample(
        x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )
    if y is None:
        return xo, None
    yo = F.grid_sample(
        y[:, None].to(x.dtype),
        grid,
        mode="nearest",
        padding_mode="reflection",
        align_corners=False,
    )
    return xo, yo[:, 0].round().to(y.dtype)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each item with its own sigma (``sigma`` (B,), 0 = unchanged)."""
    n, k = x.shape[:2]
    radius = max(1, math.ceil(2 * float(sigma.max())))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    s = sigma.to(x.dtype).clamp(min=1e-3)[:, None]
    kern = torch.exp(-0.5 * (t[None] / s) ** 2)
    kern = kern / kern.sum(dim=1, keepdim=True)  # (B, 2r+1); sigma~0 → delta
    kern = kern.repeat_interleave(k, dim=0)  # one per channel
    flat = x.reshape(1, n * k, *x.shape[-2:])
    flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kern[:, None, None, :], groups=n * k)
    flat = F.conv2d(flat, kern[:, None, :, None], groups=n * k)
    return flat.reshape(x.shape)


def histogram_shift(
    u: torch.Tensor, strength: float, gen: torch.Generator, points: int = 3
) -> torch.Tensor:
    """Random monotone piecewise-linear map of ``u`` ∈ [0, 1] per item.

    ``points`` inner control points, evenly spaced, each moved by up to
    ``± strength``; the ends stay at 0 and 1.
    """
    n = u.shape[0]
    xp = torch.linspace(0, 1, points + 2, dtype=u.dtype)
    move = (2 * torch.rand(n, points + 2, generator=gen) - 1).to(u.dtype) * strength
    move[:, 0] = 0
    move[:, -1] = 0
    fp = (xp + move).clamp(0, 1).sort(dim=1).values  # (n, points + 2), monotone
    pos = u * (points + 1)
    seg = pos.floor().clamp(max=points).long()
    t = pos - seg
    items = torch.arange(n).view(n, *([1] * (u.ndim - 1)))
    f0, f1 = fp[items, seg], fp[items, seg + 1]
    return f0 + t * (f1 - f0)


def mixed_crops(
    y: torch.Tensor,
    common: Sequence[int],
    min_classes: int = 3,
    min_share: float = 0.02,
) -> torch.Tensor:
    """``(B,)`` whether each crop of labels ``y`` (B, S, S) shows several
    materials side by side: ``min_classes`` of the ``common`` class ids or more,
    each on at least ``min_share`` of the crop's labelled pixels."""
    flat = y.reshape(y.shape[0], -1)
    labelled = (flat >= 0).sum(1).clamp(min=1)
    shown = torch.zeros(y.shape[0], dtype=torch.long)
    for c in common:
        shown += (flat == c).sum(1) >= min_share * labelled
    return shown >= min_classes


def intensity(
    x: torch.Tensor,
    cfg: AugmentConfig,
    gen: torch.Generator,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """Random contrast curve, gamma, scale and shift (not on the items where
    ``keep`` (B,) is True), blur and noise per item (channels alike)."""
    n = x.shape[0]
    view = (n, 1, 1, 1)
    original = x
    if cfg.gamma != (1.0, 1.0) or cfg.histogram_shift > 0:
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        span = (x.amax(dim=(1, 2, 3), keepdim=True) - lo).clamp(min=1e-6)
        u = ((x - lo) / span).clamp(0, 1)
        if cfg.histogram_shift > 0:
            u = histogram_shift(u, cfg.histogram_shift, gen)
        g = _log_uniform(n, *cfg.gamma, gen).to(x.dtype).view(view)
        x = u**g * span + lo
    if cfg.intensity_scale or cfg.intensity_shift:
        a = _uniform(n, 1 - cfg.intensity_scale, 1 + cfg.intensity_scale, gen)
        b = _uniform(n, -cfg.intensity_shift, cfg.intensity_shift, gen)
        x = x * a.to(x.dtype).view(view) + b.to(x.dtype).view(view)
    if keep is not None:
        x = torch.where(keep.view(view), original, x)
    if cfg.blur_prob > 0:
        blur = torch.rand(n, generator=gen) < cfg.blur_prob
        if bool(blur.any()):
            sigma = _uniform(n, *cfg.blur_sigma, gen) * blur
            x = gaussian_blur(x, sigma)
    if cfg.noise_std > 0:
        std = _uniform(n, 0.0, cfg.noise_std, gen).to(x.dtype).view(view)
        x = x + std * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    return x


def augment_pair(
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: AugmentConfig,
    gen: torch.Generator,
    common: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training augmentation of images ``x`` (B, K, S, S) and labels ``y`` (B, S, S).

    With ``common`` (the class ids that are not rare), crops that show several
    of them side by side (:func:`mixed_crops`) keep their grey levels unless
    drawn for a change (``cfg.mixed_grey_share``).
    """
    size = x.shape[-1]
    if cfg.zoom != (1.0, 1.0):
        # A window of side 1/zoom of the crop is resized to the crop size.
        scale = 1.0 / _log_uniform(x.shape[0], *cfg.zoom, gen)
        x, y = resized_crop(x, size, scale, gen, y)
    x, y = flip_rotate(x, y, gen, flips=cfg.flips, rot90=cfg.rot90)
    keep = None
    if common is not None and cfg.mixed_grey_share < 1:
        drawn = torch.rand(x.shape[0], generator=gen) < cfg.mixed_grey_share
        keep = mixed_crops(y, common) & ~drawn
    return intensity(x, cfg, gen, keep), y


def contrastive_view(
    x: torch.Tensor,
    out_size: int,
    crop_scale: tuple[float, float],
    cfg: AugmentConfig,
    gen: torch.Generator,
) -> torch.Tensor:
    """One SimCLR view: random crop + rescale (area fraction in ``crop_scale``),
    flips/rotations and grey-level changes."""
    area = _uniform(x.shape[0], *crop_scale, gen)
    v, _ = resized_crop(x, out_size, area.sqrt(), gen)
    v, _ = flip_rotate(v, None, gen, flips=cfg.flips, rot90=cfg.rot90)
    return intensity(v, cfg, gen)
