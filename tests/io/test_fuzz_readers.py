"""Fuzzing the readers: random and damaged TIFF, zarr and ZEISS Xradia bytes give
one clear InputError naming the file (or a readable volume), never another
exception and never a hang."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.ole_writer import write_xradia

from napari_xrm_al.errors import InputError
from napari_xrm_al.io.tiff import TIFF_MAGIC
from napari_xrm_al.io.volumes import open_volume

FUZZ = settings(
    max_examples=25,
    deadline=3000,  # ms per example: a hang fails the test
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
DATA = (np.arange(4 * 16 * 16, dtype=np.uint16).reshape(4, 16, 16) * 7) % 3000


def opens_or_refuses(path: Path) -> None:
    """``open_volume`` and reading a corner of the first and last slices either
    work or raise one clear :class:`InputError`."""
    try:
        volume = open_volume(path)
        for index in (0, -1):
            volume.read((index, slice(0, 8), slice(0, 8)))
    except InputError as exc:
        message = str(exc)
        assert message.startswith(f"{exc.path}: ") and "\n" not in message
        named = Path(exc.path)
        assert named == path or path in named.parents, message


def mutate(data: bytes, cuts: list[tuple[int, int]], length: int | None) -> bytes:
    """``data`` with bytes ``(position, value)`` replaced, truncated to ``length``."""
    out = bytearray(data)
    for position, value in cuts:
        out[position % len(out)] = value
    return bytes(out[:length] if length is not None else out)


def valid_tiff(compression: str | None) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "v.tif")
        tifffile.imwrite(path, DATA, photometric="minisblack", compression=compression)
        return path.read_bytes()


TIFFS = {c: valid_tiff(c) for c in (None, "zlib")}
changes = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8)


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
    cuts=changes,
    length=st.none() | st.integers(0, 3000),
)
def test_damaged_tiff(scratch, compression, cuts, length) -> None:
    path = fresh(scratch, "scan.tif")
    path.write_bytes(mutate(TIFFS[compression], cuts, length))
    opens_or_refuses(path)


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


@FUZZ
@given(
    version=st.sampled_from([2, 3]),
    cuts=changes,
    length=st.none() | st.integers(0, 400),
)
def test_damaged_zarr_metadata(scratch, version, cuts, length) -> None:
    path = zarr_store(fresh(scratch, "scan.zarr"), version)
    meta = path / ("zarr.json" if version == 3 else ".zarray")
    meta.write_bytes(mutate(meta.read_bytes(), cuts, length))
    opens_or_refuses(path)


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


@FUZZ
@given(
    version=st.sampled_from([2, 3]),
    cuts=changes,
    length=st.none() | st.integers(0, 200),
)
def test_damaged_zarr_chunks(scratch, version, cuts, length) -> None:
    path = zarr_store(fresh(scratch, "scan.zarr"), version)
    chunks = sorted(p for p in path.rglob("*") if p.is_file() and "zar" not in p.name)
    for chunk in (chunks[0], chunks[-1]):
        chunk.write_bytes(mutate(chunk.read_bytes(), cuts, length))
    opens_or_refuses(path)


def valid_xradia() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        reference = np.full(DATA.shape[1:], 3000, np.uint16)
        return write_xradia(
            Path(folder, "v.txrm"), DATA, reference=reference
        ).read_bytes()


XRADIA = valid_xradia()


@FUZZ
@given(
    suffix=st.sampled_from([".txm", ".txrm"]),
    cuts=changes,
    length=st.none() | st.integers(0, len(XRADIA)),
)
def test_damaged_xradia(scratch, suffix, cuts, length) -> None:
    path = fresh(scratch, "scan" + suffix)
    path.write_bytes(mutate(XRADIA, cuts, length))
    opens_or_refuses(path)
