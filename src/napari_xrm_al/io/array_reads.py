"""Reading parts of a stored array without loading it all.

The arrays are those of a :class:`~napari_xrm_al.io.volumes.Volume` (zarr,
memory-mapped TIFF, dask): how they are chunked, whether one chunk fits a
memory limit, block reads that leave no file pages resident, a strided
:func:`subsample` and a :func:`volume_fingerprint` that each touch only a few
chunks.
"""

from __future__ import annotations

import hashlib
import math
import mmap
import os
from typing import Any

import numpy as np

from napari_xrm_al.errors import InputError, XrmError, mib

#: Largest number of chunks (or slices) :func:`subsample` touches.
MAX_SAMPLED_CHUNKS = 16
#: Patches hashed by :func:`volume_fingerprint`: count and shape.
FINGERPRINT_PATCHES = 8
FINGERPRINT_PATCH = (2, 16, 16)


def chunk_shape(data: Any) -> tuple[int, ...]:
    """The shape of one stored chunk (one slice for memory-mapped arrays)."""
    chunks = getattr(data, "chunksize", None) or getattr(data, "chunks", None)
    if chunks and all(isinstance(c, int | np.integer) for c in chunks):
        return tuple(int(c) for c in chunks)
    return (1, *data.shape[1:]) if data.ndim > 1 else tuple(data.shape)


def check_chunks_fit(
    data: Any, max_memory: int, path: str | os.PathLike[str] | None = None
) -> None:
    """Refuse ``data`` if one stored chunk, decoded, exceeds ``max_memory``.

    Any read decodes whole chunks, so such a volume cannot be read within
    the limit; memory-mapped arrays read only what is asked and always pass.
    :class:`InputError` naming ``path`` (:class:`XrmError` without one).
    """
    if isinstance(data, np.ndarray):
        return
    chunks = chunk_shape(data)
    need = math.prod(chunks) * np.dtype(data.dtype).itemsize
    if need <= max_memory:
        return
    problem = (
        f"is stored in chunks of {' × '.join(map(str, chunks))} voxels "
        f"({mib(need)} each, decoded whole on any read), more than the memory "
        f"limit of {mib(max_memory)}; raise the limit (--max-memory) or rechunk it"
    )
    if path is None:
        raise XrmError(f"The volume {problem}.")
    raise InputError(path, problem)


def _mapping(array: np.ndarray) -> mmap.mmap | None:
    """The memory map ``array`` views, if any."""
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return base if isinstance(base, mmap.mmap) else None


def read_block(data: Any, key: Any) -> np.ndarray:
    """``data[key]`` as a numpy array that owns its memory.

    From a memory-mapped file, the values are copied and the file's pages are
    then dropped from this process's resident memory (they stay in the page
    cache): every page a read touches would otherwise count towards the
    process's memory until the file is closed, so reading a large TIFF tile by
    tile would grow it to the whole file.
    """
    block = np.asarray(data[key])
    mapping = _mapping(block)
    if mapping is None:
        return block
    block = block.copy()
    if hasattr(mmap, "MADV_DONTNEED"):
        mapping.madvise(mmap.MADV_DONTNEED)
    return block


def subsample(data: Any, max_voxels: int = 1_000_000, seed: int = 0) -> np.ndarray:
    """A flat sample of at most ``max_voxels`` values, never the whole volume.

    Up to :data:`MAX_SAMPLED_CHUNKS` stored chunks (slices, for TIFF stacks),
    evenly spread, are read with a stride inside each so that the total
    stays within budget; ``seed`` moves the strided grid. Reading whole
    chunks is what the storage does anyway, so the cost is that of a few
    slices whatever the chunking.
    """
    shape = tuple(int(n) for n in data.shape)
    if not shape or 0 in shape:
        return np.asarray(data[...]).ravel()[:0]
    chunks = tuple(min(c, n) for c, n in zip(chunk_shape(data), shape, strict=True))
    grid = tuple(math.ceil(n / c) for n, c in zip(shape, chunks, strict=True))
    n_chunks = math.prod(grid)
    count = min(n_chunks, MAX_SAMPLED_CHUNKS)
    picks = np.unique(np.linspace(0, n_chunks - 1, count).round().astype(np.int64))
    budget = max(1, max_voxels // len(picks))
    rng = np.random.default_rng(seed)
    parts = []
    for flat in picks:
        block = np.unravel_index(int(flat), grid)
        starts = [b * c for b, c in zip(block, chunks, strict=True)]
        sizes = [min(c, n - s) for c, n, s in zip(chunks, shape, starts, strict=True)]
        stride = max(1, math.floor((math.prod(sizes) / budget) ** (1 / len(sizes))))
        while math.prod(math.ceil(s / stride) for s in sizes) > budget:
            stride += 1
        index = tuple(
            slice(s + o, s + n, stride)
            for s, n, o in zip(
                starts,
                sizes,
                (rng.integers(0, min(stride, n)) for n in sizes),
                strict=True,
            )
        )
        parts.append(read_block(data, index).ravel())
    return np.concatenate(parts)


def volume_fingerprint(data: Any) -> str:
    """``sha256:<hex>`` over shape, dtype and a few fixed small patches.

    The patches depend only on the shape, so the same voxels stored as TIFF
    or zarr give the same fingerprint; they touch at most a few chunks.
    """
    shape = tuple(int(n) for n in data.shape)
    dtype = np.dtype(data.dtype)
    digest = hashlib.sha256(f"{shape}|{dtype.newbyteorder('<').str}".encode())
    patch_shape = ((1,) * len(shape) + FINGERPRINT_PATCH)[-len(shape) :]
    size = [min(p, n) for p, n in zip(patch_shape, shape, strict=True)]
    rng = np.random.default_rng(0)
    for _ in range(FINGERPRINT_PATCHES if shape and 0 not in shape else 0):
        start = [
            int(rng.integers(0, n - s + 1)) for n, s in zip(shape, size, strict=True)
        ]
        box = tuple(slice(a, a + s) for a, s in zip(start, size, strict=True))
        little = dtype.newbyteorder("<")
        patch = read_block(data, box)
        digest.update(np.ascontiguousarray(patch, dtype=little).tobytes())
    return f"sha256:{digest.hexdigest()}"


def storage(array: Any) -> str:
    """How an array is stored, for ``napari-xrm-al info``."""
    if isinstance(array, np.memmap):
        return "memory-mapped (uncompressed)"
    return f"chunks {chunk_shape(array)}"
