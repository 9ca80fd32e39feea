"""Reading parts of stored arrays: the subsample is bounded and never whole,
the fingerprint depends on the data, not on how they are stored."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_xrm_al.io.array_reads import subsample, volume_fingerprint
from napari_xrm_al.io.volumes import open_volume


def scan(shape=(12, 20, 24)) -> np.ndarray:
    """Random uint16 values, the same on every call."""
    return np.random.default_rng(0).integers(0, 50_000, shape, dtype=np.uint16)


class Recorder:
    """An array that records every index it is asked for."""

    def __init__(self, data: np.ndarray, chunks: tuple[int, ...]) -> None:
        self.data, self.chunks = data, chunks
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.requests: list[int] = []

    def __getitem__(self, index):
        out = self.data[index]
        self.requests.append(out.size)
        return out


@pytest.mark.parametrize("chunks", [(1, 64, 64), (16, 16, 16)])
def test_subsample_is_bounded_and_never_whole(chunks):
    data = scan((48, 64, 64))
    array = Recorder(data, chunks)
    sample = subsample(array, max_voxels=5_000)
    assert 0 < sample.size <= 5_000
    assert sum(array.requests) == sample.size < data.size
    assert np.isin(sample, data).all()
    again = subsample(Recorder(data, chunks), max_voxels=5_000)
    np.testing.assert_array_equal(sample, again)
    other = subsample(Recorder(data, chunks), max_voxels=5_000, seed=1)
    assert not np.array_equal(sample, other)


def test_fingerprint_depends_on_data_not_storage(tmp_path):
    data = scan()
    tifffile.imwrite(tmp_path / "a.tif", data, compression="zlib")
    zarr.create_array(tmp_path / "a.zarr", data=data, chunks=(5, 7, 9))
    from_tiff = volume_fingerprint(open_volume(tmp_path / "a.tif").data)
    from_zarr = volume_fingerprint(open_volume(tmp_path / "a.zarr").data)
    assert from_tiff == from_zarr
    assert from_tiff.startswith("sha256:")
    assert volume_fingerprint(data + 1) != from_tiff
    assert volume_fingerprint(data.astype(np.int32)) != from_tiff
    assert volume_fingerprint(data[:-1]) != from_tiff
