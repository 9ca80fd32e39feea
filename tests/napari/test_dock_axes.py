"""The dock with slices along any axis: rank along z, y and x, go to a y slice,
paint it, mark it done, reopen; and the anisotropy refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tests.napari.test_active_learning_dock import (
    ANNOTATIONS,
    IMAGE,
    SHAPE,
    make_dock,
    messages,
    wait,
)

from napari_xrm_al.core.session.schema import CycleRecord
from napari_xrm_al.core.slice_refs import SliceRef
from napari_xrm_al.core.synthetic.sample import make_hbm_sample
from napari_xrm_al.widgets._anisotropy import FORCE_TEXT
from napari_xrm_al.widgets.steps.suggest import ALL_AXES

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def sample():
    return make_hbm_sample(seed=0, shape=SHAPE)


def test_a_y_slice_round_trips_through_the_dock(
    make_napari_viewer_proxy, qtbot, sample, tmp_path, tiny_model_file
):
    folder = tmp_path / "axes.xrmal"
    viewer = make_napari_viewer_proxy()
    dock = make_dock(viewer, qtbot, sample, folder)
    session = dock.data.open_project()
    tiny_model_file(folder / "models" / "cycle-001.pt")
    session.add_cycle(CycleRecord(1, "manual", [], model="models/cycle-001.pt"))

    # Rank along z, y and x: every axis is in the table, as axis:index.
    assert dock.suggest.axes_combo.currentText() == ALL_AXES  # cubic voxels
    assert not dock.suggest.axes_guard.note.isVisibleTo(dock.suggest)  # cubic voxels
    dock.suggest.distance_spin.setValue(0)
    dock.suggest.k_spin.setValue(100)  # more than the 24 z and 64 x slices
    wait(qtbot, dock, dock.suggest.start())
    assert dock.suggest.ranking.axes == ["z", "y", "x"]
    picks = dock.suggest.picks()
    rank, ref = next((r, p) for r, p in enumerate(picks, 1) if p.axis_name == "y")
    assert dock.suggest.table.item(rank - 1, 1).text() == f"y:{ref.index}"

    # Clicking it turns the view to y and moves the slider there.
    dock.suggest.select_pick(rank)
    assert viewer.dims.order == (1, 0, 2)
    assert viewer.dims.current_step[1] == ref.index
    assert dock.current_ref() == ref
    assert f"Slice {ref.index} of 64 (y)" in dock.slice_label.text()
    # The score profile turned to y with it: y scores, cursor on the slice.
    profile = dock.suggest.profile
    assert dock.suggest.profile_axis == 1
    assert profile.ax.get_xlabel() == "slice (y)"
    assert len(profile.ax.lines[0].get_xdata()) == 64
    assert profile.cursor.get_xdata()[0] == ref.index
    profile.slice_clicked.emit(3)  # a click on it goes to y:3, and back
    assert dock.current_ref() == SliceRef(1, 3)
    dock.go_to_slice(ref)
    layer = dock.annotations.layer
    assert viewer.layers.selection.active.name == ANNOTATIONS
    assert layer.mode == "paint", layer.mode

    # A brush dab in that view paints the 3D layer in the y plane only.
    layer.brush_size = 3
    layer.paint((10, ref.index, 20), 2)
    painted = np.asarray(layer.data) != 0
    assert painted[10, ref.index, 20] and painted[:, ref.index].sum() > 1
    assert painted.sum() == painted[:, ref.index].sum()
    # The model fills the rest of that y slice (undoable, painted pixels kept).
    wait(qtbot, dock, dock.suggest.prefill())
    plane = np.asarray(layer.data)[:, ref.index]
    assert plane.min() >= 1 and plane[10, 20] == 2
    dock.done_button.click()
    document = json.loads((folder / "session.json").read_text())
    assert document["done"] == [["y", ref.index]]
    assert f"Done: y:{ref.index}" in dock.done_label.text()
    assert "✓ done" in dock.slice_label.text()
    assert dock.painted_not_done() == []  # the z slices it crosses are not part-painted

    # Back to z: napari's default order, and the z profile.
    dock.go_to_slice(5)
    assert viewer.dims.order == (0, 1, 2) and dock.current_ref() == SliceRef(0, 5)
    assert profile.ax.get_xlabel() == "slice (z)"
    assert profile.cursor.get_xdata()[0] == 5
    assert "✓" not in dock.slice_label.text()

    # Reopened in a new viewer and dock: the done list and the paint are back,
    # and the view turns to the done y slice.
    viewer.layers.remove(ANNOTATIONS)
    viewer2 = make_napari_viewer_proxy()
    dock2 = make_dock(viewer2, qtbot, sample, folder)
    session2 = dock2.data.open_project()
    assert session2.done == [ref]
    assert f"Done: y:{ref.index}" in dock2.done_label.text()
    np.testing.assert_array_equal(
        np.asarray(viewer2.layers[ANNOTATIONS].data)[:, ref.index], plane
    )
    assert viewer2.dims.order == (1, 0, 2) and dock2.current_ref() == ref
    assert "✓ done" in dock2.slice_label.text()


def test_anisotropic_voxels_refuse_other_axes_in_the_dock(
    make_napari_viewer_proxy, qtbot, sample, tmp_path
):
    viewer = make_napari_viewer_proxy()
    dock = make_dock(viewer, qtbot, sample, tmp_path / "aniso.xrmal")
    viewer.layers[IMAGE].scale = (5.0, 1.0, 1.0)  # slices 5 times thicker
    dock.data.open_project()
    suggest = dock.suggest
    assert "anisotropic" in suggest.axes_combo.toolTip()
    assert suggest.axes_combo.currentText() == "z"  # the default for such voxels
    assert not suggest.axes_guard.note.isVisibleTo(suggest)  # z alone: square pixels

    suggest.axes_combo.setCurrentText(ALL_AXES)
    assert suggest.axes_guard.note.isVisibleTo(suggest)
    assert "are refused" in suggest.axes_guard.note.text()
    assert "5.0:1" in suggest.axes_guard.note.text()
    assert f"'{FORCE_TEXT}'" in suggest.axes_guard.note.text()
    assert suggest.axes_guard.force_box.isVisibleTo(suggest)
    since = len(messages())
    assert suggest.start() is None and not dock.runner.busy
    assert "are refused" in messages(since)[-1]

    suggest.axes_guard.force_box.setChecked(True)  # forced: a note, no refusal
    assert suggest.axes_guard.note.text().startswith("Note: the voxels are 5 × 1 × 1")
    assert suggest.axes() == [0, 1, 2]

    # Training on done slices along z and y is refused the same way, until forced.
    train = dock.train
    session = dock.state.session
    for ref in (SliceRef(0, 3), SliceRef(1, 20)):
        session.mark_done(ref)
    dock.state.session_changed.emit()
    assert train.axes_guard.note.isVisibleTo(train)
    assert "Slices along z, y are refused" in train.axes_guard.note.text()
    since = len(messages())
    assert train.start() is None and not dock.runner.busy
    assert "are refused" in messages(since)[-1]
    train.axes_guard.force_box.setChecked(True)
    assert train.axes_guard.note.text().startswith("Note: the voxels are 5 × 1 × 1")
    # Validation slices are axis-qualified too: a done y slice cannot validate.
    train.validation_edit.setText("5, y:20")
    assert train.validation_slices() == [SliceRef(0, 5), SliceRef(1, 20)]
    assert train.start() is None
    assert "Slices y:20 are marked done" in messages(since)[-1]
    session.mark_done(SliceRef(1, 20), False)  # z alone: nothing to say
    dock.state.session_changed.emit()
    assert not train.axes_guard.note.isVisibleTo(train)
