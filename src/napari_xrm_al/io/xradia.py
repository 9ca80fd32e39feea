"""ZEISS Xradia ``.txm`` / ``.txrm`` files (OLE compound files), opened lazily.

ZEISS Versa instruments store a reconstructed volume (``.txm``) or a series of
projections (``.txrm``) as an OLE compound file holding one stream per value.
The stream names and types read here are the public layout used by dxchange
(``dxchange/reader.py``: ``read_txrm``, ``read_ole_metadata``) and txrm2tiff
(``src/txrm2tiff/xradia_properties/stream_dtypes.py`` and ``enums.py``,
``src/txrm2tiff/txrm/abstract.py``):

- ``ImageInfo/ImageWidth`` and ``ImageInfo/ImageHeight`` (int32); the image
  count ``ImageInfo/ImagesTaken``, else ``ImageInfo/NoOfImages``;
- ``ImageInfo/DataType``, Xradia's pixel type code (5 uint16, 10 float32, ...);
- ``ImageInfo/PixelSize`` (float32, µm): the voxel size;
- image ``k`` (from 1) in the stream ``ImageData<ceil(k/100)>/Image<k>``,
  little-endian rows, stored as written (dxchange's orientation; txrm2tiff
  flips the rows to match ZEISS XRM Data Explorer);
- optional, for ``napari-xrm-al info``: ``ImageInfo/XrayVoltage`` (kV),
  ``ImageInfo/XrayCurrent`` (µA), ``ImageInfo/ExpTimes`` (s),
  ``ImageInfo/Date``, ``SampleInfo/SampleID``; and the reference (open-beam)
  image ``ReferenceData/Image`` with its ``ReferenceData/DataType``.

Opening reads the directory and the small metadata streams only; reading a
slice opens that slice's image stream alone. A projection series (``.txrm``)
that stores a reference image is reference-corrected: each slice is
``image / reference`` in float32 (transmission, 1 = open beam; NaN where the
reference is 0). A reconstruction (``.txm``) is used as stored.
"""

from __future__ import annotations

import math
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import olefile
from olefile.olefile import OleFileError  # not re-exported by the package

from napari_xrm_al.errors import InputError
from napari_xrm_al.io._source import RawVolume, calibration, reading

#: File name endings of ZEISS Xradia volumes (compared in lower case).
XRADIA_SUFFIXES = (".txm", ".txrm")
#: The first bytes of every OLE compound file.
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
#: Images per ``ImageData<n>`` storage.
IMAGES_PER_STORAGE = 100
#: Xradia's ``XrmDataTypes`` codes -> numpy dtypes (as txrm2tiff's ``enums.py``).
XRM_DTYPES = {
    2: "i1",
    3: "u1",
    4: "<i2",
    5: "<u2",
    6: "<i4",
    7: "<u4",
    8: "<i8",
    9: "<u8",
    10: "<f4",
    11: "<f8",
}
#: Pixel types by bytes per pixel, when ``ImageInfo/DataType`` is missing.
GUESSED_DTYPES = {2: "<u2", 4: "<f4"}
REFERENCE = "ReferenceData/Image"
#: Instrument metadata: label, streams tried in order, unit.
INSTRUMENT_VALUES = (
    ("voltage", ("ImageInfo/XrayVoltage", "ImageInfo/Voltage"), "kV"),
    ("current", ("ImageInfo/XrayCurrent", "ImageInfo/Current"), "µA"),
    ("exposure", ("ImageInfo/ExpTimes", "ImageInfo/ExpTime"), "s"),
)
SAMPLE, DATE = "SampleInfo/SampleID", "ImageInfo/Date"
_IMAGE_STREAM = re.compile(r"imagedata\d+/image(\d+)")
#: A date as ZEISS writes it (``MM/DD/YYYY hh:mm:ss.ff``, older files ``YY``),
#: as txrm2tiff parses it; the stream holds one per image.
_DATE = re.compile(rb"\d\d/\d\d/(\d\d)?\d\d \d\d:\d\d:\d\d(\.\d+)?")


def is_xradia_name(path: Path) -> bool:
    """Whether the file name ends like a ZEISS Xradia volume."""
    return path.name.lower().endswith(XRADIA_SUFFIXES)


def has_ole_header(path: Path) -> bool:
    """Whether the file starts with the OLE compound-file signature."""
    with open(path, "rb") as fh:
        return fh.read(len(OLE_MAGIC)) == OLE_MAGIC


def image_stream(index: int) -> str:
    """The stream of image ``index`` (from 0): ``ImageData<ceil(k/100)>/Image<k>``
    with ``k = index + 1``."""
    k = index + 1
    return f"ImageData{math.ceil(k / IMAGES_PER_STORAGE)}/Image{k}"


def _numbers(ole: olefile.OleFileIO, name: str, dtype: str) -> np.ndarray | None:
    """The values of a numeric stream; None when it is missing or empty."""
    if not ole.exists(name):
        return None
    raw = ole.openstream(name).read()
    kind = np.dtype(dtype)
    values = np.frombuffer(raw[: len(raw) - len(raw) % kind.itemsize], kind)
    return values if values.size else None


