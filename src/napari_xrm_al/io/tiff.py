"""TIFF stacks and folders of 2D TIFF slices, opened lazily.

Uncompressed contiguous files are memory-mapped; everything else goes through
tifffile's zarr store (``aszarr``), which decodes one page (or tile) at a
time. Calibration comes from ImageJ metadata (``spacing``, ``unit`` and the
resolution tags) or OME-XML (``PhysicalSize*``); the resolution tags of plain
TIFFs are ignored, as most writers fill them with a meaningless 72 dpi.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from napari_xrm_al.errors import InputError
from napari_xrm_al.io._source import (
    RawVolume,
    calibration,
    captured_log,
    reading,
)
from napari_xrm_al.io.input_paths import refuse_special

#: File name endings treated as TIFF (compared in lower case).
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")
#: Classic and BigTIFF headers, little- and big-endian.
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def is_tiff_name(path: Path) -> bool:
    """Whether the file name ends like a TIFF."""
    return path.name.lower().endswith(TIFF_SUFFIXES)


def has_tiff_header(path: Path) -> bool:
    """Whether the file starts with a TIFF or BigTIFF header."""
    with open(path, "rb") as fh:
        return fh.read(4) in TIFF_MAGIC


def slice_files(folder: Path) -> list[Path]:
    """The TIFF files directly in ``folder``, in natural order (``s2`` < ``s10``).

    A slice that is not a regular file (a FIFO, a device) is refused rather
    than skipped: the stack would silently miss a slice.
    """
    names = []
    for entry in os.scandir(folder):
        if entry.name.startswith(".") or not is_tiff_name(Path(entry.name)):
            continue
        if entry.is_file():
            names.append(entry.name)
        elif not entry.is_dir():
            refuse_special(folder / entry.name)
    return [folder / name for name in tifffile.natural_sorted(names)]


def _tiff_calibration(
    tif: tifffile.TiffFile, notes: list[str]
) -> tuple[tuple[float, float, float] | None, str | None]:
    """Voxel size from OME-XML or ImageJ metadata, else None."""
    if tif.is_ome:
        meta = tifffile.xml2dict(tif.ome_metadata or "").get("OME", {})
        image = meta.get("Image", {})
        pixels = (image[0] if isinstance(image, list) else image).get("Pixels", {})
        sizes = [pixels.get(f"PhysicalSize{a}") for a in "ZYX"]
        return calibration(sizes, pixels.get("PhysicalSizeXUnit", "µm"), notes)
    if tif.is_imagej:
        meta = tif.imagej_metadata or {}
        tags = tif.pages.first.tags
        spacing: list[float | None] = [meta.get("spacing")]
        for name in ("YResolution", "XResolution"):
            tag = tags.get(name)
            num, den = tag.value if tag is not None else (1, 1)
            spacing.append(den / num if num else None)
        return calibration(spacing, meta.get("unit"), notes)
    return None, None


def _data_end(tif: tifffile.TiffFile, series: Any) -> int:
    """Byte offset just past the last image data of ``series`` in this file."""
    if series.dataoffset is not None:
        return int(series.dataoffset + series.nbytes)
    ends = [
        offset + count
        for page in series.pages
        if page is not None and page.parent is tif  # multi-file OME: other files
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False)
    ]
    return int(max(ends, default=0))


def _misplaced_data(tif: tifffile.TiffFile, series: Any) -> str | None:
    """What is wrong with where the image data of ``series`` lie, if anything.

    Image data never share bytes with the header, an IFD, a tag value or
    other image data, and a strip has bytes exactly when it has an offset (both zero
    marks a sparse, empty strip). A damaged strip offset or byte count would
    otherwise be read, silently, as shifted pixels or zeros.
    """
    tiff = tif.tiff
    spans = [(0, 16 if tif.is_bigtiff else 8, "the file header")]
    handle = tif.filehandle
    pages = [p for p in series.pages if p is not None and p.parent is tif]
    for page in pages:
        handle.seek(page.offset)
        (count,) = struct.unpack(tiff.tagnoformat, handle.read(tiff.tagnosize))
        end = page.offset + tiff.tagnosize + count * tiff.tagsize + tiff.offsetsize
        spans.append((page.offset, end, f"the directory at byte {page.offset}"))
        for tag in getattr(page, "tags", None) or ():  # values stored apart
            if not page.offset <= tag.valueoffset < end:
                size = max(1, tag.valuebytecount)
                spans.append(
                    (tag.valueoffset, tag.valueoffset + size, f"tag {tag.code}")
                )
        for offset, size in zip(page.dataoffsets, page.databytecounts, strict=False):
            if (offset == 0) != (size == 0):
                return f"a strip at byte {offset} has {size} bytes"
    if series.dataoffset is not None:
        spans.append((series.dataoffset, series.dataoffset + series.nbytes, "data"))
        if gap := _gap_in_contiguous(series.dataoffset, series.pages):
            return gap
    else:
        for page in pages:
            for offset, size in zip(
                page.dataoffsets, page.databytecounts, strict=False
            ):
                spans.append((offset, offset + size, "data"))
    spans.sort()
    for (start, end, what), (start2, _, what2) in zip(spans, spans[1:], strict=False):
        if start2 < end and "data" in (what, what2):
            other = what2 if what == "data" else what
            return f"image data at byte {max(start, start2)} overlap {other}"
    return None


def _gap_in_contiguous(start: int, pages: Sequence[Any]) -> str | None:
    """Where the strips of a series read as one block from ``start`` do not
    follow each other, if anywhere: the block read would put another page's
    bytes (or bytes that are no pixels) into a slice."""
    expected = start
    for page in pages:
        if page is None:  # not loaded: the block's check stops at the gap
            return None
        for offset, size in zip(page.dataoffsets, page.databytecounts, strict=False):
            if offset != expected:
                return (
                    f"a strip of the image data starts at byte {offset} where the "
                    f"data before it end at byte {expected}"
                )
            expected = offset + size
    return None


def _interleaved(series: Any) -> str | None:
    """Whether pages of another image lie between the pages of ``series``: a
    stack with one damaged page header (another dtype or size) would
    otherwise read without that slice, the slices after it shifted."""
    index = sorted(
        p.index for p in series.pages if p is not None and hasattr(p, "index")
    )
    gaps = [i for i, j in zip(index, index[1:], strict=False) if j != i + 1]
    if not gaps:
        return None
    return (
        f"page {gaps[0] + 2} of the stack is unlike the pages around it (another "
        "pixel type or size), so the stack is damaged or mixes images"
    )


def _inspect(path: Path) -> dict[str, Any]:
    """Read a TIFF's structure (no pixel data); raise InputError if broken."""
    notes: list[str] = []
    with (
        reading(path, "a TIFF"),
        captured_log("tifffile") as log,
        tifffile.TiffFile(path) as tif,
    ):
        if not tif.series:
            raise InputError(path, "is a TIFF file without any image data")
        series = tif.series[0]
        axes = series.axes.upper()
        info = {
            "shape": tuple(series.shape),
            "axes": axes,
            "dtype": series.dtype,
            "levels": len(series.levels),
            "contiguous": series.dataoffset is not None,
            "rgb": "S" in axes and series.keyframe.photometric in (2, 6),
            "end": _data_end(tif, series),
            "n_series": len(tif.series),
        }
        info["voxel"] = _tiff_calibration(tif, notes)
        info["misplaced"] = _misplaced_data(tif, series) or _interleaved(series)
    if log.messages:
        detail = re.sub(r"^<[^>]*>\s*", "", log.messages[0])
        raise InputError(path, f"is truncated or corrupt (tifffile: {detail})")
    if info["misplaced"]:
        raise InputError(path, f"is corrupt: {info['misplaced']}")
    size = path.stat().st_size
    if info["end"] > size:
        raise InputError(
            path,
            f"is truncated: its image data need {info['end']} bytes "
            f"but the file has only {size}",
        )
    if info["n_series"] > 1:
        notes.append(
            f"The file holds {info['n_series']} images; the first one "
            f"(shape {info['shape']}) is used."
        )
    info["notes"] = notes
    return info


