"""Mask export: round trips, streaming, atomicity and clear errors for bad files."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.errors import InputError, XrmError
from napari_xrm_al.io.mask_formats import ATTRS_KEY
from napari_xrm_al.io.mask_reader import is_mask_store, read_mask
from napari_xrm_al.io.masks import MaskWriter, write_mask

NAMES = {"ome-zarr": "mask.ome.zarr", "zarr": "mask.zarr", "tiff": "mask.tif"}
VOXEL = (0.5, 0.0184, 0.025)


class Boom(Exception):
    pass


@pytest.fixture
def classes() -> ClassTable:
    return ClassTable.hbm()


@pytest.fixture
def labels() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 5, size=(7, 20, 26), dtype=np.uint8)


@pytest.mark.parametrize("fmt", list(NAMES))
def test_round_trip(tmp_path: Path, labels, classes, fmt) -> None:
    provenance = {"iteration": np.int64(3), "checkpoint": "abc123"}
    out = write_mask(
        tmp_path / NAMES[fmt],
        labels,
        classes,
        voxel_size=VOXEL,
        name="pred",
        provenance=provenance,
        chunks=(3, 8, 8),
    )
    assert out == (tmp_path / NAMES[fmt]).absolute()
    mask = read_mask(out)
    assert mask.fmt == fmt
    assert mask.data.dtype == np.uint8
    np.testing.assert_array_equal(mask.data[:], labels)
    assert mask.classes == classes
    assert mask.voxel_size == pytest.approx(VOXEL)
    assert mask.name == "pred"
    assert mask.provenance == {"iteration": 3, "checkpoint": "abc123"}
    assert is_mask_store(out)
    assert os.listdir(tmp_path) == [NAMES[fmt]]  # no temporary leftovers


@pytest.mark.parametrize("fmt", list(NAMES))
def test_round_trip_2d_without_voxel_size(tmp_path: Path, labels, classes, fmt) -> None:
    out = write_mask(tmp_path / NAMES[fmt], labels[3], classes)
    mask = read_mask(out)
    np.testing.assert_array_equal(mask.data[:], labels[3])
    assert mask.voxel_size is None
    assert mask.name == "segmentation"


@pytest.mark.parametrize("fmt", list(NAMES))
def test_writer_streams_slabs_along_any_axis(tmp_path, labels, classes, fmt) -> None:
    final = tmp_path / NAMES[fmt]
    writer = MaskWriter(final, labels.shape, classes, chunks=(2, 8, 8))
    writer[0:3] = labels[0:3]
    writer[3:, 0:11] = labels[3:, 0:11]
    writer[3:, 11:, :13] = labels[3:, 11:, :13]
    writer[3:, 11:, 13:] = labels[3:, 11:, 13:]
    assert not final.exists()  # nothing under the final name before commit
    assert writer.commit() == final.absolute()
    np.testing.assert_array_equal(read_mask(final).data[:], labels)
    with pytest.raises(RuntimeError):
        writer[0] = 0


@pytest.mark.parametrize("fmt", list(NAMES))
def test_crash_mid_write_leaves_nothing(tmp_path, labels, classes, fmt) -> None:
    final = tmp_path / NAMES[fmt]
    with pytest.raises(Boom), MaskWriter(final, labels.shape, classes) as writer:
        writer[:3] = labels[:3]
        raise Boom
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fmt", list(NAMES))
def test_crash_mid_write_keeps_older_mask(tmp_path, labels, classes, fmt) -> None:
    final = tmp_path / NAMES[fmt]
    write_mask(final, labels, classes, name="old")
    with pytest.raises(Boom), MaskWriter(final, labels.shape, classes) as writer:
        writer[:] = 0
        raise Boom
    old = read_mask(final)
    assert old.name == "old"
    np.testing.assert_array_equal(old.data[:], labels)
    assert os.listdir(tmp_path) == [NAMES[fmt]]


@pytest.mark.parametrize("fmt", list(NAMES))
def test_commit_replaces_older_mask(tmp_path, labels, classes, fmt) -> None:
    final = tmp_path / NAMES[fmt]
    write_mask(final, labels, classes, name="old")
    write_mask(final, labels[:, ::-1], classes, name="new")
    mask = read_mask(final)
    assert mask.name == "new"
    np.testing.assert_array_equal(mask.data[:], labels[:, ::-1])
    assert os.listdir(tmp_path) == [NAMES[fmt]]


@pytest.mark.parametrize("bad", [np.array([[5]]), np.array([[-1]]), np.array([[1.0]])])
def test_labels_outside_the_class_table_are_refused(tmp_path, labels, classes, bad):
    final = tmp_path / "m.zarr"
    with pytest.raises(XrmError, match="m.zarr"):
        write_mask(final, np.broadcast_to(bad, (2, 3, 4)), classes)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (2, 2, 2, 2)},
        {"shape": (0, 3, 3)},
        {"voxel_size": (1.0, 1.0)},
        {"voxel_size": (1.0, -1.0, 1.0)},
        {"name": "a/b"},
        {"dtype": np.int16},
        {"fmt": "png"},
    ],
)
def test_bad_writer_arguments(tmp_path, classes, kwargs) -> None:
    args = {"shape": (2, 3, 4), **kwargs}
    shape = args.pop("shape")
    with pytest.raises(XrmError):
        MaskWriter(tmp_path / "m.zarr", shape, classes, **args)
    assert os.listdir(tmp_path) == []


def test_dtype_grows_with_many_classes(tmp_path: Path) -> None:
    table = ClassTable(tuple(f"c{i}" for i in range(300)))
    labels = np.arange(301, dtype=np.int32).reshape(1, 7, 43)
    mask = read_mask(write_mask(tmp_path / "m.zarr", labels, table))
    assert mask.data.dtype == np.uint16
    np.testing.assert_array_equal(mask.data[:], labels)


def test_dask_input_is_written_block_by_block(
    tmp_path, labels, classes, monkeypatch
) -> None:
    computed, written = [], []
    lock = threading.Lock()

    def produce(block, block_info=None):
        with lock:
            computed.append(block_info[None]["chunk-location"])
        return block

    source = da.from_array(labels, chunks=(2, 10, 13)).map_blocks(
        produce, dtype=labels.dtype
    )
    setitem = MaskWriter.__setitem__

    def spy(self, key, value):
        written.append(np.shape(value))
        setitem(self, key, value)

    monkeypatch.setattr(MaskWriter, "__setitem__", spy)
    out = write_mask(tmp_path / "m.ome.zarr", source, classes, chunks=(2, 8, 8))
    np.testing.assert_array_equal(read_mask(out).data[:], labels)
    assert sorted(computed) == sorted(set(computed))  # each block computed once
    assert len(computed) == len(written) == source.npartitions
    assert max(np.prod(shape) for shape in written) == 2 * 10 * 13


def test_zarr_input(tmp_path, labels, classes) -> None:
    source = zarr.create_array(
        tmp_path / "src.zarr", shape=labels.shape, dtype="u1", chunks=(3, 20, 26)
    )
    source[:] = labels
    out = write_mask(tmp_path / "m.tif", source, classes)
    np.testing.assert_array_equal(read_mask(out).data[:], labels)


def test_stores_are_chunked_and_compressed(tmp_path, classes) -> None:
    sparse = np.zeros((20, 300, 40), np.uint8)
    sparse[2, 5:9, 5:9] = 4
    store = zarr.open_array(write_mask(tmp_path / "m.zarr", sparse, classes), mode="r")
    assert store.chunks == (16, 256, 40)
    assert any(type(c).__name__ == "BloscCodec" for c in store.compressors)
    assert store.metadata.dimension_names == ("z", "y", "x")
    assert store.nchunks_initialized == 1  # empty chunks are not stored
    tif_path = write_mask(tmp_path / "m.tif", sparse, classes, voxel_size=VOXEL)
    with tifffile.TiffFile(tif_path) as tif:
        assert len(tif.pages) == 20
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        meta = tif.imagej_metadata
        assert meta["spacing"] == pytest.approx(VOXEL[0])
        assert meta["unit"] == "um"
        x_res = tif.pages[0].tags["XResolution"].value
        assert x_res[1] / x_res[0] == pytest.approx(VOXEL[2], rel=1e-6)
        assert json.loads(meta["Properties"][ATTRS_KEY])["classes"][3]["name"] == "void"
    assert tif_path.stat().st_size < sparse.nbytes / 10


def _plain_zarr(path: Path) -> Path:
    zarr.create_array(path, shape=(2, 2), dtype="u1")[:] = 1
    return path


def _plain_tiff(path: Path) -> Path:
    tifffile.imwrite(path, np.ones((2, 3, 4), np.uint8))
    return path


def _text_as_tiff(path: Path) -> Path:
    path.write_text("not a tiff")
    return path


def _corrupt_zarr(path: Path) -> Path:
    path.mkdir()
    (path / "zarr.json").write_text("{ not json")
    return path


def _empty_dir(path: Path) -> Path:
    path.mkdir()
    return path


def _wrong_class_table(path: Path) -> Path:
    attrs = {ATTRS_KEY: {"kind": "mask", "classes": [{"name": "only"}]}}
    zarr.create_array(path, shape=(2, 2), dtype="u1", attributes=attrs)
    return path


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (_plain_zarr, "not a napari-xrm-al mask"),
        (_plain_tiff, "not a napari-xrm-al mask"),
        (_text_as_tiff, "cannot be read as a mask"),
        (_corrupt_zarr, "cannot be read as a mask"),
        (_empty_dir, "cannot be read as a mask"),
        (_wrong_class_table, "unusable class table"),
    ],
)
def test_read_mask_explains_what_is_wrong(tmp_path, make, problem) -> None:
    path = make(
        tmp_path / "thing.zarr" if make is not _text_as_tiff else tmp_path / "t.tif"
    )
    with pytest.raises(InputError, match=problem) as info:
        read_mask(path)
    assert str(path) in str(info.value)
    assert not is_mask_store(path)


def test_read_mask_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_mask(tmp_path / "nope.zarr")
    assert not is_mask_store(tmp_path / "nope.zarr")
