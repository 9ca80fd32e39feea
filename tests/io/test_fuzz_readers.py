"""Fuzzing the readers: random and damaged TIFF, zarr and ZEISS Xradia bytes give
one clear InputError naming the file (or a readable volume), never another
exception and never a hang."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tests.ole_writer import write_xradia

from napari_xrm_al.errors import InputError
from napari_xrm_al.io.tiff import TIFF_MAGIC
from napari_xrm_al.io.volumes import open_volume

FUZZ = settings(
    max_examples=80,
    deadline=3000,  # ms per example: a hang fails the test
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
DATA = (np.arange(4 * 16 * 16, dtype=np.uint16).reshape(4, 16, 16) * 7) % 3000


def opens_or_refuses(
    path: Path,
    written: np.ndarray | list[np.ndarray] | None = None,
    may_differ: np.ndarray | None = None,
) -> None:
    """``open_volume`` either raises one clear :class:`InputError` naming the
    file, or reads what was written: the same shape and dtype, and the same
    values except (``may_differ``, boolean) where pixel bytes were changed.
    ``written`` may list several acceptable readings of the file."""
    try:
        volume = open_volume(path)
        if written is None:  # any shape: read corners of the first and last slices
            for index in (0, -1):
                volume.read((index, slice(0, 8), slice(0, 8)))
            return
        layouts = [
            w for w in (written if isinstance(written, list) else [written])
            if (w.shape, w.dtype) == (volume.shape, volume.dtype)
        ]  # fmt: skip
        assert layouts, "silently wrong shape or dtype"
        written = layouts[0]
        read = volume.read()
    except InputError as exc:
        message = str(exc)
        assert message.startswith(f"{exc.path}: ") and "\n" not in message
        named = Path(exc.path)
        assert named == path or path in named.parents, message
        return
    differ = read != written
    allowed = np.zeros_like(differ) if may_differ is None else may_differ
    assert not (differ & ~allowed).any(), (
        f"values changed at {np.argwhere(differ & ~allowed)[:4]}"
    )


def mutate(
    data: bytes, flips: list[tuple[int, int]], length: int | None
) -> tuple[bytes, list[int]]:
    """``data`` with bits ``(position, bit)`` flipped, truncated to ``length``;
    also the positions changed."""
    out = bytearray(data)
    changed = []
    for position, bit in flips:
        out[position % len(out)] ^= 1 << bit
        changed.append(position % len(out))
    return bytes(out[:length] if length is not None else out), changed


def valid_tiff(compression: str | None) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "v.tif")
        tifffile.imwrite(path, DATA, photometric="minisblack", compression=compression)
        return path.read_bytes()


TIFFS = {c: valid_tiff(c) for c in (None, "zlib")}


def _segments(data: bytes) -> list[tuple[int, int]]:
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        return [(p.dataoffsets[0], p.databytecounts[0]) for p in tif.pages]


TIFF_SEGMENTS = {c: _segments(data) for c, data in TIFFS.items()}
changes = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)), max_size=8)
#: Truncation at any offset (None: the whole file).
cuts = st.none() | st.integers(0, 4000)


def tiff_damage(compression: str | None, changed: list[int]) -> np.ndarray:
    """Voxels that changed pixel bytes may alter: the voxel itself when the
    data are stored raw, its whole page when compressed; header bytes none."""
    allowed = np.zeros(DATA.shape, bool)
    for page, (offset, size) in enumerate(TIFF_SEGMENTS[compression]):
        for position in changed:
            if offset <= position < offset + size:
                if compression is None:
                    allowed[page].flat[(position - offset) // DATA.itemsize] = True
                else:
                    allowed[page] = True
    return allowed


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def fresh(scratch: Path, name: str) -> Path:
    return Path(tempfile.mkdtemp(dir=scratch)) / name


@FUZZ
@given(
    body=st.binary(max_size=600),
    magic=st.sampled_from([b"", *TIFF_MAGIC]),
)
def test_random_bytes_named_tif(scratch, body, magic) -> None:
    path = fresh(scratch, "scan.tif")
    path.write_bytes(magic + body)
    opens_or_refuses(path)


@FUZZ
@given(
    compression=st.sampled_from(sorted(TIFFS, key=str)),
    flips=changes,
    length=cuts,
)
def test_damaged_tiff(scratch, compression, flips, length) -> None:
    path = fresh(scratch, "scan.tif")
    data, changed = mutate(TIFFS[compression], flips, length)
    path.write_bytes(data)
    opens_or_refuses(path, DATA, tiff_damage(compression, changed))


@FUZZ
@given(
    compression=st.sampled_from(sorted(TIFFS, key=str)),
    page=st.integers(0, 3),
    tag=st.sampled_from([256, 257, 258, 259, 262, 270, 273, 277, 278, 279, 339]),
    value=st.integers(0, 2**32 - 1),
)
# Page 0's strip 8 bytes early: no overlap, but the block read from it would
# shift every slice (read silently before 2026-12-07).
@example(compression=None, page=0, tag=273, value=248)
def test_changed_tiff_header_fields(scratch, compression, page, tag, value) -> None:
    """A header field (size, bits, compression, strip offset, ...) of one
    page set to another number: refused, or read exactly as written."""
    data = bytearray(TIFFS[compression])
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tif:
        tags = tif.pages[page].tags if page == 0 else tif.pages[page].aspage().tags
        field = tags.get(tag)
        if field is None:
            return
        where = field.offset + 8  # the value (or value offset) of the IFD entry
    data[where : where + 4] = value.to_bytes(4, "little")
    path = fresh(scratch, "scan.tif")
    path.write_bytes(bytes(data))
    opens_or_refuses(path, DATA)


def zarr_store(path: Path, version: int) -> Path:
    array = zarr.create_array(
        path,
        shape=DATA.shape,
        chunks=(1, 8, 8),
        dtype=DATA.dtype,
        zarr_format=version,
        **({"dimension_names": ("z", "y", "x")} if version == 3 else {}),
    )
    array[...] = DATA
    return path


#: Metadata fields that, changed to another valid value, make another valid
#: array out of the same chunk files (another shape, chunk names, fill value).
LAYOUT = ("shape", "dimension_separator", "chunk_key_encoding", "fill_value")


def layout(meta: bytes) -> dict | None:
    """The layout fields zarr metadata declare, None if they do not parse."""
    try:
        parsed = json.loads(meta)
    except ValueError:
        return None
    return {k: parsed.get(k) for k in LAYOUT} if isinstance(parsed, dict) else None


@FUZZ
@given(
    version=st.sampled_from([2, 3]),
    flips=changes,
    length=st.none() | st.integers(0, 400),
)
def test_damaged_zarr_metadata(scratch, version, flips, length) -> None:
    """Refused, or read exactly as written. Only a change that declares
    another valid layout (a digit of the shape, the chunk-name separator,
    the fill value) makes another array; it must then have the declared shape."""
    path = zarr_store(fresh(scratch, "scan.zarr"), version)
    meta = path / ("zarr.json" if version == 3 else ".zarray")
    original = meta.read_bytes()
    damaged, _ = mutate(original, flips, length)
    meta.write_bytes(damaged)
    declared = layout(damaged)
    if declared is None or declared == layout(original):
        opens_or_refuses(path, DATA)
        return
    try:
        volume = open_volume(path)
    except InputError:
        return opens_or_refuses(path)
    assert list(volume.shape) == declared["shape"], (volume.shape, declared)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**12) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=10,
)


@FUZZ
@given(
    key=st.sampled_from(
        ["shape", "chunk_grid", "data_type", "codecs", "fill_value", "attributes"]
    ),
    value=json_values,
)
def test_wrong_values_in_zarr_json(scratch, key, value) -> None:
    path = zarr_store(fresh(scratch, "scan.zarr"), 3)
    meta = json.loads((path / "zarr.json").read_text())
    meta[key] = value
    (path / "zarr.json").write_text(json.dumps(meta))
    opens_or_refuses(path)


def chunk_files(path: Path) -> list[Path]:
    """The chunk files of a store (never its metadata: .zarray, .zattrs, zarr.json)."""
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.name != "zarr.json"
    )


def chunk_region(path: Path, chunk: Path) -> tuple[slice, ...]:
    """The voxels a chunk file (``z.y.x`` or ``c/z/y/x``) of (1, 8, 8) holds."""
    key = chunk.relative_to(path).as_posix()
    z, y, x = (int(i) for i in key.removeprefix("c/").replace("/", ".").split("."))
    return slice(z, z + 1), slice(8 * y, 8 * y + 8), slice(8 * x, 8 * x + 8)


@FUZZ
@given(
    version=st.sampled_from([2, 3]),
    flips=changes,
    length=st.none() | st.integers(0, 200),
    which=st.integers(0, 31),
)
def test_damaged_zarr_chunks(scratch, version, flips, length, which) -> None:
    """A damaged chunk is refused or changes only its own voxels."""
    path = zarr_store(fresh(scratch, "scan.zarr"), version)
    chunks = chunk_files(path)
    assert len(chunks) == 16  # real chunks, not metadata
    chunk = chunks[which % len(chunks)]
    chunk.write_bytes(mutate(chunk.read_bytes(), flips, length)[0])
    allowed = np.zeros(DATA.shape, bool)
    allowed[chunk_region(path, chunk)] = True
    opens_or_refuses(path, DATA, allowed)


def valid_xradia() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        reference = np.full(DATA.shape[1:], 3000, np.uint16)
        return write_xradia(
            Path(folder, "v.txrm"), DATA, reference=reference
        ).read_bytes()


XRADIA = valid_xradia()


def _read_xradia(suffix: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "v" + suffix)
        path.write_bytes(XRADIA)
        return open_volume(path).read()


#: What the file may read as, by name: a .txrm is reference-corrected, or read
#: as stored when damage hides its reference (an optional stream).
_AS_STORED = _read_xradia(".txm")
XRADIA_READS = {".txm": [_AS_STORED], ".txrm": [_read_xradia(".txrm"), _AS_STORED]}


@FUZZ
@given(
    suffix=st.sampled_from([".txm", ".txrm"]),
    flips=changes,
    length=st.none() | st.integers(0, len(XRADIA)),
)
def test_damaged_xradia(scratch, suffix, flips, length) -> None:
    """A damaged Xradia file is refused or read with its shape and a dtype it
    may have; its pixel values may change (the streams' places are not tracked)."""
    path = fresh(scratch, "scan" + suffix)
    path.write_bytes(mutate(XRADIA, flips, length)[0])
    expected = XRADIA_READS[suffix]
    opens_or_refuses(path, expected, np.ones(expected[0].shape, bool))
