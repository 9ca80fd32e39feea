"""A paintable 3D annotation volume that keeps only a few slices in memory.

napari's Labels layer reads and writes its ``data`` with numpy indexing: the
displayed plane with basic indexing, and brush strokes, fills and undo with a
tuple of coordinate arrays (``data[(zs, ys, xs)] = v``). A zarr array cannot
take the latter (zarr reads it as *orthogonal* indexing), and a numpy copy of a
40 GB scan's annotations does not fit in memory. :class:`PaintVolume` answers
both: every read and write is split into per-slice operations on 2D numpy
slices, read from the store on first use, kept in a small LRU cache, and
written back to the store only by :meth:`PaintVolume.flush` (slices with
unsaved writes are never evicted). A failed write keeps the slice unsaved.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

#: Clean (saved) slices kept in memory by default.
DEFAULT_CACHED_SLICES = 32


class PaintVolume:
    """A numpy-like volume over a store read and written one slice at a time.

    Parameters
    ----------
    shape, dtype
        Of the whole volume.
    axis
        The slice axis: the store's unit of reading and writing.
    read_plane
        ``read_plane(i)`` returns slice ``i`` along ``axis`` as a 2D array.
    write_plane
        ``write_plane(i, values)`` stores slice ``i``.
    on_write
        Called with the slice indices every write touches.
    cached_slices
        Clean slices kept in memory (least recently used are dropped).
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        dtype: Any,
        axis: int,
        read_plane: Callable[[int], np.ndarray],
        write_plane: Callable[[int, np.ndarray], None],
        on_write: Callable[[set[int]], None] | None = None,
        cached_slices: int = DEFAULT_CACHED_SLICES,
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self.axis = int(axis)
        self.read_plane = read_plane
        self.write_plane = write_plane
        self.on_write = on_write
        self.cached_slices = int(cached_slices)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._dirty: set[int] = set()

    # -- numpy protocol ------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of voxels."""
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """The whole volume in memory: only for small volumes and tests."""
        out = np.stack([self.plane(i) for i in range(self.shape[self.axis])], self.axis)
        return out.astype(dtype) if dtype is not None else out

    def __getitem__(self, key: Any) -> Any:
        coords = _coordinate_arrays(key, self.ndim)
        if coords is not None:
            return self._get_points(coords)
        along, rest = self._split(key)
        if isinstance(along, int):
            return self.plane(along)[rest]
        parts = [self.plane(i)[rest] for i in along]
        if not parts:
            shape = list(np.empty(self.plane(0).shape)[rest].shape)
            shape.insert(self._position(key), 0)
            return np.zeros(shape, self.dtype)
        return np.stack(parts, axis=self._position(key))

    def __setitem__(self, key: Any, value: Any) -> None:
        coords = _coordinate_arrays(key, self.ndim)
        if coords is not None:
            self._set_points(coords, value)
            return
        if (
            isinstance(key, np.ndarray)
            and key.dtype == bool
            and key.shape == self.shape
        ):
            coords = np.nonzero(key)
            value = np.asarray(value)
            self._set_points(coords, value if value.ndim == 0 else value[key])
            return
        along, rest = self._split(key)
        if isinstance(along, int):
            self._writable(along)[rest] = value
            self._notify({along})
            return
        value = np.broadcast_to(np.asarray(value, self.dtype), self[key].shape)
        position = self._position(key)
        for n, index in enumerate(along):
            self._writable(index)[rest] = np.take(value, n, axis=position)
        self._notify(set(along))

    # -- slices --------------------------------------------------------------
    def plane(self, index: int) -> np.ndarray:
        """Slice ``index`` along the axis (a cached array: do not keep it)."""
        index = int(index)
        plane = self._cache.get(index)
        if plane is None:
            plane = np.array(self.read_plane(index), dtype=self.dtype)
            self._cache[index] = plane
            self._evict()
        else:
            self._cache.move_to_end(index)
        return plane

    @property
    def dirty(self) -> set[int]:
        """Slices written since the last :meth:`flush`."""
        return set(self._dirty)

    def flush(self, indices: Iterable[int] | None = None) -> list[int]:
        """Write unsaved slices (all, or ``indices``) to the store; returns them."""
        todo = sorted(self._dirty if indices is None else self._dirty & set(indices))
        for index in todo:
            self.write_plane(index, self._cache[index])
            self._dirty.discard(index)
        self._evict()
        return todo

    # -- internals -----------------------------------------------------------
    def _writable(self, index: int) -> np.ndarray:
        plane = self.plane(index)
        self._dirty.add(int(index))
        return plane

    def _notify(self, touched: set[int]) -> None:
        if touched and self.on_write is not None:
            self.on_write(touched)

    def _evict(self) -> None:
        clean = [i for i in self._cache if i not in self._dirty]
        for index in clean[: max(0, len(clean) - self.cached_slices)]:
            del self._cache[index]

    def _rest_key(self, key: Any) -> tuple[Any, ...]:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - len(key) + 1) + key[at + 1 :]
        if any(k is None for k in key):
            raise IndexError("PaintVolume does not support new axes (None).")
        return key + (slice(None),) * (self.ndim - len(key))

    def _position(self, key: Any) -> int:
        """Where the slice axis lands in ``self[key]`` (ints drop their axis)."""
        return sum(1 for k in self._rest_key(key)[: self.axis] if not _is_int(k))

    def _split(self, key: Any) -> tuple[int | list[int], tuple[Any, ...]]:
        """Key along the slice axis (an index or a list of them) and the rest."""
        full = self._rest_key(key)
        n = self.shape[self.axis]
        part = full[self.axis]
        rest = full[: self.axis] + full[self.axis + 1 :]
        if _is_int(part):
            index = int(part)
            if not -n <= index < n:
                raise IndexError(f"index {index} is out of bounds for size {n}")
            return index % n, rest
        if isinstance(part, slice):
            return list(range(*part.indices(n))), rest
        values = np.asarray(part)
        if values.dtype == bool:
            return [int(i) for i in np.flatnonzero(values)], rest
        return [int(i) % n for i in values.ravel()], rest

    def _get_points(self, coords: tuple[np.ndarray, ...]) -> np.ndarray:
        coords = np.broadcast_arrays(*coords)
        out = np.empty(coords[0].shape, self.dtype)
        along = coords[self.axis]
        inner = [c for a, c in enumerate(coords) if a != self.axis]
        for index in np.unique(along):
            hit = along == index
            out[hit] = self.plane(int(index))[tuple(c[hit] for c in inner)]
        return out

    def _set_points(self, coords: tuple[np.ndarray, ...], value: Any) -> None:
        coords = np.broadcast_arrays(*coords)
        value = np.broadcast_to(np.asarray(value, dtype=self.dtype), coords[0].shape)
        along = coords[self.axis] % self.shape[self.axis]
        inner = [c for a, c in enumerate(coords) if a != self.axis]
        touched = set()
        for index in np.unique(along):
            hit = along == index
            self._writable(int(index))[tuple(c[hit] for c in inner)] = value[hit]
            touched.add(int(index))
        self._notify(touched)


def _is_int(k: Any) -> bool:
    return isinstance(k, int | np.integer) and not isinstance(k, bool)


def _coordinate_arrays(key: Any, ndim: int) -> tuple[np.ndarray, ...] | None:
    """``key`` as one integer coordinate array per axis, if it is point indexing."""
    if not isinstance(key, tuple) or len(key) != ndim:
        return None
    if not all(isinstance(k, np.ndarray | list) for k in key):
        return None
    arrays = tuple(np.asarray(k) for k in key)
    if not all(a.dtype.kind in "iu" for a in arrays):
        return None
    return arrays
