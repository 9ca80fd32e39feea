"""Slices named by axis and index: parsing, formatting, codes."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xrm_al.core.slice_refs import (
    SliceRef,
    as_refs,
    format_slice_refs,
    parse_axes,
    parse_slice_refs,
    ref_of_code,
    slice_codes,
    uncovered,
)
from napari_xrm_al.errors import XrmError


def test_parse_and_format_round_trip() -> None:
    refs = parse_slice_refs("40, y:100-102 X:7 3", "--slices", "z")
    assert [str(r) for r in refs] == ["z:3", "z:40", "y:100", "y:101", "y:102", "x:7"]
    assert parse_slice_refs(format_slice_refs(refs), "--slices", "x") == refs
    assert parse_slice_refs("5", "--slices", "y") == [SliceRef.of("y", 5)]


@pytest.mark.parametrize(
    ("text", "message"),
    [("w:4", "must be slice numbers"), ("y:", "must be slice numbers"),
     ("y:9-3", "runs backwards"), ("", "is empty")],
)  # fmt: skip
def test_bad_slices_name_the_option(text, message) -> None:
    with pytest.raises(XrmError, match=f"--slices.*{message}|{message}"):
        parse_slice_refs(text, "--slices", "z")


def test_plain_ints_pairs_and_codes() -> None:
    refs = as_refs([7, ["y", 3], (2, 1), SliceRef.of("z", 7)], "z")
    assert refs == [SliceRef(0, 7), SliceRef(1, 3), SliceRef(2, 1)]
    codes = slice_codes(refs)
    assert codes[0] == 7  # a z-slice's code is its index
    assert [ref_of_code(c) for c in codes] == refs
    assert parse_axes("x, z", "--axes") == [0, 2]
    with pytest.raises(XrmError, match="--axes must name axes"):
        parse_axes("z,w", "--axes")


def test_uncovered_drops_the_lines_other_slices_cross() -> None:
    plane = np.zeros((4, 5), np.uint8)  # a z slice: (y, x)
    plane[1, :] = 2  # all on the done y:1 slice
    plane[3, 4] = 1  # on x:4
    plane[2, 2] = 3  # on neither
    others = [SliceRef(1, 1), SliceRef(2, 4), SliceRef(0, 2)]  # z:2 is parallel
    mask = uncovered(plane, SliceRef(0, 7), others)
    assert np.argwhere(mask).tolist() == [[2, 2]]
    plane[2, 2] = 0
    assert not uncovered(plane, SliceRef(0, 7), others).any()
    # A y slice is (z, x): x:4 crosses it in its last column, z:2 in row 2.
    plane = np.zeros((3, 5), np.uint8)
    plane[0, 4] = plane[2, 1] = 1
    assert not uncovered(plane, SliceRef(1, 0), others).any()
