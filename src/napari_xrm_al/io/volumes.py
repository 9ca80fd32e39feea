"""Open XRM volumes lazily: TIFF stacks, folders of TIFF slices, zarr, OME-Zarr,
ZEISS Xradia ``.txm`` / ``.txrm``.

:func:`open_volume` is the one entry point. It never reads every voxel: TIFFs
are memory-mapped or read page by page through tifffile's zarr store, zarr
arrays are used as they are, Xradia files are read one image stream per
slice, and contrast limits come from a strided :func:`subsample`. Every problem with the input is an
:class:`~napari_xrm_al.errors.InputError` naming the file; nothing is ever
opened for writing.

Arrays in :attr:`Volume.levels` are ``numpy.memmap``, ``zarr.Array`` or (when
a channel or singleton axis had to be dropped) ``dask.array.Array``; use
``np.asarray(volume.data[index])`` to get numbers.
"""

from __future__ import annotations

import hashlib
import math
import mmap
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_xrm_al.errors import InputError, XrmError, mib
from napari_xrm_al.io import tiff, xradia, zarr_volume
from napari_xrm_al.io._source import RawVolume, captured_log, reading
from napari_xrm_al.io.input_paths import check_input

#: Largest number of chunks (or slices) :func:`subsample` touches.
MAX_SAMPLED_CHUNKS = 16
#: Patches hashed by :func:`volume_fingerprint`: count and shape.
FINGERPRINT_PATCHES = 8
FINGERPRINT_PATCH = (2, 16, 16)

_DTYPE_KINDS = {
    "b": "boolean",
    "c": "complex",
    "O": "Python-object",
    "V": "structured (record)",
    "U": "text",
    "S": "byte-string",
    "M": "date-time",
    "m": "time-delta",
}


class MultichannelError(InputError):
    """A volume with several channels (or RGB samples) and no channel chosen."""

    def __init__(
        self, path: str | os.PathLike[str], problem: str, n: int, rgb: bool
    ) -> None:
        super().__init__(path, problem)
        self.n_channels = n
        self.rgb = rgb


def channel_note(channel: int, n: int) -> str:
    """The note a volume opened with ``channel=`` carries."""
    return f"Channel {channel} of {n} is used."


