"""The built-in synthetic HBM micro-bump XRM volume, with dense ground truth.

A stack of silicon dies along z with layers of micro-bumps between them
(copper pad, solder cap, copper pillar), voids inside some solder caps as the
rare class, imaged with partial-volume blur, beam-hardening cupping, ring
artefacts and noise. Geometry, contrast and artefacts all vary with the seed,
so two seeds give two scans with a domain shift between them.

>>> sample = make_hbm_sample(seed=1, shape=(64, 128, 128))
>>> sample.image.dtype, sample.labels.max()
(dtype('uint16'), np.uint8(3))
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from napari_xrm_al.classes import CLASSES_FILE, LABEL_IDS_KEY, ClassTable
from napari_xrm_al.core.synthetic.geometry import CLASS_OF_MATERIAL, build_materials
from napari_xrm_al.core.synthetic.imaging import draw_imaging, render
from napari_xrm_al.errors import InputError, XrmError
from napari_xrm_al.io.atomic import atomic_path, atomic_write_json

#: Names of the files :func:`write_sample` writes.
IMAGE_FILE = "image.tif"
LABELS_FILE = "labels.tif"

#: Die thickness (voxels) of :func:`thick_die_params`.
THICK_DIE = 110


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


@dataclass
class HbmSample:
    """A generated volume and its dense ground truth.

    Attributes
    ----------
    image
        ``uint16`` image, axes (z, y, x).
    labels
        ``uint8`` dense class ids: 0 background, 1 copper, 2 solder, 3 void.
    classes
        The class table (:meth:`ClassTable.hbm`).
    voxel_size
        Voxel size (z, y, x) in micrometres.
    params
        The parameters that generated it.
    """

    image: np.ndarray
    labels: np.ndarray
    classes: ClassTable
    voxel_size: tuple[float, float, float]
    params: SampleParams


def make_hbm_sample(params: SampleParams | None = None, **overrides: Any) -> HbmSample:
    """Generate the sample; ``overrides`` replace fields of ``params``.

    The same parameters (seed included) always give the same volume.
    """
    params = replace(params or SampleParams(), **overrides)
    rng = np.random.default_rng(params.seed)
    materials = build_materials(params, rng)
    imaging = draw_imaging(params, params.shape[1:], rng)
    image = render(materials, imaging, rng)
    labels = CLASS_OF_MATERIAL[materials]
    v = float(params.voxel_size_um)
    return HbmSample(image, labels, ClassTable.hbm(), (v, v, v), params)


def thick_die_params(seed: int = 0, **overrides: Any) -> SampleParams:
    """Thick dies: solder and voids sit in under 10 % of the z slices.

    Holds for volumes of at least 128 slices with the default bump heights.
    """
    return SampleParams(**{"seed": seed, "die_thickness": THICK_DIE, **overrides})


def class_fractions(sample: HbmSample) -> dict[str, float]:
    """Fraction of all voxels in each class."""
    counts = np.bincount(sample.labels.ravel(), minlength=len(sample.classes))
    return {
        n: float(c) / sample.labels.size
        for n, c in zip(sample.classes.names, counts, strict=True)
    }


def slice_fractions(sample: HbmSample, axis: int = 0) -> dict[str, float]:
    """Fraction of slices along ``axis`` that hold at least one voxel of each class."""
    n = sample.labels.shape[axis]
    other = tuple(a for a in range(3) if a != axis)
    return {
        name: float(np.count_nonzero((sample.labels == i).any(axis=other))) / n
        for i, name in enumerate(sample.classes.names)
    }


def write_sample(out_dir: str | os.PathLike[str], sample: HbmSample) -> dict[str, Path]:
    """Write ``image.tif``, ``labels.tif`` and ``classes.json`` into ``out_dir``.

    The TIFFs are ImageJ hyperstacks (axes ZYX) carrying the voxel size in
    micrometres; ``classes.json`` holds the class table, the voxel size,
    the generation parameters and ``"label_ids": "dense"`` (the labels'
    convention, read by ``train``). Each file is written atomically.

    Returns
    -------
    dict
        ``{"image": path, "labels": path, "classes": path}``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(out, f"cannot be created ({exc.strerror})") from None
    vz, vy, vx = sample.voxel_size
    tiff_kwargs = {
        "imagej": True,
        "resolution": (1.0 / vx, 1.0 / vy),
        "metadata": {"axes": "ZYX", "spacing": vz, "unit": "um"},
    }
    paths = {
        "image": out / IMAGE_FILE,
        "labels": out / LABELS_FILE,
        "classes": out / CLASSES_FILE,
    }
    info = {
        **sample.classes.to_dict(),
        LABEL_IDS_KEY: "dense",
        "voxel_size_um": list(sample.voxel_size),
        "axes": "zyx",
        "params": sample.params.to_dict(),
    }
    # Labels compress about a hundredfold; the noisy image hardly at all.
    for key, data, compression in (
        ("image", sample.image, None),
        ("labels", sample.labels, "zlib"),
    ):
        with atomic_path(paths[key]) as tmp:
            tifffile.imwrite(tmp, data, compression=compression, **tiff_kwargs)
    atomic_write_json(paths["classes"], info)
    return paths
