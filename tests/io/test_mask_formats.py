"""The mask format follows from the file name."""

from __future__ import annotations

import pytest

from napari_xrm_al.errors import XrmError
from napari_xrm_al.io.mask_formats import mask_format_for


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.ome.zarr", "ome-zarr"),
        ("A.OME.ZARR", "ome-zarr"),
        ("a.zarr", "zarr"),
        ("dir/a.tif", "tiff"),
        ("a.tiff", "tiff"),
    ],
)
def test_mask_format_for(name: str, fmt: str) -> None:
    assert mask_format_for(name) == fmt


def test_mask_format_for_unknown_names_the_file() -> None:
    with pytest.raises(XrmError, match=r"mask\.png"):
        mask_format_for("mask.png")
