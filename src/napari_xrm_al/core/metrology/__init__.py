"""Void metrology: one row of measurements per solder bump of a class mask.

A **bump** is a connected component of solder ∪ void voxels (face
connectivity, i.e. 6 neighbours, unless ``connectivity=26``); components
without any solder voxel are not bumps and are dropped. Its **voids** are the
connected components of void inside it. The **void ratio** is
``void / (solder + void)`` voxels, and a bump **passes** when that ratio is at
most the threshold. A bump whose bounding box touches the volume border is
**partial**: part of it may lie outside the scan.

Bumps that touch each other (a solder bridge) form one component and are
reported as one bump; no attempt is made to split them.

Masks are read in z-slabs, so arrays larger than memory (zarr, dask, memmap)
can be measured: each slab is labelled on its own and components that meet
across a slab boundary are merged with a union-find. The result does not depend
on the slab depth.

The measuring is in :mod:`.bumps`, the slab-wise connected components in
:mod:`.components` and the CSV report in :mod:`.report`; the names below are
the Python API (docs/metrology.md).
"""

from napari_xrm_al.core.metrology.bumps import (
    Bump,
    iter_measure_bumps,
    measure_bumps,
    with_threshold,
)
from napari_xrm_al.core.metrology.report import write_bumps_csv

__all__ = [
    "Bump",
    "iter_measure_bumps",
    "measure_bumps",
    "with_threshold",
    "write_bumps_csv",
]
