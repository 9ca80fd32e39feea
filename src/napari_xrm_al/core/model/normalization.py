"""Intensity normalisation suited to X-ray microscopy.

XRM grey values depend on the source, filter, detector and reconstruction, so
a fixed scale is meaningless; bright metal and streak artefacts make min/max
useless. We map robust percentiles (0.5 % and 99.5 % by default) of a
subsample of the *whole* volume to 0 and 1. The two numbers are stored in every
checkpoint and reused unchanged at prediction time, so a model sees the same
scale on the scan it was trained on. Another scan, from another tool or with
other settings, can hold the same materials at other grey values:
:func:`normalisation_for_scan` then maps that scan's own percentiles instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_xrm_al.errors import XrmError
from napari_xrm_al.io.array_reads import subsample

#: Normalised values are clipped to this range (a few percent of voxels
#: lie beyond the percentiles; extreme outliers must not dominate).
CLIP = (-1.0, 2.0)

#: How the intensities of a scan to predict are normalised: ``'auto'`` (the
#: model's, unless the scan's own percentiles lie further from them than
#: :data:`SCAN_TOLERANCE`), ``'model'`` (always the model's) or ``'scan'``
#: (always the scan's own).
INTENSITY_MODES = ("auto", "model", "scan")

#: Share of the model's range (high - low) by which a scan's percentile may
#: differ from the model's before ``'auto'`` normalises the scan by its own.
#: Measured (docs/benchmarks.md, "A model on another scan"): the scan's own
#: won in every training seed at 0.44 and 0.56 of the range, lost in every
#: seed at 0.26 (a pair whose solder/copper contrast changes, which no linear
#: map corrects) and was mixed below 0.1.
SCAN_TOLERANCE = 0.35


@dataclass(frozen=True)
class Normalisation:
    """Linear map sending ``low`` to 0 and ``high`` to 1."""

    low: float
    high: float
    percentiles: tuple[float, float] = (0.5, 99.5)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            raise XrmError(f"Normalisation bounds must be finite, got {self}.")
        if self.high <= self.low:
            raise XrmError(
                f"Normalisation needs high > low, got low={self.low}, high={self.high}."
            )

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Normalised ``float32`` copy of ``x``; NaN/Inf become 0, values clipped."""
        out = np.asarray(x, dtype=np.float32)
        out = (out - np.float32(self.low)) * np.float32(1.0 / (self.high - self.low))
        out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0, copy=False)
        return np.clip(out, *CLIP, out=out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (stored in checkpoints)."""
        return {
            "low": float(self.low),
            "high": float(self.high),
            "percentiles": list(self.percentiles),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalisation:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(
                float(data["low"]),
                float(data["high"]),
                tuple(float(p) for p in data.get("percentiles", (0.5, 99.5))),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise XrmError(f"Malformed normalisation ({exc!r}).") from None


def check_finite_sample(data, max_voxels: int = 1_000_000, seed: int = 0) -> np.ndarray:
    """The finite values of a :func:`~napari_xrm_al.io.array_reads.subsample` of
    ``data``; :class:`XrmError` when there are none (an all-NaN or all-infinite
    volume would otherwise give a confident prediction of nothing)."""
    sample = subsample(data, max_voxels, seed)
    if sample.dtype.kind == "f":
        sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        raise XrmError(
            "The volume has no finite values (every voxel sampled is NaN or "
            "infinite); there is nothing to normalise or predict."
        )
    return sample


def fit_normalisation(
    data,
    max_voxels: int = 2_000_000,
    seed: int = 0,
    percentiles: tuple[float, float] = (0.5, 99.5),
) -> Normalisation:
    """Fit a :class:`Normalisation` to a subsample of the whole volume ``data``.

    The subsample (:func:`napari_xrm_al.io.array_reads.subsample`) reads a few
    evenly spread chunks or slices with a stride, never the whole volume.
    """
    if len(data.shape) != 3 or 0 in data.shape:
        raise XrmError(
            f"Expected a non-empty 3D volume, got shape {tuple(data.shape)}."
        )
    values = check_finite_sample(data, max_voxels, seed).astype(np.float64)
    low, high = (float(v) for v in np.percentile(values, percentiles))
    if high <= low:  # (nearly) constant volume: fall back to the full range
        low, high = float(values.min()), float(values.max())
        if high <= low:
            high = low + 1.0
    return Normalisation(low, high, tuple(float(p) for p in percentiles))


def normalisation_for_scan(
    model: Normalisation, data, intensity: str = "auto"
) -> tuple[Normalisation, bool]:
    """The normalisation to predict the volume ``data`` with, and whether it is
    the scan's own (fitted on ``data`` with the model's percentiles) rather
    than the ``model``'s; ``intensity`` is one of :data:`INTENSITY_MODES`.

    A model trained on one scan sees another scan's copper, solder and
    background at the grey values that scan's gain and offset give them; with
    the model's numbers a scan recorded at half the gain comes out nearly all
    background.
    """
    if intensity not in INTENSITY_MODES:
        raise XrmError(
            f"Unknown intensity normalisation {intensity!r}; choose one of "
            f"{', '.join(INTENSITY_MODES)}."
        )
    if intensity == "model":
        return model, False
    own = fit_normalisation(data, percentiles=model.percentiles)
    if intensity == "scan":
        return own, True
    if scan_shift(model, own) > SCAN_TOLERANCE:
        return own, True
    return model, False


def scan_shift(model: Normalisation, own: Normalisation) -> float:
    """How far a scan's own percentiles (``own``) lie from the ``model``'s, as a
    share of the model's range: what ``'auto'`` compares with
    :data:`SCAN_TOLERANCE`."""
    far = max(abs(own.low - model.low), abs(own.high - model.high))
    return far / (model.high - model.low)
