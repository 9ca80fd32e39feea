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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from napari_xrm_al.classes import CLASSES_FILE, LABEL_IDS_KEY, ClassTable
from napari_xrm_al.core.synthetic.geometry import CLASS_OF_MATERIAL, build_materials
from napari_xrm_al.core.synthetic.imaging import draw_imaging, render
from napari_xrm_al.core.synthetic.params import SampleParams
from napari_xrm_al.errors import InputError
from napari_xrm_al.io.atomic import atomic_path, atomic_write_json

#: Names of the files :func:`write_sample` writes.
IMAGE_FILE = "image.tif"
LABELS_FILE = "labels.tif"

#: Die thickness (voxels) of :func:`thick_die_params`.
THICK_DIE = 110


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
