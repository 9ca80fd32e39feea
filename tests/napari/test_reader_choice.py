"""Dropping a file on napari: napari's own reader resolution picks a reader without
asking (no MultipleReaderError, which napari turns into a dialog), and OME-Zarr
images are read by napari-ome-zarr."""

from __future__ import annotations

from pathlib import Path

import npe2
import numpy as np
import pytest
import tifffile
import zarr
from napari.components import ViewerModel
from napari.errors import MultipleReaderError
from ome_zarr.writer import write_image
from tests.ole_writer import write_xradia

from napari_xrm_al._napari.reader import (
    READER_PREFERENCES,
    SOURCE_KEY,
    get_reader,
    prefer_this_reader,
    read_with_ome_zarr_plugin,
)
from napari_xrm_al.classes import ClassTable
from napari_xrm_al.io.masks import write_mask

#: What each dropped format becomes, and whether napari-ome-zarr read it.
FORMATS = {
    "scan.tif": ("image", False),
    "plain.zarr": ("image", False),
    "mask.ome.zarr": ("labels", False),
    "image.ome.zarr": ("image", True),
    "recon.txm": ("image", False),
}


@pytest.fixture
def settings(monkeypatch):
    """Fresh napari settings, never read from or saved to the user's file."""
    import napari.settings
    from napari.plugins import _initialize_plugins

    fresh = napari.settings.NapariSettings(config_path=None)
    monkeypatch.setattr(napari.settings, "_SETTINGS", fresh)
    _initialize_plugins()
    return fresh


@pytest.fixture
def files(tmp_path) -> Path:
    data = (np.arange(6 * 16 * 16) % 900).reshape(6, 16, 16).astype(np.uint16)
    tifffile.imwrite(tmp_path / "scan.tif", data, imagej=True, metadata={"axes": "ZYX"})
    zarr.create_array(tmp_path / "plain.zarr", data=data)
    write_mask(
        tmp_path / "mask.ome.zarr", (data % 5).astype(np.uint8), ClassTable.hbm()
    )
    image = zarr.open_group(tmp_path / "image.ome.zarr", mode="w")
    write_image(data, image, axes="zyx")
    write_xradia(tmp_path / "recon.txm", data)
    return tmp_path


def test_napari_asks_when_no_reader_is_preferred(settings, files) -> None:
    with pytest.raises(MultipleReaderError):
        ViewerModel()._open_or_raise_error([str(files / "plain.zarr")])


def test_dropped_files_open_without_a_dialog(settings, files) -> None:
    assert prefer_this_reader() == list(READER_PREFERENCES)
    for name, (kind, by_ome_zarr_plugin) in FORMATS.items():
        # what napari does with a file dropped on the window (the Qt viewer
        # shows the reader dialog on MultipleReaderError)
        layers = ViewerModel()._open_or_raise_error([str(files / name)])
        assert [layer._type_string for layer in layers] == [kind], name
        ours = SOURCE_KEY in layers[0].metadata or kind == "labels"
        assert ours != by_ome_zarr_plugin, name


def test_the_users_choice_is_kept(settings) -> None:
    settings.plugins.extension2reader = {"*.tif": "napari"}
    assert "*.tif" not in prefer_this_reader()
    assert settings.plugins.extension2reader["*.tif"] == "napari"
    assert settings.plugins.extension2reader["*.zarr/"] == "napari-xrm-al"
    assert prefer_this_reader() == []


def test_ome_zarr_images_go_to_napari_ome_zarr(settings, files, monkeypatch) -> None:
    assert get_reader(str(files / "image.ome.zarr")) is read_with_ome_zarr_plugin
    assert get_reader(str(files / "mask.ome.zarr")) is not read_with_ome_zarr_plugin
    monkeypatch.setattr(npe2.PluginManager.instance(), "iter_manifests", lambda **_: [])
    # without napari-ome-zarr this plugin reads them itself
    assert get_reader(str(files / "image.ome.zarr")) not in (
        None,
        read_with_ome_zarr_plugin,
    )
