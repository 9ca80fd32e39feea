"""XRM-like imaging of a material volume: what the scanner makes of the geometry.

Attenuation per material → partial-volume blur → beam-hardening cupping →
ring artefacts → noise → ``uint16``. The seed draws the contrast and the
strength of each artefact around the levels in :class:`SampleParams`, so two
seeds look like two scans from different tools or settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_xrm_al.core.synthetic.geometry import (
    COPPER,
    MATERIAL_NAMES,
    SOLDER,
    VOID,
)
from napari_xrm_al.core.synthetic.params import SampleParams

#: Linear attenuation of each material relative to copper, before the seed's
#: variation. Solder (Sn-Ag) attenuates more than copper in every draw (its
#: ratio to the drawn copper varies); silicon, underfill and mold compound are
#: close to one another; voids hold gas.
BASE_ATTENUATION = {
    "mold": 0.30,
    "underfill": 0.18,
    "silicon": 0.26,
    "copper": 1.0,
    "solder": 1.25,
    "void": 0.03,
}


@dataclass(frozen=True)
class Imaging:
    """One draw of the scanner's contrast and artefacts (see :func:`draw_imaging`)."""

    attenuation: np.ndarray
    blur_sigma: float
    cupping: float
    axis_yx: tuple[float, float]
    rings: float
    noise: float
    gain: float
    offset: float


def _vary(rng: np.random.Generator, value: float, spread: float) -> float:
    """``value`` scaled by a random factor in ``[1 - spread, 1 + spread]``."""
    return float(value * (1.0 + spread * rng.uniform(-1.0, 1.0)))


def draw_imaging(
    params: SampleParams, shape_yx: tuple[int, int], rng: np.random.Generator
) -> Imaging:
    """Draw contrast and artefact strengths for one scan."""
    v = params.variation
    attenuation = np.array(
        [_vary(rng, BASE_ATTENUATION[m], 0.15 * v) for m in MATERIAL_NAMES],
        dtype=np.float32,
    )
    # Relative to the drawn copper: drawn on its own, solder could land at or
    # below copper's grey value, which no real Sn-Ag cap on Cu does.
    solder_excess = _vary(rng, BASE_ATTENUATION["solder"] - 1.0, 0.5 * v)
    attenuation[SOLDER] = attenuation[COPPER] * (1.0 + solder_excess)
    attenuation[VOID] = BASE_ATTENUATION["void"]
    ny, nx = shape_yx
    axis = (
        (ny - 1) / 2 + 0.05 * ny * v * rng.uniform(-1, 1),
        (nx - 1) / 2 + 0.05 * nx * v * rng.uniform(-1, 1),
    )
    return Imaging(
        attenuation=attenuation,
        blur_sigma=_vary(rng, params.blur_sigma, 0.3 * v),
        cupping=_vary(rng, params.cupping, 0.5 * v),
        axis_yx=axis,
        rings=_vary(rng, params.rings, 0.5 * v),
        noise=_vary(rng, params.noise, 0.4 * v),
        gain=_vary(rng, params.intensity_scale, 0.25 * v),
        offset=params.intensity_scale * _vary(rng, 0.1, 0.5 * v),
    )


def _radius(shape_yx: tuple[int, int], axis_yx: tuple[float, float]) -> np.ndarray:
    yy = np.arange(shape_yx[0], dtype=np.float32)[:, None] - axis_yx[0]
    xx = np.arange(shape_yx[1], dtype=np.float32)[None, :] - axis_yx[1]
    return np.sqrt(yy**2 + xx**2)


def cupping_profile(shape_yx: tuple[int, int], imaging: Imaging) -> np.ndarray:
    """Multiplicative beam-hardening profile: darker towards the rotation axis."""
    r = _radius(shape_yx, imaging.axis_yx)
    return 1.0 - imaging.cupping * (1.0 - (r / r.max()) ** 2)


def ring_profile(
    shape_yx: tuple[int, int], imaging: Imaging, rng: np.random.Generator
) -> np.ndarray:
    """Additive rings about the rotation axis: a few strong ones on faint ripple."""
    r = _radius(shape_yx, imaging.axis_yx)
    r_max = float(r.max())
    bins = np.arange(int(r_max) + 2, dtype=np.float32)
    ripple = rng.normal(0.0, 0.25, size=bins.size).astype(np.float32)
    rings = np.interp(r, bins, ripple).astype(np.float32)
    n_strong = int(rng.integers(4, 12))
    centres = rng.uniform(0.05 * r_max, r_max, size=n_strong)
    amplitudes = rng.normal(0.0, 1.0, size=n_strong)
    widths = rng.uniform(0.5, 1.2, size=n_strong)
    for c, a, w in zip(centres, amplitudes, widths, strict=True):
        rings += np.float32(a) * np.exp(-0.5 * ((r - c) / w) ** 2)
    return imaging.rings * rings


def render(
    materials: np.ndarray, imaging: Imaging, rng: np.random.Generator
) -> np.ndarray:
    """The ``uint16`` image a scanner with ``imaging`` settings records."""
    shape_yx = materials.shape[1:]
    signal = imaging.attenuation[materials]
    signal = ndimage.gaussian_filter(
        signal, imaging.blur_sigma, output=signal, truncate=3.0
    )
    signal *= cupping_profile(shape_yx, imaging)[None]
    signal += ring_profile(shape_yx, imaging, rng)[None]
    # Reconstructed noise grows mildly with the signal (photon statistics).
    std = np.sqrt(np.maximum(signal, 0.0))
    std *= 0.5 * imaging.noise
    std += 0.5 * imaging.noise
    std *= rng.standard_normal(signal.shape, dtype=np.float32)
    signal += std
    signal *= imaging.gain
    signal += imaging.offset
    np.clip(signal, 0, np.iinfo(np.uint16).max, out=signal)
    return signal.astype(np.uint16)
