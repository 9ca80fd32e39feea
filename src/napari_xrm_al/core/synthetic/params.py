"""What the synthetic HBM sample is made of: :class:`SampleParams`.

Its own module so that the geometry, the imaging and the sample itself all
read the parameters without importing one another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from napari_xrm_al.errors import XrmError


@dataclass(frozen=True)
class SampleParams:
    """What to generate; lengths are in voxels.

    Parameters
    ----------
    shape
        Volume shape ``(z, y, x)``; z is the stacking direction.
    seed
        Seeds geometry, contrast and artefacts: each seed is another "scan".
    n_bump_layers
        Number of bump layers. ``None`` repeats die + bump layer along z as
        often as it fits (at least once), as in a tall HBM stack, so thicker
        dies leave fewer slices with solder. A number gives a stack of that many
        layers with mold compound above and below it.
    die_thickness
        Silicon between two bump layers.
    void_probability
        Chance that a solder cap holds voids (one to three).
    void_layers
        Bump layers (0 = lowest in z) whose caps may hold voids; ``None``: all.
        Voids confined to one layer of several make the defect rarer than the
        solder around it, as after one bad reflow step.
    pitch_range, diameter_fraction_range
        Bump pitch in (y, x), and bump diameter as a fraction of the pitch.
    pad_thickness_range, solder_thickness_range, pillar_height_range
        Heights of the copper pad, solder cap and copper pillar.
    void_radius_range
        Void semi-axes before clipping to the solder.
    tsv_fraction
        Fraction of bump columns with a copper through-silicon via.
    blur_sigma
        Partial-volume blur (Gaussian sigma).
    noise
        Noise standard deviation, relative to copper's attenuation.
    cupping
        Beam-hardening cupping: how much darker the rotation axis is than the
        corners of the field of view.
    rings
        Ring-artefact amplitude, relative to copper's attenuation.
    intensity_scale
        Grey value of copper in the ``uint16`` image (before the seed's variation).
    variation
        How far the seed moves contrast and artefact strengths (0: not at all).
    voxel_size_um
        Isotropic voxel size in micrometres.
    """

    shape: tuple[int, int, int] = (128, 256, 256)
    seed: int = 0
    n_bump_layers: int | None = None
    die_thickness: int = 24
    void_probability: float = 0.4
    void_layers: tuple[int, ...] | None = None
    pitch_range: tuple[float, float] = (36.0, 52.0)
    diameter_fraction_range: tuple[float, float] = (0.45, 0.6)
    pad_thickness_range: tuple[float, float] = (3.0, 5.0)
    solder_thickness_range: tuple[float, float] = (6.0, 12.0)
    pillar_height_range: tuple[float, float] = (12.0, 20.0)
    void_radius_range: tuple[float, float] = (1.5, 4.0)
    tsv_fraction: float = 0.5
    blur_sigma: float = 1.0
    noise: float = 0.06
    cupping: float = 0.12
    rings: float = 0.03
    intensity_scale: float = 20000.0
    variation: float = 1.0
    voxel_size_um: float = 1.0

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) < 8:
            raise XrmError(
                f"The sample shape must be three sizes (z, y, x) of at least 8, got {self.shape}."
            )
        object.__setattr__(self, "shape", shape)
        for f in fields(self):
            if f.name.endswith("_range"):
                lo, hi = (float(v) for v in getattr(self, f.name))
                if not 0 < lo <= hi:
                    raise XrmError(
                        f"{f.name} must be (low, high) with 0 < low <= high."
                    )
                object.__setattr__(self, f.name, (lo, hi))
        if self.n_bump_layers is not None and self.n_bump_layers < 1:
            raise XrmError(
                f"n_bump_layers must be at least 1, got {self.n_bump_layers}."
            )
        if self.void_layers is not None:
            layers = tuple(int(k) for k in self.void_layers)
            if any(k < 0 for k in layers):
                raise XrmError(f"void_layers must not be negative, got {layers}.")
            object.__setattr__(self, "void_layers", layers)
        if self.die_thickness < 1:
            raise XrmError(
                f"die_thickness must be at least 1, got {self.die_thickness}."
            )
        for name in ("void_probability", "tsv_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise XrmError(f"{name} must lie in [0, 1], got {getattr(self, name)}.")
        for name in ("blur_sigma", "noise", "cupping", "rings", "variation"):
            if getattr(self, name) < 0:
                raise XrmError(
                    f"{name} must not be negative, got {getattr(self, name)}."
                )
        if self.intensity_scale <= 0 or self.voxel_size_um <= 0:
            raise XrmError("intensity_scale and voxel_size_um must be positive.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()
        }
