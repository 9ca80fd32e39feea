"""The npe2 sample-data contribution and the ``demo`` viewer set-up."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from napari.layers import Image, Labels
from npe2 import PluginManager

from napari_xrm_al._napari.sample_data import (
    CLASSES_KEY,
    GROUND_TRUTH_NAME,
    IMAGE_NAME,
    make_hbm_sample,
)
from napari_xrm_al.classes import ClassTable
from napari_xrm_al.commands.demo import open_demo

SMALL = (24, 64, 64)


def test_layer_data_holds_image_and_annotation_id_ground_truth():
    (image, image_meta, image_type), (labels, labels_meta, labels_type) = (
        make_hbm_sample(seed=1, shape=SMALL)
    )
    assert (image_type, labels_type) == ("image", "labels")
    assert image.shape == labels.shape == SMALL
    assert image_meta["name"] == IMAGE_NAME and labels_meta["name"] == GROUND_TRUTH_NAME
    low, high = image_meta["contrast_limits"]
    assert image.min() <= low < high <= image.max()
    assert labels.min() >= 1 and labels.max() <= 4  # annotation ids, 0 = not annotated
    table = ClassTable.from_dict(labels_meta["metadata"][CLASSES_KEY])
    assert labels_meta["colormap"] == table.napari_colormap()


def test_sample_data_module_does_not_import_napari():
    code = (
        "import sys, napari_xrm_al._napari.sample_data; "
        "sys.exit('napari' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.gui
def test_open_sample_adds_image_and_coloured_ground_truth(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-xrm-al", "hbm", seed=2, shape=SMALL)
    assert [layer.name for layer in layers] == [IMAGE_NAME, GROUND_TRUTH_NAME]
    image, truth = layers
    assert isinstance(image, Image) and isinstance(truth, Labels)
    assert not truth.visible  # the answer key, as in the demo
    assert np.allclose(image.scale, truth.scale)
    void = ClassTable.hbm().index("void") + 1
    assert np.allclose(
        truth.colormap.map(void)[:3], [0xD6 / 255, 0x27 / 255, 0x28 / 255]
    )
    assert truth.metadata[CLASSES_KEY] == ClassTable.hbm().to_dict()


@pytest.mark.gui
def test_open_demo_hides_ground_truth_and_docks_every_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    open_demo(viewer, seed=0, shape=SMALL)
    assert [layer.name for layer in viewer.layers] == [IMAGE_NAME, GROUND_TRUTH_NAME]
    assert viewer.layers[IMAGE_NAME].visible
    assert not viewer.layers[GROUND_TRUTH_NAME].visible
    assert viewer.layers.selection.active.name == IMAGE_NAME
    assert tuple(viewer.dims.axis_labels) == ("z", "y", "x")
    manifest = PluginManager.instance().get_manifest("napari-xrm-al")
    expected = {
        f"{w.display_name} (napari-xrm-al)"
        for w in manifest.contributions.widgets or ()
    }
    docked = {
        name for name in viewer.window.dock_widgets if name.endswith("(napari-xrm-al)")
    }
    assert docked == expected
