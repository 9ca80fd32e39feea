"""Slices named by axis and index: parsing, formatting, codes."""

from __future__ import annotations

import pytest

from napari_xrm_al.core.slice_refs import (
    SliceRef,
    as_refs,
    format_slice_refs,
    parse_axes,
    parse_slice_refs,
    ref_of_code,
    slice_codes,
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
