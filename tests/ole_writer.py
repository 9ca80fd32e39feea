"""Test files in ZEISS Xradia's layout: a minimal OLE compound-file writer.

olefile reads compound files but cannot create them, so the tests write their
own ``.txm`` / ``.txrm`` files here. Used ONLY by the tests.

:func:`write_compound_file` follows [MS-CFB] (Compound File Binary File
Format), version 3: a 512-byte header, 512-byte sectors chained by the FAT,
128-byte directory entries whose siblings form a binary search tree (shorter
names first, then case-insensitive order), and streams under 4096 bytes kept
in 64-byte mini sectors of the mini stream, chained by the MiniFAT. Sector
order: large streams, the mini stream, the MiniFAT, the directory, the FAT.

:func:`break_stream` damages one stream for the tests of damaged files.

:func:`xradia_streams` lays out the streams as ZEISS Versa software stores them,
after the public readers dxchange (``dxchange/reader.py``: ``read_txrm``,
``read_ole_metadata``) and txrm2tiff
(``src/txrm2tiff/xradia_properties/stream_dtypes.py``, ``txrm/abstract.py``):

- ``ImageInfo/ImageWidth``, ``ImageInfo/ImageHeight``, ``ImageInfo/NoOfImages``
  (int32), ``ImageInfo/ImagesTaken`` (uint32), ``ImageInfo/DataType`` (int32:
  5 uint16, 10 float32), ``ImageInfo/PixelSize`` (float32, µm);
- per image (float32): ``ImageInfo/XrayVoltage`` (kV), ``ImageInfo/XrayCurrent``
  (µA), ``ImageInfo/ExpTimes`` (s); ``ImageInfo/Date`` (one NUL-padded
  ``MM/DD/YYYY hh:mm:ss.ff`` per image); ``SampleInfo/SampleID`` (50 bytes);
- image ``k`` (from 1) in ``ImageData<ceil(k/100)>/Image<k>``, little-endian rows;
- optionally ``ReferenceData/Image`` with ``ReferenceData/DataType``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

SECTOR = 512
MINI_SECTOR = 64
MINI_CUTOFF = 4096
IDS_PER_SECTOR = SECTOR // 4
FREESECT, ENDOFCHAIN, FATSECT, NOSTREAM = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF
MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")
STORAGE, STREAM, ROOT = 1, 2, 5
#: numpy dtypes -> Xradia's ``DataType`` codes.
XRM_CODES = {"uint8": 3, "int16": 4, "uint16": 5, "int32": 6, "float32": 10}


class _Node:
    """A directory entry: the root, a storage or a stream."""

    def __init__(self, name: str, kind: int, data: bytes = b"") -> None:
        self.name, self.kind, self.data = name, kind, data
        self.children: dict[str, _Node] = {}
        self.sid = 0
        self.left = self.right = self.child = NOSTREAM
        # storages and unused entries start at 0; empty streams at ENDOFCHAIN
        self.start = ENDOFCHAIN if kind in (STREAM, ROOT) else 0
        self.size = 0


def _tree(streams: Mapping[str, bytes]) -> list[_Node]:
    """Every entry, the root first, each storage before what it holds."""
    root = _Node("Root Entry", ROOT)
    for path, data in streams.items():
        *storages, name = path.split("/")
        node = root
        for part in storages:
            node = node.children.setdefault(part, _Node(part, STORAGE))
        node.children[name] = _Node(name, STREAM, bytes(data))
    order, todo = [], [root]
    while todo:
        node = todo.pop(0)
        node.sid = len(order)
        order.append(node)
        todo.extend(node.children.values())
    for node in order:
        kids = sorted(
            node.children.values(), key=lambda n: (len(n.name), n.name.upper())
        )
        node.child = _balanced(kids)
    return order


def _balanced(kids: list[_Node]) -> int:
    """Link ``kids`` (sorted) as a balanced binary search tree; its root's sid."""
    if not kids:
        return NOSTREAM
    middle = len(kids) // 2
    kids[middle].left = _balanced(kids[:middle])
    kids[middle].right = _balanced(kids[middle + 1 :])
    return kids[middle].sid


