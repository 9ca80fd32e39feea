"""Non-regular files (named pipes here; sockets and devices alike) are refused
up front with one sentence naming them: reading one would block forever.
Folders stay valid where they are inputs (zarr stores, folders of slices),
but every file inside them must be regular too."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_xrm_al.core.model.checkpoint import load_checkpoint
from napari_xrm_al.errors import InputError
from napari_xrm_al.io.mask_reader import read_mask
from napari_xrm_al.io.volumes import is_mask, open_volume

DATA = np.arange(4 * 16 * 16, dtype=np.uint16).reshape(4, 16, 16)


def refused(call, path, *args) -> None:
    """``call(*args)`` raises one InputError naming ``path`` as a named pipe."""
    with pytest.raises(InputError) as err:
        call(*args)
    assert err.value.path == str(path)
    assert str(err.value) == f"{path}: {err.value.problem}"
    assert "named pipe" in err.value.problem and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["scan.tif", "scan.zarr", "scan"])
def test_a_fifo_given_as_the_scan(tmp_path, fifo, name) -> None:
    path = fifo(tmp_path / name)
    assert not is_mask(path)
    refused(open_volume, path, path)
    refused(open_volume, path, [path])  # as a list of slices


def test_a_fifo_given_as_a_mask_or_a_model(tmp_path, fifo) -> None:
    mask, model = fifo(tmp_path / "mask.tif"), fifo(tmp_path / "model.pt")
    refused(read_mask, mask, mask)
    refused(load_checkpoint, model, model)


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("which", ["metadata", "first chunk", "last chunk"])
def test_a_fifo_inside_a_zarr_store(tmp_path, fifo, version, which) -> None:
    path = tmp_path / "scan.zarr"
    array = zarr.create_array(
        path, shape=DATA.shape, chunks=(1, 8, 8), dtype=DATA.dtype, zarr_format=version
    )
    array[...] = DATA
    chunks = sorted(
        p.relative_to(path).as_posix()
        for p in path.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.name != "zarr.json"
    )
    key = {
        "metadata": "zarr.json" if version == 3 else ".zarray",
        "first chunk": chunks[0],
        "last chunk": chunks[-1],
    }[which]
    (path / key).unlink()
    fifo(path / key)
    refused(lambda: open_volume(path).read(), path / key)


def test_a_fifo_among_tiff_slices(tmp_path, fifo) -> None:
    folder = tmp_path / "slices"
    folder.mkdir()
    for z in (0, 1, 3):
        tifffile.imwrite(folder / f"s{z}.tif", DATA[z], photometric="minisblack")
    slice2 = fifo(folder / "s2.tif")
    refused(open_volume, slice2, folder)  # not silently a 3-slice stack