@dataclass
class Volume:
    """A lazily opened 3D volume.

    Attributes
    ----------
    path
        The file or folder it came from.
    levels
        Array-likes ``(z, y, x)``, full resolution first (several for
        multiscale OME-Zarr and pyramidal OME-TIFF).
    voxel_size, unit
        ``(z, y, x)`` size and length unit when the metadata give them.
    contrast_limits
        Display range from a subsample, ignoring NaN/Inf.
    fmt
        ``'tiff'``, ``'tiff-folder'``, ``'zarr'``, ``'ome-zarr'``, ``'txm'`` or
        ``'txrm'``.
    notes
        Things to tell the user once.
    instrument
        Acquisition metadata the file stores (label -> text), for display.
    """

    path: Path
    levels: list[Any]
    voxel_size: tuple[float, float, float] | None
    unit: str | None
    contrast_limits: tuple[float, float]
    fmt: str
    notes: list[str] = field(default_factory=list)
    instrument: dict[str, str] = field(default_factory=dict)

    @property
    def data(self) -> Any:
        """The full-resolution array."""
        return self.levels[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    def read(self, key: Any = ...) -> np.ndarray:
        """``np.asarray(self.data[key])``; :class:`InputError` if the stored bytes
        are broken (a damaged chunk or page), naming the file."""
        with reading(self.path, "a volume"):
            return np.asarray(self.data[key])


# -- reading --------------------------------------------------------------
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


def contrast_limits(sample: np.ndarray, notes: list[str]) -> tuple[float, float]:
    """Min and max of the finite values of ``sample`` (NaN/Inf noted once)."""
    values = sample
    if sample.dtype.kind == "f":
        finite = np.isfinite(sample)
        if not finite.all():
            notes.append(
                "The volume contains NaN or infinite values; they are treated "
                "as missing (contrast limits ignore them)."
            )
            values = sample[finite]
    if values.size == 0:
        return 0.0, 1.0
    low, high = float(values.min()), float(values.max())
    return (low, high) if high > low else (low, low + 1.0)


# -- axes -----------------------------------------------------------------
def _lazy_view(array: Any, index: tuple[Any, ...], order: tuple[int, ...]) -> Any:
    """``array[index].transpose(order)`` without reading any data."""
    if all(i == slice(None) for i in index) and order == tuple(range(len(order))):
        return array
    if isinstance(array, np.ndarray):
        return array[index].transpose(order)
    import dask.array as da

    return da.from_array(array, chunks=array.chunks, lock=False)[index].transpose(order)


def _describe(shape: Sequence[int], axes: str) -> str:
    return f"shape {tuple(shape)}, axes {axes}"


def _resolve(
    path: Path, raw: RawVolume, channel: int | None
) -> tuple[list[Any], list[str]]:
    """Pick the channel, drop singleton axes and order the rest as (z, y, x)."""
    shape = tuple(int(n) for n in raw.levels[0].shape)
    axes = raw.axes
    notes: list[str] = []
    kept = [
        i
        for i, (n, a) in enumerate(zip(shape, axes, strict=True))
        if n > 1 or a in "YX"
    ]
    channels = [i for i in kept if axes[i] in "CS"]
    stack = [i for i in kept if axes[i] not in "CSYX"]
    if "Y" not in axes or "X" not in axes or len(channels) > 1 or len(stack) > 1:
        raise InputError(
            path,
            f"has {len(kept)} dimensions ({_describe(shape, axes)}); only 3D "
            "volumes (z, y, x), optionally with one channel axis, are supported",
        )
    if not stack and channels and axes[channels[0]] == "C":
        # No 2D multichannel image is usable; files written by tifffile with
        # imagej=True and no axes store stacks this way.
        stack, channels = channels, []
        notes.append(
            f"The metadata name {shape[stack[0]]} channels and no slices; the "
            "channels are read as z slices."
        )
    what = "an RGB" if raw.rgb else "a multichannel"
    if not stack:
        plane = " × ".join(str(shape[axes.index(a)]) for a in "YX")
        kind = f"{what} 2D image" if channels else "a 2D image"
        raise InputError(
            path,
            f"is {kind} ({plane}), not a volume; open a 3D stack or a folder "
            "of 2D slices instead",
        )
    index: list[Any] = [slice(None) if i in kept else 0 for i in range(len(shape))]
    if channels:
        n = shape[channels[0]]
        if channel is None:
            raise MultichannelError(
                path,
                f"is {what} stack with {n} channels ({_describe(shape, axes)}); "
                "choose one with channel=N (command line: --channel N); napari "
                "opens each channel as its own image layer",
                n,
                raw.rgb,
            )
        if not 0 <= channel < n:
            raise InputError(
                path,
                f"has {n} channels (0 to {n - 1}); channel {channel} does not exist",
            )
        index[channels[0]] = channel
        notes.append(channel_note(channel, n))
    elif channel not in (None, 0):
        raise InputError(
            path, f"has a single channel; channel {channel} does not exist"
        )
    if axes[stack[0]] == "T":
        notes.append(f"The time axis ({shape[stack[0]]} frames) is read as z.")
    remaining = [i for i in range(len(shape)) if isinstance(index[i], slice)]
    order = tuple(
        remaining.index(i) for i in (stack[0], axes.index("Y"), axes.index("X"))
    )
    return [_lazy_view(level, tuple(index), order) for level in raw.levels], notes


def _check_dtype(path: Path, dtype: np.dtype) -> None:
    if dtype.kind in "uif" and dtype.fields is None:
        return
    kind = _DTYPE_KINDS.get(dtype.kind, "non-numeric")
    raise InputError(
        path,
        f"holds {kind} data ({dtype}); only integer or real floating-point "
        "volumes can be opened",
    )


# -- opening --------------------------------------------------------------
def _open_raw(path: Path) -> RawVolume:
    check_input(path)
    if path.is_dir():
        if zarr_volume.is_zarr_store(path):
            return zarr_volume.open_zarr(path)
        with reading(path, "a folder"):
            files = tiff.slice_files(path)
        if not files:
            raise InputError(
                path, "is a folder that is neither a zarr store nor holds TIFF slices"
            )
        return tiff.open_slices(files, folder=path)
    with reading(path, "a file"):
        size = path.stat().st_size
        is_tiff = size > 0 and tiff.has_tiff_header(path)
        is_ole = size > 0 and xradia.has_ole_header(path)
    if size == 0:
        raise InputError(path, "is empty (0 bytes)")
    if xradia.is_xradia_name(path) or (is_ole and not tiff.is_tiff_name(path)):
        if not is_ole:
            raise InputError(
                path,
                "is not a ZEISS .txm/.txrm file (it has no OLE compound-file header)",
            )
        return xradia.open_xradia(path)
    if not is_tiff:
        expected = (
            "a TIFF file" if tiff.is_tiff_name(path) else "a TIFF file or a zarr store"
        )
        raise InputError(path, f"is not {expected} (it has no TIFF header)")
    return tiff.open_tiff(path)


def open_volume(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    channel: int | None = None,
    max_memory: int | None = None,
) -> Volume:
    """Open a 3D volume lazily.

    Parameters
    ----------
    path
        A TIFF/BigTIFF/OME-TIFF file, a folder of 2D TIFF slices, a zarr
        array or OME-Zarr image, a ZEISS Xradia ``.txm`` / ``.txrm`` file; or
        a list of 2D TIFF slice files, stacked in the given order.
    channel
        Which channel to use when the data have several (or are RGB).
    max_memory
        Bytes one read may hold: a volume stored in larger chunks is refused
        before any is read (:func:`check_chunks_fit`); None = no limit.

    Raises
    ------
    InputError
        One sentence naming the file and what is wrong with it.
    """
    if isinstance(path, str | os.PathLike):
        source = Path(path)
        raw = _open_raw(source)
    else:
        files = [Path(p) for p in path]
        if not files:
            raise InputError("(no files)", "an empty list of files was given")
        if len(files) == 1:  # napari passes one dropped file as a list
            source = files[0]
            raw = _open_raw(source)
        else:
            for f in files:
                check_input(f)
                if f.is_dir() or not tiff.is_tiff_name(f):
                    raise InputError(
                        f, "is not a TIFF file; a list of slices must be TIFFs"
                    )
            source = files[0].parent
            raw = tiff.open_slices(files)
    if max_memory is not None:
        check_chunks_fit(raw.levels[0], max_memory, source)
    levels, notes = _resolve(source, raw, channel)
    _check_dtype(source, np.dtype(levels[0].dtype))
    notes = raw.notes + notes
    with reading(source, "a volume"):
        limits = contrast_limits(subsample(levels[0]), notes)
    return Volume(
        path=source,
        levels=levels,
        voxel_size=raw.voxel_size,
        unit=raw.unit,
        contrast_limits=limits,
        fmt=raw.fmt,
        notes=notes,
        instrument=raw.instrument,
    )


def is_mask(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a mask written by napari-xrm-al (a quiet probe)."""
    from napari_xrm_al.io.mask_reader import is_mask_store

    with captured_log("tifffile"):  # a broken TIFF is reported by open_volume
        return is_mask_store(path)


def storage(array: Any) -> str:
    """How an array is stored, for ``napari-xrm-al info``."""
    if isinstance(array, np.memmap):
        return "memory-mapped (uncompressed)"
    return f"chunks {chunk_shape(array)}"