def _integer(ole: olefile.OleFileIO, name: str) -> int | None:
    values = _numbers(ole, name, "<i4")
    return None if values is None else int(values[0])


def _text(ole: olefile.OleFileIO, name: str) -> str | None:
    """The first NUL-terminated string of a text stream; None when missing."""
    if not ole.exists(name):
        return None
    raw = ole.openstream(name).read()
    return raw.split(b"\0", 1)[0].decode("latin-1").strip() or None


def _date(ole: olefile.OleFileIO) -> str | None:
    """When the first image was taken; None when no date is stored."""
    found = _DATE.search(ole.openstream(DATE).read()) if ole.exists(DATE) else None
    return found.group().decode("ascii") if found else None


def _quantity(values: np.ndarray, unit: str) -> str | None:
    """``'80 kV'``, or ``'40 to 80 kV'`` when the images differ."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return None
    low, high = float(finite.min()), float(finite.max())
    return f"{low:g} {unit}" if low == high else f"{low:g} to {high:g} {unit}"


def _instrument(ole: olefile.OleFileIO) -> dict[str, str]:
    """The acquisition metadata that is stored, as label -> text."""
    texts = {"sample": _text(ole, SAMPLE), "acquired": _date(ole)}
    found = {label: text for label, text in texts.items() if text}
    for label, names, unit in INSTRUMENT_VALUES:
        for name in names:
            values = _numbers(ole, name, "<f4")
            if values is not None and (text := _quantity(values, unit)):
                found[label] = text
                break
    return found


def _image_count(
    path: Path, ole: olefile.OleFileIO, sizes: dict[str, int], notes: list[str]
) -> int:
    """How many images the file holds, from ImageInfo or else the streams."""
    for name in ("ImageInfo/ImagesTaken", "ImageInfo/NoOfImages"):
        count = _integer(ole, name)
        if count:
            if count < 0:
                raise InputError(path, f"gives a negative image count ({name})")
            return count
    stored = {int(m.group(1)) for n in sizes if (m := _IMAGE_STREAM.fullmatch(n))}
    count = next(k for k in range(1, len(stored) + 2) if k not in stored) - 1
    notes.append(f"ImageInfo gives no image count; the {count} stored images are used.")
    return count


def _pixel_type(
    path: Path,
    ole: olefile.OleFileIO,
    first_size: int,
    pixels: int,
    notes: list[str],
) -> np.dtype:
    """The stored pixel type, from ``ImageInfo/DataType`` or the image size."""
    code = _integer(ole, "ImageInfo/DataType")
    if code is not None:
        if code not in XRM_DTYPES:
            raise InputError(
                path, f"has an unsupported pixel type (ImageInfo/DataType {code})"
            )
        return np.dtype(XRM_DTYPES[code])
    guessed = (
        GUESSED_DTYPES.get(first_size // pixels) if first_size % pixels == 0 else None
    )
    if guessed is None:
        raise InputError(
            path,
            "has no ImageInfo/DataType stream, and its image size does not tell "
            "the pixel type",
        )
    dtype = np.dtype(guessed)
    notes.append(f"ImageInfo/DataType is missing; the pixels are read as {dtype.name}.")
    return dtype


def _layout(
    path: Path, ole: olefile.OleFileIO, notes: list[str]
) -> tuple[tuple[int, int, int], np.dtype]:
    """Shape ``(images, height, width)`` and stored pixel type; every image
    stream must exist with the right size (read from the directory only)."""
    height, width = (_integer(ole, f"ImageInfo/Image{n}") for n in ("Height", "Width"))
    for name, value in (("ImageWidth", width), ("ImageHeight", height)):
        if value is None:
            raise InputError(
                path,
                f"is an OLE compound file but not a ZEISS Xradia image "
                f"(it has no ImageInfo/{name} stream)",
            )
    if height < 1 or width < 1:
        raise InputError(path, f"gives an image size of {width} × {height} pixels")
    sizes = {"/".join(p).lower(): ole.get_size(p) for p in ole.listdir()}
    count = _image_count(path, ole, sizes, notes)
    first = sizes.get(image_stream(0).lower())
    if first is None:
        raise InputError(path, f"holds no image data (no {image_stream(0)} stream)")
    dtype = _pixel_type(path, ole, first, height * width, notes)
    expected = height * width * dtype.itemsize
    for index in range(count):  # stops at the first missing stream
        name = image_stream(index)
        size = sizes.get(name.lower())
        if size is None:
            raise InputError(
                path, f"is incomplete: {name} is missing ({count} images expected)"
            )
        if size != expected:
            raise InputError(
                path,
                f"has a damaged image stream {name}: {size} bytes, not the "
                f"{expected} of {height} × {width} {dtype.name} pixels",
            )
    return (count, height, width), dtype


def _reference(
    ole: olefile.OleFileIO, plane: tuple[int, int], dtype: np.dtype, notes: list[str]
) -> np.ndarray | None:
    """The stored reference image as float32, or None (noted if unusable)."""
    if not ole.exists(REFERENCE):
        return None
    code = _integer(ole, "ReferenceData/DataType")
    kind = np.dtype(XRM_DTYPES.get(code, dtype) if code is not None else dtype)
    raw = ole.openstream(REFERENCE).read()
    if len(raw) != math.prod(plane) * kind.itemsize:
        notes.append(
            f"The stored reference image ({REFERENCE}, {len(raw)} bytes) does not "
            f"fit the {plane[0]} × {plane[1]} images; the projections are used "
            "as stored."
        )
        return None
    notes.append(
        f"Each projection is divided by the stored reference image ({REFERENCE}): "
        "values are transmission (1 = open beam)."
    )
    return np.frombuffer(raw, kind).reshape(plane).astype(np.float32)


class XradiaImages:
    """The images of an open Xradia file as a read-only ``(z, y, x)`` array-like.

    Indexing opens only the image streams of the slices asked for, one at a
    time under a lock (the file handle is shared between threads). With a
    reference, slices come back as ``image / reference`` in float32.
    """

    ndim = 3

    def __init__(
        self,
        path: Path,
        ole: olefile.OleFileIO,
        shape: tuple[int, int, int],
        stored: np.dtype,
        reference: np.ndarray | None,
    ) -> None:
        self.path = path
        self.shape = shape
        self.dtype = np.dtype(np.float32 if reference is not None else stored.name)
        self._ole = ole
        self._stored = stored
        self._reference = reference
        self._lock = threading.Lock()

    def plane(self, index: int) -> np.ndarray:
        """Slice ``index`` (from 0), read from its own stream."""
        name = image_stream(index)
        with self._lock, reading(self.path, f"a ZEISS Xradia file at stream {name}"):
            raw = self._ole.openstream(name).read()
        expected = math.prod(self.shape[1:]) * self._stored.itemsize
        if len(raw) != expected:
            raise InputError(
                self.path,
                f"is truncated or damaged: {name} gave {len(raw)} of its "
                f"{expected} bytes",
            )
        image = np.frombuffer(raw, self._stored).reshape(self.shape[1:])
        if self._reference is None:
            return image.astype(self.dtype)
        out = np.full(self.shape[1:], np.nan, np.float32)
        return np.divide(image, self._reference, out=out, where=self._reference != 0)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim + 1 - len(key)) + key[at + 1 :]
        if len(key) > self.ndim:
            raise IndexError(f"too many indices for a {self.ndim}D volume")
        key = key + (slice(None),) * (self.ndim - len(key))
        indices = np.arange(self.shape[0])[key[0]]
        planes = [self.plane(int(i)) for i in np.atleast_1d(indices)]
        block = (
            np.stack(planes) if planes else np.empty((0, *self.shape[1:]), self.dtype)
        )
        block = block[(slice(None), *key[1:])]
        return block[0] if np.ndim(indices) == 0 else block


def open_xradia(path: Path) -> RawVolume:
    """Open a ZEISS ``.txm`` / ``.txrm`` file lazily (one chunk per slice)."""
    import dask.array as da

    projections = path.name.lower().endswith(".txrm")
    notes: list[str] = []
    with reading(path, "a ZEISS Xradia file"):
        try:
            ole = olefile.OleFileIO(str(path))
        except OleFileError as exc:
            raise InputError(
                path, f"is truncated or corrupt (olefile: {exc})"
            ) from None
        try:
            shape, stored = _layout(path, ole, notes)
            instrument = _instrument(ole)
            reference = (
                _reference(ole, shape[1:], stored, notes) if projections else None
            )
            if ole.exists(REFERENCE):
                instrument["reference"] = (
                    "applied (image / reference)"
                    if reference is not None
                    else "stored, not applied"
                )
            pixel = _numbers(ole, "ImageInfo/PixelSize", "<f4")
        except BaseException:
            ole.close()
            raise
    voxel, unit = (None, None)
    if pixel is not None:
        # the shortest decimal that is this float32: 0.7, not 0.699999988
        size = float(np.format_float_positional(pixel[0], unique=True))
        voxel, unit = calibration([size] * 3, "µm", notes)
    if projections and voxel is not None:
        notes.append(
            "The file holds projections (one per angle) stacked along z; z is "
            "scaled like the pixels for display only."
        )
    images = XradiaImages(path, ole, shape, stored, reference)
    array = da.from_array(
        images,
        chunks=(1, *shape[1:]),
        lock=False,
        name=False,
        meta=np.empty((0, 0, 0), images.dtype),
    )
    return RawVolume(
        levels=[array],
        axes="ZYX",
        fmt="txrm" if projections else "txm",
        voxel_size=voxel,
        unit=unit,
        notes=notes,
        instrument=instrument,
    )
