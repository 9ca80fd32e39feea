from __future__ import annotations

import numpy as np
import pytest

from napari_xrm_al.core.slices import (
    axis_index,
    axis_name,
    n_slices,
    parse_slice_list,
    read_label_slices,
    read_slices,
    slice_shape,
)
from napari_xrm_al.errors import XrmError


class PlaneCounter:
    """Array-like recording how many planes along each axis are read."""

    def __init__(self, data: np.ndarray) -> None:
        self._data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.reads: list[tuple] = []

    def __getitem__(self, key):
        self.reads.append(key)
        return self._data[key]


def reference(vol: np.ndarray, idx, ax: int, context: int) -> np.ndarray:
    moved = np.moveaxis(vol, ax, 0)
    n = moved.shape[0]
    return np.stack(
        [
            np.stack(
                [moved[min(max(i + o, 0), n - 1)] for o in range(-context, context + 1)]
            )
            for i in idx
        ]
    )


@pytest.mark.parametrize("axis", ["z", "y", "x"])
@pytest.mark.parametrize("context", [0, 1, 2])
def test_read_slices_matches_numpy(axis, context):
    vol = np.arange(5 * 6 * 7, dtype=np.uint16).reshape(5, 6, 7)
    ax = axis_index(axis)
    idx = [0, 3, n_slices(vol.shape, axis) - 1, 3]
    out = read_slices(vol, idx, axis, context)
    assert out.shape == (4, 2 * context + 1, *slice_shape(vol.shape, axis))
    assert out.dtype == vol.dtype
    np.testing.assert_array_equal(out, reference(vol, idx, ax, context))


def test_each_plane_is_read_once_in_contiguous_runs():
    vol = PlaneCounter(np.random.default_rng(0).integers(0, 9, (30, 4, 4)))
    read_slices(vol, [5, 6, 7, 20], "z", context=1)
    spans = [(k[0].start, k[0].stop) for k in vol.reads]
    assert spans == [(4, 9), (19, 22)]


def test_label_slices_and_axis_helpers():
    vol = np.random.default_rng(0).integers(0, 4, (3, 5, 6))
    np.testing.assert_array_equal(read_label_slices(vol, [1], "y")[0], vol[:, 1, :])
    assert axis_index(2) == 2 and axis_name("X") == "x"
    with pytest.raises(XrmError, match="axis"):
        axis_index("w")


def test_out_of_range_slice_is_a_clear_error():
    with pytest.raises(XrmError, match="Slice 9 is outside 0..4"):
        read_slices(np.zeros((5, 2, 2)), [1, 9], "z")


def test_parse_slice_list_takes_commas_spaces_and_ranges():
    assert parse_slice_list(" 40, 3 17,12-14 3", "--slices") == [3, 12, 13, 14, 17, 40]
    assert parse_slice_list("", "Validation slices", allow_empty=True) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3,x", "--start-with must be slice numbers or ranges"),
        ("-2", "--start-with must be slice numbers or ranges"),
        ("9-4", "--start-with: the range 9-4 runs backwards"),
        (" , ", "--start-with is empty"),
    ],
)
def test_parse_slice_list_names_the_option_in_errors(text, message):
    with pytest.raises(XrmError, match=message):
        parse_slice_list(text, "--start-with")