def _chain(table: list[int], start: int, count: int) -> None:
    """Chain ``count`` consecutive sectors from ``start`` in a FAT or MiniFAT."""
    for i in range(start, start + count):
        table[i] = i + 1 if i < start + count - 1 else ENDOFCHAIN


def _pad(data: bytes, size: int) -> bytes:
    return data + bytes(-len(data) % size)


def _entry(node: _Node) -> bytes:
    """A 128-byte directory entry (an unused one for ``kind`` 0)."""
    name = node.name.encode("utf-16-le") + b"\0\0" if node.kind else b""
    return struct.pack(
        "<64sHBBIII16sIQQIII",
        name,
        len(name),
        node.kind,
        1 if node.kind else 0,  # black; readers (olefile too) ignore colours
        node.left,
        node.right,
        node.child,
        bytes(16),
        0,
        0,
        0,
        node.start,
        node.size,
        0,
    )


def write_compound_file(path: str | Path, streams: Mapping[str, bytes]) -> Path:
    """Write ``streams`` (``'Storage/Stream'`` -> bytes) as a compound file."""
    entries = _tree(streams)
    files = [n for n in entries if n.kind == STREAM]
    big = [n for n in files if len(n.data) >= MINI_CUTOFF]
    small = [n for n in files if 0 < len(n.data) < MINI_CUTOFF]
    sectors: list[bytes] = []
    fat_links: list[tuple[int, int]] = []

    def place(data: bytes) -> int:
        start, chunk = len(sectors), _pad(data, SECTOR)
        sectors.extend(chunk[i : i + SECTOR] for i in range(0, len(chunk), SECTOR))
        fat_links.append((start, len(sectors) - start))
        return start

    for node in big:
        node.start, node.size = place(node.data), len(node.data)
    mini, minifat = b"", []
    for node in small:
        node.start, node.size = len(mini) // MINI_SECTOR, len(node.data)
        count = math.ceil(len(node.data) / MINI_SECTOR)
        minifat.extend([FREESECT] * count)
        _chain(minifat, node.start, count)
        mini += _pad(node.data, MINI_SECTOR)
    root = entries[0]
    if mini:
        root.start, root.size = place(mini), len(mini)
    first_minifat = ENDOFCHAIN
    if minifat:
        minifat += [FREESECT] * (-len(minifat) % IDS_PER_SECTOR)
        first_minifat = place(struct.pack(f"<{len(minifat)}I", *minifat))
    unused = _Node("", 0)
    slots = -len(entries) % (SECTOR // 128)
    first_dir = place(b"".join(_entry(n) for n in [*entries, *[unused] * slots]))
    n_fat = 1
    while math.ceil((len(sectors) + n_fat) / IDS_PER_SECTOR) > n_fat:
        n_fat += 1
    if n_fat > 109:
        raise ValueError("test files are limited to 109 FAT sectors (about 7 MB)")
    fat = [FREESECT] * (n_fat * IDS_PER_SECTOR)
    for start, count in fat_links:
        _chain(fat, start, count)
    fat_ids = list(range(len(sectors), len(sectors) + n_fat))
    for i in fat_ids:
        fat[i] = FATSECT
    sectors.extend(
        struct.pack(f"<{IDS_PER_SECTOR}I", *fat[i : i + IDS_PER_SECTOR])
        for i in range(0, len(fat), IDS_PER_SECTOR)
    )
    header = struct.pack(
        "<8s16sHHHHHHIIIIIIIIII",
        MAGIC,
        bytes(16),
        0x3E,  # minor version
        3,  # major version: 512-byte sectors
        0xFFFE,  # little-endian
        9,  # sector shift: 512
        6,  # mini sector shift: 64
        0,
        0,
        0,  # directory sectors: 0 in version 3
        n_fat,
        first_dir,
        0,
        MINI_CUTOFF,
        first_minifat,
        len(minifat) // IDS_PER_SECTOR,
        ENDOFCHAIN,  # no DIFAT sectors
        0,
    )
    header += struct.pack("<109I", *(fat_ids + [FREESECT] * (109 - n_fat)))
    path = Path(path)
    path.write_bytes(header + b"".join(sectors))
    return path


def image_stream(index: int) -> str:
    """Where image ``index`` (from 0) is stored."""
    k = index + 1
    return f"ImageData{math.ceil(k / 100)}/Image{k}"


def _text(text: str, size: int) -> bytes:
    return text.encode("latin-1")[: size - 1].ljust(size, b"\0")


def xradia_streams(
    images: np.ndarray,
    *,
    pixel_size: float = 0.7,
    reference: np.ndarray | None = None,
    voltage: float = 80.0,
    current: float = 87.5,
    exposure: float = 2.0,
    date: str = "05/14/2024 10:31:07.25",
    sample: str = "HBM-17",
) -> dict[str, bytes]:
    """The streams of a ZEISS Xradia file holding ``images`` ``(n, height, width)``."""
    n, height, width = images.shape
    per_image = np.full(n, 1, np.float32)
    streams = {
        "ImageInfo/ImageWidth": struct.pack("<i", width),
        "ImageInfo/ImageHeight": struct.pack("<i", height),
        "ImageInfo/NoOfImages": struct.pack("<i", n),
        "ImageInfo/ImagesTaken": struct.pack("<I", n),
        "ImageInfo/DataType": struct.pack("<i", XRM_CODES[images.dtype.name]),
        "ImageInfo/PixelSize": struct.pack("<f", pixel_size),
        "ImageInfo/XrayVoltage": (per_image * voltage).tobytes(),
        "ImageInfo/XrayCurrent": (per_image * current).tobytes(),
        "ImageInfo/ExpTimes": (per_image * exposure).tobytes(),
        "ImageInfo/Date": b"".join(_text(date, 23) for _ in range(n)),
        "SampleInfo/SampleID": _text(sample, 50),
    }
    little = images.dtype.newbyteorder("<")
    for index, image in enumerate(images):
        streams[image_stream(index)] = image.astype(little).tobytes()
    if reference is not None:
        code = XRM_CODES[reference.dtype.name]
        streams["ReferenceData/DataType"] = struct.pack("<i", code)
        streams["ReferenceData/Image"] = reference.astype(
            reference.dtype.newbyteorder("<")
        ).tobytes()
    return streams


def write_xradia(
    path: str | Path,
    images: np.ndarray,
    *,
    omit: Iterable[str] = (),
    replace: Mapping[str, bytes] | None = None,
    **metadata,
) -> Path:
    """Write a ``.txm`` / ``.txrm`` test file; ``omit`` drops streams and
    ``replace`` overrides (or adds) some, to make damaged files."""
    streams = xradia_streams(images, **metadata)
    for name in omit:
        del streams[name]
    streams.update(replace or {})
    return write_compound_file(path, streams)


def break_stream(path: str | Path, name: str) -> None:
    """Point stream ``name``'s directory entry past the end of the file, as a
    damaged sector chain would: only reading that stream fails."""
    field = (name + "\0").encode("utf-16-le").ljust(64, b"\0")
    field += struct.pack("<H", 2 * (len(name) + 1))
    data = bytearray(Path(path).read_bytes())
    at = data.find(field)
    assert at >= 0 and data.find(field, at + 1) < 0, name
    start = at + 116  # the entry's starting-sector field
    data[start : start + 4] = struct.pack("<I", 0x00FFFFFF)
    Path(path).write_bytes(bytes(data))
