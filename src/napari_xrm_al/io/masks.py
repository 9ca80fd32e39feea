"""Writing label masks (annotations and predictions).

Masks hold annotation ids: ``0`` = not labelled, ``1..C`` = the classes of a
:class:`~napari_xrm_al.classes.ClassTable`. Three formats are written,
chosen from the file name by :func:`mask_format_for`:

* ``*.ome.zarr``: an OME-Zarr (NGFF 0.5, zarr v3) ``image-label`` multiscale
  group at the store root, mask at ``0`` (``image-label`` colours and class
  names, voxel size as the ``scale`` transform); it validates with
  ome-zarr-models and opens as a Labels layer in napari-ome-zarr. Masks written
  before 0.2 hold the same group at ``labels/<name>``; they are still read;
* ``*.zarr``: one zarr v3 array at the store root, for training pipelines;
* ``*.tif`` / ``*.tiff``: an ImageJ hyperstack (zlib-compressed, BigTIFF when it
  exceeds 4 GB) with the voxel spacing ImageJ/Fiji understand.

Every format carries the same :data:`ATTRS_KEY` record: the class table
(:meth:`ClassTable.to_dict`), voxel size (micrometres), mask name and
provenance. Masks are written slab by slab (:class:`MaskWriter`) into a hidden
sibling and renamed into place on commit, so a volume larger than memory can be
exported and a crash never leaves half a mask under the final name.
:mod:`~napari_xrm_al.io.mask_reader` opens them again.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import tifffile
import zarr
from zarr.codecs import BloscCodec

from napari_xrm_al import __version__
from napari_xrm_al.classes import ClassTable
from napari_xrm_al.errors import XrmError
from napari_xrm_al.io.atomic import AtomicTarget, json_default

MaskFormat = Literal["ome-zarr", "zarr", "tiff"]

#: Attribute key (zarr) / ImageJ property holding our metadata record.
ATTRS_KEY = "napari_xrm_al"
#: Unit of ``voxel_size`` everywhere in napari-xrm-al.
VOXEL_UNIT = "micrometer"
DEFAULT_CHUNKS = (16, 256, 256)
_AXES = ("z", "y", "x")
# Same threshold tifffile uses: above it offsets no longer fit classic TIFF.
_CLASSIC_TIFF_LIMIT = 2**32 - 2**25
#: Pages of a TIFF mask are read from the scratch store in slabs of at most
#: this many bytes (at least one page) while writing.
TIFF_SLAB_BYTES = 64 * 2**20
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def mask_format_for(path: Path | str) -> MaskFormat:
    """The mask format implied by a file name (``.ome.zarr``, ``.zarr``, ``.tif``)."""
    name = Path(path).name.lower()
    if name.endswith(".ome.zarr"):
        return "ome-zarr"
    if name.endswith(".zarr"):
        return "zarr"
    if name.endswith((".tif", ".tiff")):
        return "tiff"
    raise XrmError(
        f"Cannot tell the mask format of {path}: use a name ending in "
        "'.ome.zarr', '.zarr' or '.tif'."
    )


def label_dtype(classes: ClassTable) -> np.dtype:
    """The smallest unsigned dtype holding annotation ids ``0..C``."""
    return np.dtype(np.uint8 if len(classes) <= 255 else np.uint16)


def _compressor() -> BloscCodec:
    return BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")


def _hex_to_rgba(colour: str) -> list[int]:
    return [int(colour[i : i + 2], 16) for i in (1, 3, 5)] + [255]


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
        self.attrs = _mask_attrs(classes, name, self.voxel_size, provenance)
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
            "dimension_names": _AXES[-len(self.shape) :],
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
                _write_ome_metadata(
                    self._target.tmp, self.name, self.classes, self.voxel_size
                )
            elif self.fmt == "tiff":
                _write_tiff(self._target.tmp, self._array, self.voxel_size, self.attrs)
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


def _mask_attrs(
    classes: ClassTable,
    name: str,
    voxel_size: tuple[float, ...] | None,
    provenance: dict[str, Any] | None,
) -> dict[str, Any]:
    """The record stored with every mask (JSON-normalised)."""
    record = {
        "kind": "mask",
        "format_version": 1,
        "software": f"napari-xrm-al {__version__}",
        "name": name,
        **classes.to_dict(),
        "voxel_size": list(voxel_size) if voxel_size else None,
        "voxel_unit": VOXEL_UNIT,
        "provenance": provenance or {},
    }
    return json.loads(json.dumps(record, default=json_default))


def _write_ome_metadata(
    root: Path, name: str, classes: ClassTable, voxel_size: tuple[float, ...] | None
) -> None:
    """NGFF ``multiscales`` + ``image-label`` metadata through ome-zarr's writers.

    ``image-label`` lists the classes ``1..C`` in both ``colors`` and
    ``properties`` (ome-zarr-models requires the same label values in both);
    ``0``, not labelled, is left out and shown transparent.
    """
    # Imported here: ome-zarr's writer pulls in scikit-image and dask (~80 MB).
    from ome_zarr.format import CurrentFormat
    from ome_zarr.writer import add_metadata, write_multiscales_metadata

    fmt = CurrentFormat()
    group = zarr.open_group(root, mode="r+")
    ndim = group["0"].ndim
    axes = list(_AXES[-ndim:])
    scale = list(voxel_size) if voxel_size else [1.0] * ndim
    write_multiscales_metadata(
        group,
        datasets=[
            {
                "path": "0",
                "coordinateTransformations": [{"type": "scale", "scale": scale}],
            }
        ],
        fmt=fmt,
        axes=axes,
        axes_units=dict.fromkeys(axes, VOXEL_UNIT) if voxel_size else None,
        name=name,
    )
    colors = [
        {"label-value": i + 1, "rgba": _hex_to_rgba(c)}
        for i, c in enumerate(classes.colours)
    ]
    properties = [
        {"label-value": i + 1, "class": n, "dense-id": i, "rare": n in classes.rare}
        for i, n in enumerate(classes.names)
    ]
    image_label = {"colors": colors, "properties": properties, "version": fmt.version}
    add_metadata(group, {"image-label": image_label}, fmt=fmt)


def _write_tiff(
    path: Path,
    array: zarr.Array,
    voxel_size: tuple[float, ...] | None,
    attrs: dict[str, Any],
) -> None:
    """Write ``array`` as an ImageJ hyperstack, one page at a time."""

    def pages():
        page = math.prod(array.shape[-2:]) * array.dtype.itemsize
        step = max(1, min(array.chunks[0], TIFF_SLAB_BYTES // page))
        step = step if array.ndim == 3 else array.shape[0]
        for z0 in range(0, array.shape[0], step):
            slab = array[z0 : z0 + step]
            yield from slab if array.ndim == 3 else [slab]

    metadata: dict[str, Any] = {
        "axes": "ZYX"[-array.ndim :],
        "Properties": {ATTRS_KEY: json.dumps(attrs)},
    }
    kwargs: dict[str, Any] = {}
    if voxel_size:
        metadata["unit"] = "um"
        if array.ndim == 3:
            metadata["spacing"] = voxel_size[0]
        kwargs["resolution"] = (1 / voxel_size[-1], 1 / voxel_size[-2])
    bigtiff = array.nbytes > _CLASSIC_TIFF_LIMIT
    with warnings.catch_warnings():
        # ImageJ itself cannot open BigTIFF; tifffile and Fiji (Bio-Formats) can.
        warnings.filterwarnings("ignore", message=".*nonconformant BigTIFF ImageJ")
        with tifffile.TiffWriter(path, bigtiff=bigtiff, imagej=True) as tif:
            tif.write(
                pages(),
                shape=array.shape,
                dtype=array.dtype,
                compression="zlib",
                metadata=metadata,
                **kwargs,
            )


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
