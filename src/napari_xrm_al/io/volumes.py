"""Open XRM volumes lazily: TIFF stacks, folders of TIFF slices, zarr, OME-Zarr,
ZEISS Xradia ``.txm`` / ``.txrm``.

:func:`open_volume` is the one entry point. It never reads every voxel: TIFFs
are memory-mapped or read page by page through tifffile's zarr store, zarr
arrays are used as they are, Xradia files are read one image stream per
slice, and contrast limits come from a strided
:func:`~napari_xrm_al.io.array_reads.subsample`. Every problem with the input
is an :class:`~napari_xrm_al.errors.InputError` naming the file; nothing is
ever opened for writing.

The format openers (:mod:`.tiff`, :mod:`.zarr_volume`, :mod:`.xradia`) find a
raw volume, :mod:`.volume_axes` orders it as ``(z, y, x)``, and
:mod:`.array_reads` reads parts of it within bounds.

Arrays in :attr:`Volume.levels` are ``numpy.memmap``, ``zarr.Array`` or (when
a channel or singleton axis had to be dropped) ``dask.array.Array``; use
``np.asarray(volume.data[index])`` to get numbers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_xrm_al.errors import InputError
from napari_xrm_al.io import tiff, xradia, zarr_volume
from napari_xrm_al.io._source import RawVolume, captured_log, reading
from napari_xrm_al.io.array_reads import check_chunks_fit, subsample
from napari_xrm_al.io.input_paths import check_input
from napari_xrm_al.io.volume_axes import check_dtype, resolve_axes


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
        before any is read
        (:func:`~napari_xrm_al.io.array_reads.check_chunks_fit`); None = no limit.

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
    levels, notes = resolve_axes(source, raw, channel)
    check_dtype(source, np.dtype(levels[0].dtype))
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
