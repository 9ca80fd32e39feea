"""Connected components of a mask too large for memory, labelled slab by slab.

Each z-slab is labelled on its own with ``scipy.ndimage.label``; components
that meet across a slab boundary are merged with a union-find, so the result
does not depend on the slab depth.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


class SlabComponents:
    """Connected components of a binary mask given slab by slab along z.

    Components get provisional ids, consecutive over slabs. Those that touch
    across a slab boundary are merged, the smallest id becoming the root.
    ``ndimage.label`` numbers components in raster order and slabs come in z
    order, so a root is the id of the component's first voxel in raster order
    and the final order does not depend on the slab depth.
    """

    def __init__(self, connectivity: int) -> None:
        self._structure = ndimage.generate_binary_structure(
            3, 1 if connectivity == 6 else 3
        )
        self._diagonal = connectivity == 26
        self._parent: dict[int, int] = {}
        self._last_plane: np.ndarray | None = None
        self.count = 0

    def add(self, mask: np.ndarray) -> tuple[np.ndarray, int, int]:
        """Label one slab; returns its local labels, their id offset and count."""
        labels, n = ndimage.label(mask, self._structure)
        offset = self.count
        first = np.where(labels[0] > 0, labels[0].astype(np.int64) + offset, 0)
        if self._last_plane is not None:
            self._merge(self._last_plane, first)
        last = labels[-1]
        self._last_plane = np.where(last > 0, last.astype(np.int64) + offset, 0)
        self.count += n
        return labels, offset, n

    def _merge(self, below: np.ndarray, above: np.ndarray) -> None:
        shifts = (-1, 0, 1) if self._diagonal else (0,)
        pairs = []
        for dy in shifts:
            for dx in shifts:
                a = below[max(dy, 0) : below.shape[0] + min(dy, 0)]
                a = a[:, max(dx, 0) : below.shape[1] + min(dx, 0)]
                b = above[max(-dy, 0) : above.shape[0] + min(-dy, 0)]
                b = b[:, max(-dx, 0) : above.shape[1] + min(-dx, 0)]
                touching = (a > 0) & (b > 0)
                # One int64 key per touching pair; ids stay far below 2**31.
                pairs.append(a[touching] << 32 | b[touching])
        for key in np.unique(np.concatenate(pairs)).tolist():
            ra, rb = self._find(key >> 32), self._find(key & 0xFFFFFFFF)
            if ra != rb:
                self._parent[max(ra, rb)] = min(ra, rb)

    def _find(self, i: int) -> int:
        while i in self._parent:
            i = self._parent[i]
        return i

    def roots(self) -> np.ndarray:
        """Root id of every provisional id ``1..count`` (index ``i - 1``)."""
        parent = np.arange(self.count + 1)
        if self._parent:
            keys = np.fromiter(self._parent, np.int64)
            parent[keys] = np.fromiter(self._parent.values(), np.int64)
            while True:
                jumped = parent[parent]
                if np.array_equal(jumped, parent):
                    break
                parent = jumped
        return parent[1:]
