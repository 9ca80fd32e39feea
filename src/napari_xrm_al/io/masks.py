"""Writing label masks (annotations and predictions).

Masks are written slab by slab (:class:`MaskWriter`) into a hidden sibling and
renamed into place on commit, so a volume larger than memory can be exported
and a crash never leaves half a mask under the final name. The formats, chosen
from the file name, and the record every mask carries are described in
:mod:`~napari_xrm_al.io.mask_formats`; :mod:`~napari_xrm_al.io.mask_reader`
opens masks again.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.errors import XrmError
from napari_xrm_al.io.atomic import AtomicTarget
from napari_xrm_al.io.mask_formats import (
    ATTRS_KEY,
    MASK_AXES,
    MaskFormat,
    mask_format_for,
    mask_record,
    write_imagej_tiff,
    write_ome_metadata,
)

DEFAULT_CHUNKS = (16, 256, 256)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def label_dtype(classes: ClassTable) -> np.dtype:
    """The smallest unsigned dtype holding annotation ids ``0..C``."""
    return np.dtype(np.uint8 if len(classes) <= 255 else np.uint16)


def _compressor() -> BloscCodec:
    return BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")


class MaskWriter:
    """Stream a mask to disk slab by slab; nothing appears before :meth:`commit`.

    Parameters
    ----------
    path
        Final file or store name; its ending picks the format unless ``fmt``.
    shape
        ``(z, y, x)`` (or ``(y, x)``) shape of the mask.
    classes
        Class table; values written must lie in ``0..len(classes)``.
    fmt
        ``'ome-zarr'``, ``'zarr'`` or ``'tiff'``; default from ``path``.
    dtype
        Unsigned integer dtype stored.
    chunks
        zarr chunk shape; default ``(16, 256, 256)`` capped to ``shape``.
    voxel_size
        Voxel size per axis in micrometres, if known.
    name
        Mask name (the napari layer name on reading).
    provenance
        JSON-serialisable record of how the mask was made.

    Examples
    --------
    >>> with MaskWriter("pred.ome.zarr", vol.shape, table) as w:  # doctest: +SKIP
    ...     for z0 in range(0, vol.shape[0], 16):
    ...         w[z0 : z0 + 16] = predict(vol[z0 : z0 + 16])
    """

    def __init__(
        self,
        path: Path | str,
        shape: tuple[int, ...],
        classes: ClassTable,
        *,
        fmt: MaskFormat | None = None,
        dtype: Any = np.uint8,
        chunks: tuple[int, ...] | None = None,
        voxel_size: tuple[float, ...] | None = None,
        name: str = "segmentation",
        provenance: dict[str, Any] | None = None,
    ) -> None:
        self.fmt: MaskFormat = fmt or mask_format_for(path)
        if self.fmt not in get_args(MaskFormat):
            raise XrmError(
                f"Unknown mask format {fmt!r}; use one of {get_args(MaskFormat)}."
            )
        self.shape = tuple(int(s) for s in shape)
        self.classes = classes
        self.dtype = np.dtype(dtype)
        self.name = name
        self.voxel_size = _check_voxel_size(voxel_size, len(self.shape))
        self.chunks = _check_layout(self.shape, chunks, self.dtype, classes, name)
        self.attrs = mask_record(classes, name, self.voxel_size, provenance)
        self._target = AtomicTarget(path, is_dir=self.fmt != "tiff")
        self.path = self._target.final
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._scratch: AtomicTarget | None = None
        try:
            self._array = self._create_array()
        except BaseException:
            self.abort()
            raise
        self._open = True

    def _create_array(self) -> zarr.Array:
        spec = {
            "shape": self.shape,
            "dtype": self.dtype,
            "chunks": self.chunks,
            "compressors": _compressor(),
            "fill_value": 0,
            "dimension_names": MASK_AXES[-len(self.shape) :],
        }
        attrs = {ATTRS_KEY: self.attrs}
        if self.fmt == "ome-zarr":
            root = zarr.open_group(self._target.tmp, mode="w-", attributes=attrs)
            return root.create_array("0", **spec)
        if self.fmt == "zarr":
            return zarr.create_array(self._target.tmp, attributes=attrs, **spec)
        # TIFF pages must be written in order, so slabs are gathered in a scratch store.
        self._scratch = AtomicTarget(
            self.path.with_name(self.path.name + ".zarr"), is_dir=True
        )
        return zarr.create_array(self._scratch.tmp, **spec)

    @property
    def array(self) -> zarr.Array:
        """The zarr array being written (in the hidden temporary store)."""
        return self._array

    def __setitem__(self, key: Any, value: Any) -> None:
        if not self._open:
            raise RuntimeError(f"The mask writer for {self.path} is already closed.")
        block = np.asarray(value)
        if block.dtype.kind not in "biu":
            raise XrmError(
                f"Labels written to {self.path} must be integers, not {block.dtype}."
            )
        if block.size:
            lo, hi = int(block.min()), int(block.max())
            n = len(self.classes)
            if lo < 0 or hi > n:
                raise XrmError(
                    f"Label value {lo if lo < 0 else hi} written to {self.path} is outside "
                    f"0..{n} (0 = unlabelled, 1..{n} = {', '.join(self.classes.names)})."
                )
        self._array[key] = block.astype(self.dtype, copy=False)

    def commit(self) -> Path:
        """Write the metadata and move the mask to its final name."""
        if not self._open:
            raise RuntimeError(f"The mask writer for {self.path} is already closed.")
        self._open = False
        try:
            if self.fmt == "ome-zarr":
                write_ome_metadata(
                    self._target.tmp, self.name, self.classes, self.voxel_size
                )
            elif self.fmt == "tiff":
                write_imagej_tiff(
                    self._target.tmp, self._array, self.voxel_size, self.attrs
                )
            return self._target.commit()
        except BaseException:
            self._target.abort()
            raise
        finally:
            if self._scratch is not None:
                self._scratch.abort()

    def abort(self) -> None:
        """Discard everything written; the final name is left as it was."""
        self._open = False
        self._target.abort()
        if self._scratch is not None:
            self._scratch.abort()

    def __enter__(self) -> MaskWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _check_voxel_size(voxel_size: Any, ndim: int) -> tuple[float, ...] | None:
    if voxel_size is None:
        return None
    sizes = tuple(float(v) for v in voxel_size)
    if len(sizes) != ndim or not all(np.isfinite(v) and v > 0 for v in sizes):
        raise XrmError(
            f"Voxel size {voxel_size} must be {ndim} positive numbers (micrometres)."
        )
    return sizes


def _check_layout(
    shape: tuple[int, ...],
    chunks: tuple[int, ...] | None,
    dtype: np.dtype,
    classes: ClassTable,
    name: str,
) -> tuple[int, ...]:
    """Validate shape, dtype and name; return chunks capped to the shape."""
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise XrmError(f"A mask must be a non-empty 2D or 3D array, got shape {shape}.")
    if dtype.kind != "u" or np.iinfo(dtype).max < len(classes):
        raise XrmError(
            f"Mask dtype {dtype} cannot hold label values 0..{len(classes)}."
        )
    if not _NAME_RE.match(name):
        raise XrmError(f"Mask name {name!r} must be letters, digits, '.', '_' or '-'.")
    chunks = tuple(chunks or DEFAULT_CHUNKS[-len(shape) :])
    if len(chunks) != len(shape) or min(chunks) < 1:
        raise XrmError(f"Chunks {chunks} do not fit a mask of shape {shape}.")
    return tuple(min(int(c), s) for c, s in zip(chunks, shape, strict=True))


def write_mask(
    path: Path | str,
    labels: Any,
    classes: ClassTable,
    *,
    fmt: MaskFormat | None = None,
    voxel_size: tuple[float, ...] | None = None,
    name: str = "segmentation",
    provenance: dict[str, Any] | None = None,
    chunks: tuple[int, ...] | None = None,
) -> Path:
    """Write a whole mask (numpy, dask or zarr array) block by block.

    A dask or zarr input is never loaded whole: blocks are computed and written
    one at a time. Returns the final path.
    """
    import dask.array as da  # only here: the predict command never needs it

    writer = MaskWriter(
        path,
        tuple(labels.shape),
        classes,
        fmt=fmt,
        dtype=label_dtype(classes),
        chunks=chunks,
        voxel_size=voxel_size,
        name=name,
        provenance=provenance,
    )
    with writer:
        if isinstance(labels, da.Array):
            source = labels
        else:
            source = da.from_array(labels, chunks=(writer.chunks[0], *writer.shape[1:]))
        # The lock serialises writes that share a zarr chunk; threads keep the
        # writer out of any distributed scheduler.
        da.store(source, writer, lock=True, scheduler="threads")
    return writer.path
