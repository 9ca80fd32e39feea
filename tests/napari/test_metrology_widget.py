"""The Void metrology dock widget in a real (hidden) viewer."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from matplotlib.colors import to_hex, to_rgba
from napari.layers import Labels
from napari.utils.theme import get_theme
from qtpy.QtCore import Qt

from napari_xrm_al._napari.layer_keys import PROVENANCE_KEY
from napari_xrm_al.classes import ClassTable
from napari_xrm_al.errors import XrmError
from napari_xrm_al.widgets.metrology import (
    CLASSES_KEY,
    FAIL_COLOUR,
    PASS_COLOUR,
    POINTS_NAME,
    TABLE_COLUMNS,
    MetrologyWidget,
    _voxel_size_um,
)

pytestmark = pytest.mark.gui

SOLDER, VOID = 3, 4  # annotation ids of the HBM table


def three_bumps() -> np.ndarray:
    """Bump 1: ratio 1/4 (fails at 0.2); bump 2: no void; bump 3: 1/8."""
    mask = np.zeros((10, 12, 30), np.uint8)
    mask[2:6, 2:6, 2:6] = SOLDER
    mask[2:6, 2:4, 2:4] = VOID
    mask[3:7, 4:8, 12:16] = SOLDER
    mask[4:8, 6:10, 22:26] = SOLDER
    mask[4:6, 6:8, 22:24] = VOID
    return mask


def run_measure(widget, qtbot):
    assert widget.measure() is not None
    qtbot.waitUntil(
        lambda: widget.bumps is not None and not widget.runner.busy, timeout=20_000
    )


def column(widget, name):
    c = TABLE_COLUMNS.index(name)
    return [
        widget.table.item(r, c).data(Qt.ItemDataRole.DisplayRole)
        for r in range(widget.table.rowCount())
    ]


def test_measure_table_points_histogram_centre_and_export(
    make_napari_viewer_proxy, qtbot, tmp_path
):
    viewer = make_napari_viewer_proxy()
    classes = ClassTable.parse("background,copper,void,solder")  # ids moved around
    mask = three_bumps()
    swapped = np.where(mask == SOLDER, 4, np.where(mask == VOID, 3, mask))
    viewer.add_labels(
        swapped,
        name="mask",
        scale=(2.0, 0.5, 0.5),
        translate=(10.0, 0.0, 0.0),
        units=("um", "um", "um"),
        metadata={CLASSES_KEY: classes.to_dict()},
    )
    widget = MetrologyWidget(viewer)
    qtbot.addWidget(widget)
    assert (widget.solder_spin.value(), widget.void_spin.value()) == (4, 3)
    widget.threshold_spin.setValue(0.2)
    run_measure(widget, qtbot)

    assert widget.table.rowCount() == 3
    assert column(widget, "id") == [1, 2, 3]
    assert column(widget, "void_ratio") == [0.25, 0.0, 0.125]
    assert column(widget, "pass") == ["FAIL", "pass", "pass"]
    assert widget.controls.bar.value() == widget.controls.bar.maximum() == 10
    assert widget.controls.status.text() == "Done."

    points = viewer.layers[POINTS_NAME]
    np.testing.assert_allclose(points.data[1], (4.5, 5.5, 13.5))
    np.testing.assert_allclose(points.scale, (2.0, 0.5, 0.5))
    assert list(points.features["void_ratio"]) == [0.25, 0.0, 0.125]
    assert list(points.features["pass"]) == [False, True, True]
    np.testing.assert_allclose(
        points.face_color[:, :3],
        [to_rgba(c)[:3] for c in (FAIL_COLOUR, PASS_COLOUR, PASS_COLOUR)],
    )
    heights = [p.get_height() for p in widget.histogram.ax.patches]
    assert sum(heights) == 3
    assert widget.histogram.ax.lines[0].get_xdata()[0] == pytest.approx(0.2)

    # Sorting by void ratio reorders rows; the click follows the bump, not the row.
    widget.table.sortItems(
        TABLE_COLUMNS.index("void_ratio"), Qt.SortOrder.DescendingOrder
    )
    assert column(widget, "id") == [1, 3, 2]
    widget.table.selectRow(1)  # bump 3, centroid (5.5, 7.5, 23.5)
    camera = getattr(viewer, "scene", viewer).camera
    assert camera.center[-2:] == pytest.approx((0.5 * 7.5, 0.5 * 23.5))
    widget.table.selectRow(0)  # bump 1, centroid (3.5, 3.5, 3.5): z world 17
    assert viewer.dims.point[0] in (16.0, 18.0)  # the planes either side
    assert camera.center[-2:] == pytest.approx((0.5 * 3.5, 0.5 * 3.5))

    # A new threshold re-judges the bumps without measuring again, and updates
    # the Points layer in place (the user's display settings survive).
    points.opacity = 0.3
    n_layers = len(viewer.layers)
    widget.threshold_spin.setValue(0.3)
    assert len(viewer.layers) == n_layers
    assert viewer.layers[POINTS_NAME].opacity == pytest.approx(0.3)
    assert column(widget, "pass").count("FAIL") == 0
    np.testing.assert_allclose(
        viewer.layers[POINTS_NAME].face_color[0, :3], to_rgba(PASS_COLOUR)[:3]
    )

    out = tmp_path / "bumps.csv"
    widget.export_csv(str(out))
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["void_ratio"] for r in rows] == ["0.25", "0.0", "0.125"]
    assert [r["pass"] for r in rows] == ["True", "True", "True"]
    assert float(rows[0]["void_volume_um3"]) == 16 * 2.0 * 0.5 * 0.5


def test_docks_from_the_plugin_menu(make_napari_viewer_proxy):
    viewer = make_napari_viewer_proxy()
    viewer.add_labels(three_bumps(), name="mask")
    _, widget = viewer.window.add_plugin_dock_widget("napari-xrm-al", "Void metrology")
    assert isinstance(widget, MetrologyWidget)
    assert widget.layer_combo.currentText() == "mask"


def test_cancel_stops_at_the_next_slab(make_napari_viewer_proxy, qtbot):
    viewer = make_napari_viewer_proxy()
    viewer.add_labels(np.full((256, 32, 32), SOLDER, np.uint8), name="mask")
    widget = MetrologyWidget(viewer)
    qtbot.addWidget(widget)
    widget.slab = 1
    assert widget.measure() is not None
    qtbot.waitUntil(lambda: widget.controls.bar.value() > 0, timeout=20_000)
    widget.runner.cancel()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=20_000)
    assert widget.bumps is None
    assert widget.controls.status.text() == "Cancelled."
    assert widget.controls.start_button.isEnabled()
    assert widget.controls.bar.value() < 256


def test_a_crash_inside_the_job_is_reported_and_the_widget_stays_usable(
    make_napari_viewer_proxy, qtbot, monkeypatch
):
    viewer = make_napari_viewer_proxy()
    viewer.add_labels(three_bumps(), name="mask")
    widget = MetrologyWidget(viewer)
    qtbot.addWidget(widget)

    def broken(*args, **kwargs):
        yield from ()
        raise RuntimeError("can't allocate memory")

    monkeypatch.setattr("napari_xrm_al.widgets.metrology.iter_measure_bumps", broken)
    assert widget.measure() is not None
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=20_000)
    assert "ran out of memory" in widget.controls.status.text()
    monkeypatch.undo()
    run_measure(widget, qtbot)
    assert widget.table.rowCount() == 3


def test_voxel_size_follows_the_layer_units():
    layer = Labels(np.zeros((2, 2, 2), np.uint8), scale=(2.0, 500.0, 500.0))
    assert _voxel_size_um(layer) is None  # pixels: no physical size
    layer.units = ("um", "nm", "nm")
    assert _voxel_size_um(layer) == pytest.approx((2.0, 0.5, 0.5))


def test_bad_input_is_a_notification_not_a_crash(
    make_napari_viewer_proxy, qtbot, monkeypatch
):
    viewer = make_napari_viewer_proxy()
    widget = MetrologyWidget(viewer)
    qtbot.addWidget(widget)
    messages = []
    monkeypatch.setattr("napari_xrm_al.widgets.metrology.show_error", messages.append)
    assert widget.measure() is None
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="flat")
    assert widget.layer_combo.currentText() == "flat"
    assert widget.measure() is None
    assert messages[0] == "Choose a Labels layer to measure."
    assert "'flat'" in messages[1] and "3D" in messages[1]


def test_the_report_never_overwrites_the_measured_mask(
    make_napari_viewer_proxy, qtbot, tmp_path
):
    import tifffile

    path = tmp_path / "mask.tif"
    tifffile.imwrite(path, three_bumps())
    viewer = make_napari_viewer_proxy()
    viewer.open(str(path), plugin="napari", layer_type="labels", name="mask")
    widget = MetrologyWidget(viewer)
    qtbot.addWidget(widget)
    run_measure(widget, qtbot)
    before = path.read_bytes()
    with pytest.raises(XrmError, match="is the same file as the measured mask"):
        widget.export_csv(str(tmp_path / "." / "mask.tif"))
    assert path.read_bytes() == before


def test_follows_the_newest_prediction(make_napari_viewer_proxy, qtbot):
    viewer = make_napari_viewer_proxy()
    viewer.add_labels(three_bumps(), name="ground truth")
    widget = MetrologyWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.layer_combo.currentText() == "ground truth"
    viewer.add_labels(np.zeros((10, 12, 30), np.uint8), name="annotations")
    assert widget.layer_combo.currentText() == "ground truth"  # not a prediction

    model = {PROVENANCE_KEY: {"model": "models/cycle-001.pt"}}
    prediction = viewer.add_labels(three_bumps(), name="prediction", metadata=model)
    assert widget.layer_combo.currentText() == "prediction"

    widget.layer_combo.setCurrentText("ground truth")  # the user's choice holds...
    viewer.add_labels(np.zeros((10, 12, 30), np.uint8), name="other")
    viewer.layers.move(0, 2)
    assert widget.layer_combo.currentText() == "ground truth"
    prediction.data = three_bumps()  # ...until the model predicts again
    assert widget.layer_combo.currentText() == "prediction"


def test_the_histogram_wears_the_napari_theme(make_napari_viewer_proxy, qtbot):
    viewer = make_napari_viewer_proxy()
    viewer.theme = "dark"
    widget = MetrologyWidget(viewer)
    qtbot.addWidget(widget)
    for name in ("dark", "light"):
        viewer.theme = name
        theme = get_theme(name)
        ax = widget.histogram.ax
        assert (
            to_hex(widget.histogram.figure.get_facecolor()) == theme.background.as_hex()
        )
        assert to_hex(ax.get_facecolor()) == theme.background.as_hex()
        assert to_hex(ax.xaxis.label.get_color()) == theme.text.as_hex()
        assert ax.texts  # "measure a mask…", not a blank box
