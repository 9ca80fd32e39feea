"""Measuring solder bumps and their voids in a class mask, slab by slab.

See :mod:`napari_xrm_al.core.metrology` for the definitions (bump, void,
void ratio, partial).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage

from napari_xrm_al.core.events import Progress, run_to_end
from napari_xrm_al.core.metrology.components import SlabComponents
from napari_xrm_al.errors import XrmError
from napari_xrm_al.io.label_ids import check_class_ids

#: Default pass/fail threshold on the void ratio.
DEFAULT_MAX_VOID_RATIO = 0.25

#: Voxels per slab when ``slab`` is not given (16 M: about 0.4 GB working memory).
SLAB_VOXELS = 2**24


@dataclass(frozen=True)
class Bump:
    """Measurements of one bump; coordinates in voxels of the mask.

    ``bbox`` is ``(z0, y0, x0, z1, y1, x1)``, half-open like slices.
    Physical quantities (µm, µm³) are ``None`` when the voxel size is unknown.
    """

    id: int
    z: float
    y: float
    x: float
    bbox: tuple[int, int, int, int, int, int]
    solder_voxels: int
    void_voxels: int
    void_ratio: float
    n_voids: int
    largest_void_diameter_vox: float
    largest_void_diameter_um: float | None
    solder_volume_um3: float | None
    void_volume_um3: float | None
    partial: bool
    passed: bool


def with_threshold(bumps: Iterable[Bump], max_void_ratio: float) -> list[Bump]:
    """The same bumps judged against another void-ratio threshold."""
    return [replace(b, passed=b.void_ratio <= max_void_ratio) for b in bumps]


def equivalent_diameter(volume: float) -> float:
    """Diameter of the sphere of the given volume, ``(6 V / π)^(1/3)``."""
    return (6.0 * volume / math.pi) ** (1.0 / 3.0)


def _check(
    labels: Any,
    solder_id: int,
    void_id: int,
    voxel_size: Sequence[float] | None,
    max_void_ratio: float,
    slab: int | None,
    connectivity: int,
) -> None:
    ndim = len(getattr(labels, "shape", ()))
    if ndim != 3:
        raise XrmError(
            f"Void metrology needs a 3D (z, y, x) mask; this one has {ndim} dimensions."
        )
    check_class_ids(labels)
    if int(solder_id) == int(void_id):
        raise XrmError(
            f"Solder and void must be different classes (both are id {solder_id})."
        )
    if not 0.0 <= max_void_ratio <= 1.0:
        raise XrmError(
            f"The maximum void ratio must lie in [0, 1], got {max_void_ratio}."
        )
    if voxel_size is not None and (
        len(voxel_size) != 3
        or not all(np.isfinite(float(v)) and float(v) > 0 for v in voxel_size)
    ):
        raise XrmError(
            f"The voxel size must be three positive numbers (z, y, x), got {list(voxel_size)}."
        )
    if slab is not None and int(slab) < 1:
        raise XrmError(f"The slab depth must be at least one plane, got {slab}.")
    if connectivity not in (6, 26):
        raise XrmError(f"Connectivity must be 6 or 26, got {connectivity}.")


def iter_measure_bumps(
    labels: Any,
    *,
    solder_id: int,
    void_id: int,
    voxel_size: Sequence[float] | None = None,
    max_void_ratio: float = DEFAULT_MAX_VOID_RATIO,
    slab: int | None = None,
    connectivity: int = 6,
    min_voxels: int = 1,
) -> Generator[Progress, None, list[Bump]]:
    """Measure every bump of a 3D class mask, yielding a :class:`Progress`
    (planes done) per slab.

    The arguments are checked at call time (not at the first ``next``), so a
    bad argument raises :class:`XrmError` at once.

    Parameters
    ----------
    labels
        ``(z, y, x)`` integer class mask: a numpy array or anything sliceable
        along z (zarr, dask, memmap). Ids are in the array's own convention.
    solder_id, void_id
        The ids of solder and void in ``labels``.
    voxel_size
        ``(z, y, x)`` voxel size in µm; gives physical volumes and diameters.
    max_void_ratio
        A bump passes when ``void / (solder + void) <= max_void_ratio``.
    slab
        Planes read at a time; by default about :data:`SLAB_VOXELS` voxels.
    connectivity
        6 (faces) or 26 (faces, edges and corners), for bumps and voids alike.
    min_voxels
        Components with fewer solder + void voxels are dropped (noise).

    Returns
    -------
    list of Bump
        The generator's return value: ids ``1..N`` in raster order of each
        bump's first voxel.
    """
    _check(labels, solder_id, void_id, voxel_size, max_void_ratio, slab, connectivity)
    return _measure(
        labels,
        int(solder_id),
        int(void_id),
        None if voxel_size is None else tuple(float(v) for v in voxel_size),
        float(max_void_ratio),
        slab,
        connectivity,
        max(int(min_voxels), 1),
    )


def measure_bumps(labels: Any, **options: Any) -> list[Bump]:
    """Measure every bump of a 3D class mask: :func:`iter_measure_bumps` run to
    the end, with the same arguments; returns the list of bumps."""
    return run_to_end(iter_measure_bumps(labels, **options))


def _measure(
    labels: Any,
    solder_id: int,
    void_id: int,
    voxel_size: tuple[float, float, float] | None,
    max_void_ratio: float,
    slab: int | None,
    connectivity: int,
    min_voxels: int,
) -> Generator[Progress, None, list[Bump]]:
    shape = tuple(int(s) for s in labels.shape)
    depth = slab or max(1, SLAB_VOXELS // max(1, shape[1] * shape[2]))
    bumps, voids = SlabComponents(connectivity), SlabComponents(connectivity)
    acc: dict[str, list[np.ndarray]] = {
        k: [] for k in ("total", "void", "sums", "lo", "hi", "vsize", "vowner")
    }
    for z0 in range(0, shape[0], depth):
        block = np.asarray(labels[z0 : z0 + depth])
        is_void = block == void_id
        lab, offset, n = bumps.add(is_void | (block == solder_id))
        _bump_stats(lab, n, is_void, z0, acc)
        vlab, _, vn = voids.add(is_void)
        inside = vlab > 0
        vl = vlab[inside]
        acc["vsize"].append(np.bincount(vl, minlength=vn + 1)[1:])
        owner = np.zeros(vn + 1, np.int64)
        owner[vl] = lab[inside].astype(np.int64) + offset
        acc["vowner"].append(owner[1:])
        done = min(z0 + depth, shape[0])
        yield Progress("metrology", done, shape[0], message=f"{done} planes read")
    return _finish(bumps, voids, acc, shape, voxel_size, max_void_ratio, min_voxels)


def _bump_stats(
    lab: np.ndarray,
    n: int,
    is_void: np.ndarray,
    z0: int,
    acc: dict[str, list[np.ndarray]],
) -> None:
    """Append per-component voxel counts, coordinate sums and bounding boxes."""
    total = np.zeros(n + 1, np.int64)
    void = np.zeros(n + 1, np.int64)
    sums = np.zeros((n + 1, 3))
    for k in range(lab.shape[0]):
        inside = lab[k] > 0
        ll = lab[k][inside]
        yy, xx = np.nonzero(inside)
        count = np.bincount(ll, minlength=n + 1)
        total += count
        void += np.bincount(ll[is_void[k][inside]], minlength=n + 1)
        sums[:, 0] += count * (z0 + k)
        sums[:, 1] += np.bincount(ll, weights=yy, minlength=n + 1)
        sums[:, 2] += np.bincount(ll, weights=xx, minlength=n + 1)
    boxes = ndimage.find_objects(lab)
    lo = np.array([[s.start for s in b] for b in boxes], np.int64).reshape(-1, 3)
    hi = np.array([[s.stop for s in b] for b in boxes], np.int64).reshape(-1, 3)
    offset = np.array([z0, 0, 0])
    acc["total"].append(total[1:])
    acc["void"].append(void[1:])
    acc["sums"].append(sums[1:])
    acc["lo"].append(lo + offset)
    acc["hi"].append(hi + offset)


def _finish(
    bumps: SlabComponents,
    voids: SlabComponents,
    acc: dict[str, list[np.ndarray]],
    shape: tuple[int, ...],
    voxel_size: tuple[float, float, float] | None,
    max_void_ratio: float,
    min_voxels: int,
) -> list[Bump]:
    """Merge provisional components into bumps and build the records."""
    cat = {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in acc.items()}
    roots, index = np.unique(bumps.roots(), return_inverse=True)
    nb = len(roots)
    total = np.zeros(nb, np.int64)
    void = np.zeros(nb, np.int64)
    sums = np.zeros((nb, 3))
    lo = np.full((nb, 3), np.iinfo(np.int64).max)
    hi = np.zeros((nb, 3), np.int64)
    np.add.at(total, index, cat["total"])
    np.add.at(void, index, cat["void"])
    np.add.at(sums, index, cat["sums"].reshape(-1, 3))
    np.minimum.at(lo, index, cat["lo"].reshape(-1, 3))
    np.maximum.at(hi, index, cat["hi"].reshape(-1, 3))

    vroots, vindex = np.unique(voids.roots(), return_inverse=True)
    vsize = np.zeros(len(vroots), np.int64)
    np.add.at(vsize, vindex, cat["vsize"])
    owner = np.zeros(len(vroots), np.int64)
    if len(vroots):
        # Every piece of a void lies in the same bump; any piece names it.
        owner[vindex] = index[cat["vowner"] - 1]
    n_voids = np.bincount(owner, minlength=nb)
    largest = np.zeros(nb, np.int64)
    np.maximum.at(largest, owner, vsize)

    solder = total - void
    keep = np.flatnonzero((solder > 0) & (total >= min_voxels))
    voxel_volume = None if voxel_size is None else math.prod(voxel_size)
    out = []
    for new_id, i in enumerate(keep, start=1):
        ratio = float(void[i]) / float(total[i])
        box = tuple(int(v) for v in (*lo[i], *hi[i]))
        partial = any(box[a] == 0 or box[a + 3] == shape[a] for a in range(3))
        z, y, x = (float(s) / float(total[i]) for s in sums[i])
        out.append(
            Bump(
                id=new_id,
                z=z,
                y=y,
                x=x,
                bbox=box,  # type: ignore[arg-type]
                solder_voxels=int(solder[i]),
                void_voxels=int(void[i]),
                void_ratio=ratio,
                n_voids=int(n_voids[i]),
                largest_void_diameter_vox=equivalent_diameter(float(largest[i])),
                largest_void_diameter_um=None
                if voxel_volume is None
                else equivalent_diameter(float(largest[i]) * voxel_volume),
                solder_volume_um3=None
                if voxel_volume is None
                else float(solder[i]) * voxel_volume,
                void_volume_um3=None
                if voxel_volume is None
                else float(void[i]) * voxel_volume,
                partial=partial,
                passed=False,
            )
        )
    return with_threshold(out, max_void_ratio)
