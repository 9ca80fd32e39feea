"""npe2 reader: what it claims, the layers it returns, and bad files shown as a
notification rather than an exception."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from napari.layers import Layer
from napari.utils.notifications import NotificationSeverity, notification_manager
from ome_zarr.writer import write_image
from tests.ole_writer import write_xradia

from napari_xrm_al._napari.reader import (
    SOURCE_KEY,
    get_reader,
    layer_name,
    read_volume,
)
from napari_xrm_al._napari.writer import CLASSES_KEY
from napari_xrm_al.classes import ClassTable
from napari_xrm_al.io.masks import write_mask

VOXEL = (2.0, 0.5, 0.25)


def stack(path: Path, shape=(6, 12, 14), **kwargs) -> Path:
    data = (np.arange(np.prod(shape)) % 1000).reshape(shape).astype(np.uint16)
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / VOXEL[2], 1 / VOXEL[1]),
        metadata={"spacing": VOXEL[0], "unit": "um", "axes": "ZYX"[-len(shape) :]},
        **kwargs,
    )
    return path


@pytest.fixture
def notes():
    """The notifications napari receives during the test."""
    start = len(notification_manager.records)
    yield lambda: notification_manager.records[start:]


# -- get_reader -----------------------------------------------------------
@pytest.mark.parametrize(
    "garbage",
    [
        None,
        42,
        "",
        b"scan.tif",
        object(),
        [],
        [None],
        ["a.tif", 3],
        "a\0b.tif",
        "x" * 5000 + ".zarr",
        "photo.png",
        "/definitely/not/here.zarr",
        {"path": "a.tif"},
    ],
)
def test_get_reader_refuses_garbage_without_raising(garbage):
    assert get_reader(garbage) is None


def test_get_reader_claims_tiffs_slice_folders_and_zarr(tmp_path):
    stack(tmp_path / "scan.tif")
    (tmp_path / "slices").mkdir()
    tifffile.imwrite(tmp_path / "slices" / "s1.tif", np.zeros((4, 4), np.uint8))
    zarr.create_array(tmp_path / "a.zarr", shape=(2, 4, 4), dtype="u1")
    (tmp_path / "empty").mkdir()
    (tmp_path / "b.png").write_bytes(b"\x89PNG")
    (tmp_path / "x.TIF").write_bytes(b"II*\x00")
    write_xradia(tmp_path / "recon.txm", np.zeros((2, 4, 4), np.uint16))
    (tmp_path / "tomo.TXRM").write_bytes(b"damaged files are claimed, then refused")
    claimed_files = ("scan.tif", "slices", "a.zarr", ["scan.tif"], "recon.txm")
    for claimed in (*claimed_files, ["recon.txm"], "tomo.TXRM"):
        paths = (
            [str(tmp_path / p) for p in claimed]
            if isinstance(claimed, list)
            else str(tmp_path / claimed)
        )
        assert get_reader(paths) is read_volume, claimed
    assert (
        get_reader([str(tmp_path / "scan.tif"), str(tmp_path / "x.TIF")]) is read_volume
    )
    assert get_reader(str(tmp_path / "empty")) is None
    assert get_reader(str(tmp_path / "b.png")) is None
    assert get_reader([str(tmp_path / "scan.tif"), str(tmp_path / "b.png")]) is None


def test_manifest_offers_the_reader_for_tiffs_and_folders_only(tmp_path):
    from npe2 import PluginManager

    manager = PluginManager.instance()
    manager.discover()

    def offered(path) -> bool:
        readers = manager.iter_compatible_readers([str(path)])
        return "napari-xrm-al" in {r.plugin_name for r in readers}

    assert offered(tmp_path / "scan.TIF") and offered(tmp_path / "scan.tiff")
    assert offered(tmp_path / "recon.txm") and offered(tmp_path / "tomo.txrm")
    assert offered(tmp_path)  # folders: zarr stores and TIFF slices
    assert not offered(tmp_path / "photo.png")
    assert not offered(tmp_path / "table.csv")


def test_layer_name_strips_format_suffixes():
    assert layer_name("/d/scan_01.ome.tif") == "scan_01"
    assert layer_name("/d/volume.ome.zarr") == "volume"
    assert layer_name("/d/export") == "export"
    assert layer_name("/d/recon.txm") == "recon"
    assert layer_name("/d/tomo.TXRM") == "tomo"


# -- reader function ------------------------------------------------------
def test_reads_an_image_layer_with_scale_units_and_contrast(tmp_path):
    path = stack(tmp_path / "scan.tif")
    [(data, meta, kind)] = read_volume(str(path))
    assert kind == "image" and data.shape == (6, 12, 14)
    layer = Layer.create(data, meta, kind)
    assert layer.name == "scan"
    assert tuple(layer.scale) == VOXEL
    assert [str(u) for u in layer.units] == ["micrometer"] * 3
    assert tuple(layer.contrast_limits) == meta["contrast_limits"]


def test_reads_a_zeiss_txm_with_its_voxel_size_as_scale(tmp_path):
    images = (np.arange(4 * 12 * 14) % 900).reshape(4, 12, 14).astype(np.uint16)
    path = write_xradia(tmp_path / "recon.txm", images, pixel_size=1.25)
    for given in (str(path), [str(path)]):
        assert get_reader(given) is read_volume
        [(data, meta, kind)] = read_volume(given)
        layer = Layer.create(data, meta, kind)
        assert layer.name == "recon" and kind == "image"
        assert tuple(layer.scale) == (1.25, 1.25, 1.25)
        assert [str(u) for u in layer.units] == ["micrometer"] * 3
        np.testing.assert_array_equal(np.asarray(layer.data[2]), images[2])
        source = layer.metadata[SOURCE_KEY]
        assert source["format"] == "txm" and source["instrument"]["voltage"] == "80 kV"


def test_reads_ome_zarr_as_multiscale(tmp_path):
    path = tmp_path / "scan.ome.zarr"
    data = np.random.default_rng(0).integers(0, 900, (4, 32, 32), dtype=np.uint16)
    write_image(data, zarr.open_group(path, mode="w"), axes="zyx", scale_factors=[2])
    [(levels, meta, kind)] = read_volume(str(path))
    layer = Layer.create(levels, meta, kind)
    assert layer.multiscale and len(layer.data) == 2
    assert layer.data[0].shape == data.shape


def test_multichannel_opens_one_layer_per_channel(tmp_path, notes):
    data = np.zeros((5, 3, 8, 8), np.uint16)
    for c in range(3):
        data[:, c] = c * 10 + np.arange(8)
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZCYX"})
    layers = read_volume(str(path))
    assert [meta["name"] for _, meta, _ in layers] == [f"hyper [{c}]" for c in range(3)]
    for c, (array, meta, kind) in enumerate(layers):
        np.testing.assert_array_equal(np.asarray(array[2]), data[2, c])
        assert kind == "image" and meta["blending"] == "additive"
    messages = [str(n.message) for n in notes()]
    assert messages == ["hyper has 3 channels; each is opened as its own image layer."]


def test_reads_a_mask_as_labels(tmp_path):
    labels = np.zeros((4, 8, 8), np.uint8)
    labels[1, 2:4, 2:4] = 4
    path = write_mask(
        tmp_path / "voids.zarr",
        labels,
        ClassTable.hbm(),
        voxel_size=VOXEL,
        name="voids",
    )
    [(data, meta, kind)] = read_volume(str(path))
    assert kind == "labels"
    layer = Layer.create(data, meta, kind)
    assert layer.name == "voids" and tuple(layer.scale) == VOXEL
    np.testing.assert_allclose(
        layer.colormap.map(4)[..., :3].ravel(),
        [214 / 255, 39 / 255, 40 / 255],
        atol=0.01,
    )
    assert layer.metadata[CLASSES_KEY] == ClassTable.hbm().to_dict()


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("bad.tif", b"", "is empty"),
        ("bad.tif", b"GIF89a" + bytes(20), "is not a TIFF file"),
        ("bad.txm", b"GIF89a" + bytes(20), "is not a ZEISS .txm/.txrm file"),
    ],
)
def test_bad_file_is_a_notification_not_an_exception(
    tmp_path, notes, name, content, problem
):
    path = tmp_path / name
    path.write_bytes(content)
    assert read_volume(str(path)) == [(None,)]
    [note] = notes()
    assert note.severity == NotificationSeverity.ERROR
    assert str(note.message).startswith(f"{path}: {problem}")


# -- in a viewer -----------------------------------------------------------
@pytest.mark.gui
def test_viewer_opens_a_stack_with_scale(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    path = stack(tmp_path / "scan.tif", compression="zlib")
    [layer] = viewer.open(path, plugin="napari-xrm-al")
    assert layer.data.shape == (6, 12, 14)
    assert tuple(layer.scale) == VOXEL
    assert layer.name == "scan"


@pytest.mark.gui
def test_viewer_opens_a_zeiss_txm_with_scale(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    path = write_xradia(tmp_path / "recon.txm", np.ones((5, 12, 14), np.float32))
    [layer] = viewer.open(path, plugin="napari-xrm-al")
    assert layer.data.shape == (5, 12, 14)
    assert tuple(layer.scale) == (0.7, 0.7, 0.7)


@pytest.mark.gui
def test_viewer_shows_a_bad_file_as_a_notification(make_napari_viewer, tmp_path, notes):
    viewer = make_napari_viewer()
    path = tmp_path / "photo.tif"
    tifffile.imwrite(path, np.zeros((20, 30), np.uint8))
    assert viewer.open(path, plugin="napari-xrm-al") == []
    assert len(viewer.layers) == 0
    [note] = [n for n in notes() if n.severity == NotificationSeverity.ERROR]
    assert str(note.message).startswith(
        f"{path}: is a 2D image (20 × 30), not a volume"
    )
