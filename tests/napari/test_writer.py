"""npe2 writers: a Labels layer saved from napari reads back identically."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Labels

from napari_xrm_al._napari.writer import (
    CLASSES_KEY,
    PROVENANCE_KEY,
    layer_classes,
    write_ome_labels,
    write_zarr_labels,
)
from napari_xrm_al.classes import ClassTable
from napari_xrm_al.io.mask_reader import read_mask


@pytest.fixture
def labels() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 5, size=(4, 12, 10), dtype=np.uint8)


def _layer_tuple(data, **kwargs):
    layer_data, meta, layer_type = Labels(data, **kwargs).as_layer_data_tuple()
    assert layer_type == "labels"
    return layer_data, meta


@pytest.mark.parametrize(
    ("writer", "name"),
    [(write_ome_labels, "out.ome.zarr"), (write_zarr_labels, "out.zarr")],
)
def test_writer_uses_class_table_from_layer_metadata(tmp_path, labels, writer, name):
    classes = ClassTable.hbm()
    data, meta = _layer_tuple(
        labels,
        name="AL prediction",
        scale=(0.5, 0.02, 0.02),
        metadata={CLASSES_KEY: classes.to_dict(), PROVENANCE_KEY: {"iteration": 2}},
    )
    paths = writer(str(tmp_path / name), data, meta)
    assert paths == [str(tmp_path / name)]
    mask = read_mask(paths[0])
    np.testing.assert_array_equal(mask.data[:], labels)
    assert mask.classes == classes
    assert mask.name == "AL_prediction"
    assert mask.voxel_size == pytest.approx((0.5, 0.02, 0.02))
    assert mask.provenance == {"layer": "AL prediction", "iteration": 2}


def test_voxel_size_is_converted_from_layer_units(tmp_path, labels) -> None:
    data, meta = _layer_tuple(labels, scale=(20, 18.4, 18.4), units=("nm",) * 3)
    mask = read_mask(write_zarr_labels(str(tmp_path / "m.zarr"), data, meta)[0])
    assert mask.voxel_size == pytest.approx((0.02, 0.0184, 0.0184))


def test_unscaled_pixel_layer_has_no_voxel_size(tmp_path, labels) -> None:
    data, meta = _layer_tuple(labels)
    mask = read_mask(write_zarr_labels(str(tmp_path / "m.zarr"), data, meta)[0])
    assert mask.voxel_size is None


def test_class_names_fall_back_to_features_then_generic(labels) -> None:
    features = {"class": ["unlabelled", "copper", "solder", "", "void"]}
    data, meta = _layer_tuple(labels, features=features)
    assert layer_classes(data, meta).names == ("copper", "solder", "class_3", "void")
    data, meta = _layer_tuple(labels)
    table = layer_classes(data, meta)
    assert table.names == ("class_1", "class_2", "class_3", "class_4")
    shown = Labels(labels).colormap.map(np.arange(1, 5))[:, :3]
    expected = [[int(c[i : i + 2], 16) / 255 for i in (1, 3, 5)] for c in table.colours]
    np.testing.assert_allclose(expected, shown, atol=1 / 255)


@pytest.mark.gui
@pytest.mark.parametrize("name", ["saved.ome.zarr", "saved.zarr"])
def test_save_from_viewer_reads_back(make_napari_viewer, tmp_path, labels, name):
    viewer = make_napari_viewer()
    classes = ClassTable.hbm()
    viewer.add_labels(labels, name="mask", metadata={CLASSES_KEY: classes.to_dict()})
    saved = viewer.layers.save(str(tmp_path / name), plugin="napari-xrm-al")
    assert saved == [str(tmp_path / name)]
    mask = read_mask(tmp_path / name)
    np.testing.assert_array_equal(mask.data[:], labels)
    assert mask.classes == classes
    assert mask.fmt == ("ome-zarr" if name.endswith(".ome.zarr") else "zarr")
