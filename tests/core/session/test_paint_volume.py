"""PaintVolume behaves like a numpy array and keeps few slices in memory."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_xrm_al.core.session.paint_volume import PaintVolume

SHAPE = (6, 5, 7)


def make(tmp_path, axis: int, cached: int = 2):
    chunks = list(SHAPE)
    chunks[axis] = 1
    store = zarr.create_array(
        tmp_path / f"a{axis}.zarr", shape=SHAPE, chunks=tuple(chunks), dtype="uint8",
        fill_value=0, overwrite=True,
    )  # fmt: skip

    def key(i):
        k = [slice(None)] * 3
        k[axis] = i
        return tuple(k)

    def write(i, values):
        store[key(i)] = values

    writes: list[set[int]] = []
    volume = PaintVolume(
        SHAPE, store.dtype, axis, lambda i: store[key(i)], write, writes.append,
        cached_slices=cached,
    )  # fmt: skip
    return store, volume, writes


index_1d = st.one_of(
    st.integers(-3, 2),
    st.builds(slice, st.none() | st.integers(0, 4), st.none() | st.integers(1, 6)),
)
basic_key = st.tuples(index_1d, index_1d, index_1d)


@settings(max_examples=30, deadline=None)
@given(
    axis=st.integers(0, 2),
    key=basic_key,
    value=st.integers(1, 9),
    points=st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 4), st.integers(0, 6)),
        min_size=1,
        max_size=20,
    ),
)
def test_reads_and_writes_match_numpy(tmp_path_factory, axis, key, value, points):
    tmp = tmp_path_factory.mktemp("pv")
    store, volume, writes = make(tmp, axis)
    truth = np.zeros(SHAPE, np.uint8)
    coords = tuple(np.array(c) for c in zip(*points, strict=True))
    # A brush stroke (point indexing) and a basic-indexing write.
    volume[coords] = 3
    truth[coords] = 3
    assert writes[-1] == {int(i) for i in coords[axis]}
    volume[key] = value
    truth[key] = value
    np.testing.assert_array_equal(volume[key], truth[key])
    np.testing.assert_array_equal(volume[coords], truth[coords])
    np.testing.assert_array_equal(np.asarray(volume), truth)
    # Nothing reaches the store before flush; everything after.
    assert not np.asarray(store[...]).any()
    volume.flush()
    np.testing.assert_array_equal(store[...], truth)


def test_only_a_few_clean_slices_stay_in_memory(tmp_path) -> None:
    store, volume, _ = make(tmp_path, 0, cached=2)
    store[4] = 7
    volume[(np.array([0, 1]), np.array([0, 0]), np.array([0, 0]))] = 5
    for z in range(SHAPE[0]):
        volume[z]
    # The two painted slices are pinned until saved; two clean ones are cached.
    assert set(volume._cache) >= {0, 1} and len(volume._cache) == 4
    assert volume[4, 0, 0] == 7
    assert volume.flush() == [0, 1] and volume.dirty == set()
    assert len(volume._cache) == 2
    assert store[0, 0, 0] == 5 and store[1, 0, 0] == 5


def test_boolean_mask_and_errors(tmp_path) -> None:
    _, volume, writes = make(tmp_path, 1)
    mask = np.zeros(SHAPE, bool)
    mask[2, 3, 4] = mask[5, 1, 0] = True
    volume[mask] = 2
    assert writes[-1] == {3, 1}
    assert volume[2, 3, 4] == 2 and volume[5, 1, 0] == 2
    assert np.asarray(volume).sum() == 4
    with pytest.raises(IndexError):
        volume[:, 9]