def open_tiff(path: Path) -> RawVolume:
    """Open a TIFF / BigTIFF / ImageJ / OME-TIFF stack lazily."""
    info = _inspect(path)
    levels: list[Any] = []
    with reading(path, "a TIFF"):
        if info["contiguous"] and info["levels"] == 1:
            try:
                levels = [tifffile.memmap(path, series=0, mode="r")]
            except ValueError:  # e.g. unusual bit or fill order: use the store
                levels = []
        if not levels:
            levels = [
                zarr.open_array(
                    tifffile.imread(path, aszarr=True, series=0, level=level),
                    mode="r",
                )
                for level in range(info["levels"])
            ]
    voxel, unit = info["voxel"]
    return RawVolume(
        levels=levels,
        axes=info["axes"],
        fmt="tiff",
        voxel_size=voxel,
        unit=unit,
        notes=info["notes"],
        rgb=info["rgb"],
    )


def _read_slice(filename: str, **kwargs: Any) -> np.ndarray:
    """Read one slice file; a broken slice names itself in the error."""
    path = Path(filename)
    with reading(path, "a TIFF slice"):
        return tifffile.imread(path, **kwargs)


def open_slices(files: Sequence[Path], folder: Path | None = None) -> RawVolume:
    """Open 2D TIFF slices (in the given order) as one lazy stack.

    Only the first, middle and last slices are inspected up front; they must
    agree in shape and dtype. A single file is opened as a stack of its own.
    """
    if len(files) == 1:
        return open_tiff(files[0])
    first = _inspect(files[0])
    kept = [
        (n, a)
        for n, a in zip(first["shape"], first["axes"], strict=True)
        if n > 1 or a in "YX"
    ]
    slice_axes = "".join(a for _, a in kept)
    if slice_axes not in ("YX", "YXS"):
        raise InputError(
            files[0],
            f"is not a 2D slice (shape {first['shape']}, axes {first['axes']}); "
            "a folder or list of slices needs one 2D image per file",
        )
    for other in {files[len(files) // 2], files[-1]} - {files[0]}:
        info = _inspect(other)
        if info["shape"] != first["shape"] or info["dtype"] != first["dtype"]:
            raise InputError(
                other,
                f"has shape {info['shape']} and dtype {info['dtype']}, "
                f"unlike the first slice {files[0].name} "
                f"({first['shape']}, {first['dtype']})",
            )
    sequence = tifffile.TiffSequence([os.fspath(f) for f in files], imread=_read_slice)
    with reading(folder or files[0], "TIFF slices"):
        store = sequence.aszarr(
            chunkshape=tuple(n for n, _ in kept), chunkdtype=first["dtype"]
        )
        array = zarr.open_array(store, mode="r")
    voxel, unit = first["voxel"]
    return RawVolume(
        levels=[array],
        axes="Z" + slice_axes,
        fmt="tiff-folder",
        voxel_size=voxel,
        unit=unit,
        notes=list(first["notes"]),
        rgb=first["rgb"],
    )
