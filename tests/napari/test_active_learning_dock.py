"""The Active learning dock in a real (hidden) viewer: the whole loop, cancel,
reopening a project and error paths, with a tiny volume and network."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from matplotlib.colors import to_hex
from napari.utils.notifications import notification_manager
from napari.utils.theme import get_theme

from napari_xrm_al._napari.layer_keys import PROVENANCE_KEY
from napari_xrm_al._napari.sample_data import sample_layer_data
from napari_xrm_al.classes import dense_to_annotation
from napari_xrm_al.core.session.schema import SuggestionRecord
from napari_xrm_al.core.slice_refs import SliceRef
from napari_xrm_al.core.synthetic.sample import make_hbm_sample
from napari_xrm_al.io.mask_reader import read_mask
from napari_xrm_al.widgets._layers import CANDIDATES_NAME
from napari_xrm_al.widgets.active_learning_dock import ActiveLearningWidget
from napari_xrm_al.widgets.metrology import MetrologyWidget
from napari_xrm_al.widgets.steps.suggest import ALL_AXES, REASONS

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_thread")]

SHAPE = (24, 64, 64)
IMAGE = "HBM sample"
ANNOTATIONS = f"{IMAGE} annotations"
TINY = "4, 8, 8, 16, 16, 8"
TIMEOUT = 30_000


@pytest.fixture(scope="module")
def sample():
    return make_hbm_sample(seed=0, shape=SHAPE)


def make_dock(viewer, qtbot, sample, folder, tiny=True):
    for data, meta, kind in sample_layer_data(sample, ground_truth_visible=False):
        getattr(viewer, f"add_{kind}")(data, **meta)
    dock = ActiveLearningWidget(viewer)
    qtbot.addWidget(dock)
    dock.data.folder_edit.setText(str(folder))
    if not tiny:  # the defaults a user starts from
        return dock
    # Tiny settings, through the same boxes a user would change.
    pre = dock.pretrain.form
    for name, value in (("steps", 3), ("time_budget_s", None), ("batch_size", 4)):
        pre.set_value(name, value)
    pre.set_value("region_size", 32)
    pre.set_value("view_size", 32)
    pre.editors["features"].setText(TINY)
    for name, value in (("steps", 4), ("batch_size", 2), ("crop_size", 32)):
        dock.train.form.set_value(name, value)
    return dock


def wait(qtbot, dock, worker, timeout=TIMEOUT):
    assert worker is not None
    qtbot.waitUntil(lambda: not dock.runner.busy, timeout=timeout)


def paint_slice(dock, index, truth):
    """Paint a whole slice with the ground truth, as a tool would (undoable)."""
    layer = dock.annotations.layer
    rows, cols = np.nonzero(np.ones(SHAPE[1:], bool))
    coords = (np.full(rows.size, index), rows, cols)
    layer.data_setitem(coords, truth[index][rows, cols])


def messages(since=0):
    return [n.message for n in notification_manager.records[since:]]


def test_the_whole_loop(make_napari_viewer_proxy, qtbot, sample, tmp_path):
    viewer = make_napari_viewer_proxy()
    dock = make_dock(viewer, qtbot, sample, tmp_path / "hbm.xrmal")
    metrology = MetrologyWidget(viewer)  # docked beside the loop, as in the demo
    qtbot.addWidget(metrology)
    truth = dense_to_annotation(sample.labels)
    assert dock.data.image_combo.currentText() == IMAGE
    assert dock.data.classes.classes().rare == ("void",)

    # 1 Data: the project and its annotation layer.
    session = dock.data.open_project()
    assert session is not None and (tmp_path / "hbm.xrmal" / "session.json").is_file()
    layer = viewer.layers[ANNOTATIONS]
    assert layer.data.shape == SHAPE and np.asarray(layer.data).max() == 0
    assert layer.metadata["napari_xrm_al_classes"]["classes"][3]["name"] == "void"
    assert "Needs slices marked done" in dock.train.hint.text()
    # Cubic voxels: a project ranks along z, y and x; this loop stays along z.
    assert dock.suggest.axes_combo.currentText() == ALL_AXES
    dock.suggest.axes_combo.setCurrentText("z")

    # 2 Pretrain.
    wait(qtbot, dock, dock.pretrain.start())
    assert session.pretrained == "models/encoder.pt"
    assert (session.folder / "models" / "encoder.pt").is_file()
    assert dock.pretrain.plot.steps == [1, 2, 3]
    assert "✓" in dock.steps.itemText(1)
    # Before any model, suggestions come from the encoder (core-set).
    assert "together show the scan's structures" in dock.suggest.hint.text()
    dock.suggest.k_spin.setValue(2)
    wait(qtbot, dock, dock.suggest.start())
    assert len(dock.suggest.picks()) == 2 and dock.suggest.table.rowCount() == 2
    assert session.suggestion.strategy == "coreset"  # kept in the project
    assert dock.suggest.table.item(0, 3).text() == "–"

    # Paint two slices through the Labels layer and mark them done.
    for index in (4, 16):
        dock.go_to_slice(index)
        assert dock.current_slice() == index
        paint_slice(dock, index, truth)
        assert dock.mark_done()
    assert session.done == [SliceRef(0, 4), SliceRef(0, 16)]
    np.testing.assert_array_equal(session.annotations.read_slice(16), truth[16])
    assert "2 done" in dock.slice_label.text()

    # 3 Train.
    wait(qtbot, dock, dock.train.start())
    assert len(session.cycles) == 1 and session.cycles[0].labelled == [
        ["z", 4],
        ["z", 16],
    ]
    # The cycle records the suggestion it followed, and uses it up.
    assert session.cycles[0].strategy == "coreset" and len(session.cycles[0].picks) == 2
    assert session.suggestion is None
    assert (session.folder / "models" / "cycle-001.pt").is_file()
    assert dock.train.plot.steps == [1, 2, 3, 4]
    assert "Cycle 1" in dock.train.result.text()

    # The discovery variant says how it split the batch and why each slice.
    dock.suggest.strategy_combo.setCurrentText("rareness-discovery")
    dock.suggest.k_spin.setValue(4)
    wait(qtbot, dock, dock.suggest.start())
    plan = dock.suggest.ranking.plan
    assert plan.unseen and plan.cover >= 1  # no void painted yet
    assert dock.suggest.plan_label.isVisibleTo(dock.suggest)
    assert "to cover what is not labelled yet" in dock.suggest.plan_label.text()
    whys = [dock.suggest.table.item(r, 4).text() for r in range(plan.cover)]
    assert whys == [REASONS["cover"]] * plan.cover
    dock.suggest.strategy_combo.setCurrentText("rareness")

    # 4 Suggest, go to the top candidate, pre-fill, correct, mark done.
    dock.suggest.k_spin.setValue(3)
    wait(qtbot, dock, dock.suggest.start())
    assert not dock.suggest.plan_label.isVisibleTo(dock.suggest)
    picks = [ref.index for ref in dock.suggest.picks()]  # along z (chosen above)
    assert len(picks) == 3 and dock.suggest.table.rowCount() == 3
    assert not {4, 16} & set(picks)
    frames = viewer.layers[CANDIDATES_NAME]
    assert len(frames.data) == 3
    assert [int(f[0, 0]) for f in frames.data] == picks
    dock.suggest.select_pick(1)
    top = picks[0]
    assert dock.current_slice() == top
    assert viewer.layers.selection.active.name == ANNOTATIONS
    assert layer.mode == "paint"
    assert dock.suggest.profile.cursor.get_xdata()[0] == top

    wait(qtbot, dock, dock.suggest.prefill())
    guess = layer.data[top].copy()
    assert guess.min() >= 1 and guess.max() <= 4  # every pixel pre-filled
    paint_slice(dock, top, truth)  # the analyst corrects it
    assert dock.toggle_done()
    assert session.done_along() == sorted([4, 16, top])
    np.testing.assert_array_equal(session.annotations.read_slice(top), truth[top])

    # Retrain with another seed, a painted validation slice kept out of training.
    dock.train.seed_box.setValue(3)
    val = next(
        i for i in (10, 21, 1) if min(abs(i - s) for s in session.done_along()) > 1
    )
    paint_slice(dock, val, truth)
    dock.train.validation_edit.setText(str(val))
    wait(qtbot, dock, dock.train.start())
    assert len(session.cycles) == 2
    record = session.cycles[1]
    assert record.strategy == "rareness" and record.seed == 3
    assert "seed 3" in dock.train.result.text()
    assert [p["slice"] for p in record.picks] == picks
    assert "miou" in record.metrics and "iou/void" in record.metrics
    assert dock.train.metrics.isVisibleTo(dock.train)
    assert dock.train.metrics.rowCount() == 4
    # The validation slice is painted but never suggested.
    wait(qtbot, dock, dock.suggest.start())
    gap = dock.suggest.distance_spin.value()
    assert all(abs(p.index - val) >= gap for p in dock.suggest.picks())

    # 5 Predict and export.
    wait(qtbot, dock, dock.predict.start())
    prediction = viewer.layers[f"{IMAGE} prediction"]
    assert metrology.layer_combo.currentText() == prediction.name  # follows it
    labels = np.asarray(prediction.data)
    assert labels.shape == SHAPE and labels.min() >= 1 and labels.max() <= 4
    assert not prediction.editable  # paint on the annotation layer instead
    assert prediction.metadata[PROVENANCE_KEY]["axes"] == "z"  # trained along z
    uncertainty = np.asarray(viewer.layers[f"{IMAGE} uncertainty"].data)
    assert uncertainty.shape == SHAPE and uncertainty.dtype == np.uint8
    assert uncertainty.max() > 0
    assert (session.folder / "prediction.zarr").is_dir()
    assert read_mask(session.folder / "prediction.zarr").provenance["tta"] == "none"
    dock.predict.tta_combo.setCurrentText("dihedral")
    metrology.layer_combo.setCurrentText(ANNOTATIONS)  # the user looks elsewhere
    wait(qtbot, dock, dock.predict.start())
    assert metrology.layer_combo.currentText() == prediction.name  # the newest
    assert read_mask(session.folder / "prediction.zarr").provenance["tta"] == "dihedral"
    labels = np.asarray(viewer.layers[f"{IMAGE} prediction"].data)
    out = tmp_path / "mask.ome.zarr"
    wait(qtbot, dock, dock.predict.export(str(out)))
    assert dock.predict.last_export == out
    mask = read_mask(out)
    assert mask.classes.names == ("background", "copper", "solder", "void")
    np.testing.assert_array_equal(np.asarray(mask.data), labels)
    assert [len(v) for v in dock.predict.curve.series.values()] == [2] * len(
        dock.predict.curve.series
    )
    assert all("✓" in dock.steps.itemText(i) for i in range(5))


def test_cancel_training_keeps_the_previous_model(
    make_napari_viewer_proxy, qtbot, sample, tmp_path
):
    viewer = make_napari_viewer_proxy()
    dock = make_dock(viewer, qtbot, sample, tmp_path / "p.xrmal")
    dock.data.open_project()
    truth = dense_to_annotation(sample.labels)
    for index in (5, 15):
        paint_slice(dock, index, truth)
        assert dock.mark_done(index)
    wait(qtbot, dock, dock.train.start())
    first = dock.session.latest_model

    dock.train.form.set_value("steps", 100_000)
    since = len(notification_manager.records)
    worker = dock.train.start()
    qtbot.waitUntil(lambda: len(dock.train.plot.losses) >= 2, timeout=TIMEOUT)
    assert not dock.pretrain.controls.start_button.isEnabled()  # one job at a time
    assert dock.predict.start() is None
    assert any("Training is running" in m for m in messages(since))
    t0 = time.perf_counter()
    dock.train.controls.cancel_button.click()
    wait(qtbot, dock, worker, timeout=5000)
    assert time.perf_counter() - t0 < 2.0
    assert dock.train.controls.status.text() == "Cancelled."
    assert len(dock.session.cycles) == 1 and dock.session.latest_model == first
    assert not (dock.session.folder / "models" / "cycle-002.pt").exists()
    assert dock.train.controls.start_button.isEnabled()

    # The next training succeeds: nothing says "cancelled" any more (no toast
    # was raised that could outlast it; the status line is replaced).
    dock.train.form.set_value("steps", 4)
    wait(qtbot, dock, dock.train.start())
    assert len(dock.session.cycles) == 2
    assert dock.train.controls.status.text() == "Done."
    assert not [m for m in messages(since) if "cancelled" in m.lower()]


def test_reopen_a_saved_project(make_napari_viewer_proxy, qtbot, sample, tmp_path):
    folder = tmp_path / "again.xrmal"
    viewer = make_napari_viewer_proxy()
    dock = make_dock(viewer, qtbot, sample, folder)
    dock.data.classes.set_colour(3, "#ff00ff")
    dock.data.open_project()
    truth = dense_to_annotation(sample.labels)
    paint_slice(dock, 7, truth)
    assert dock.mark_done(7)
    dock.annotations.layer.data[12, :4, :4] = 2  # painted, saved, not done
    viewer.layers.remove(ANNOTATIONS)
    picks = [
        {"axis": "z", "slice": 20, "score": 0.5, "rank": 1, "reason": "rare"},
        {"axis": "y", "slice": 9, "score": 0.25, "rank": 2},
    ]
    plan = "1 slice to cover what is not labelled yet, 1 for voids"
    dock.session.record_suggestion(SuggestionRecord("rareness", picks, plan=plan))

    # A new viewer and dock (the plugin restarted); the scan changed slightly.
    viewer2 = make_napari_viewer_proxy()
    dock2 = make_dock(viewer2, qtbot, sample, folder)
    viewer2.layers[IMAGE].data = sample.image + 1
    since = len(notification_manager.records)
    session = dock2.data.open_project()
    assert session.done == [SliceRef(0, 7)]
    assert session.classes.colours[3] == "#ff00ff"
    assert dock2.data.classes.classes().colours[3] == "#ff00ff"
    assert not dock2.data.classes.table.isEnabled()  # an open project fixes classes
    layer = viewer2.layers[ANNOTATIONS]
    np.testing.assert_array_equal(layer.data[7], truth[7])
    assert (layer.data[12, :4, :4] == 2).all()
    assert dock2.painted_not_done() == [12]
    assert "Painted but not marked done: [12]" in dock2.train.hint.text()
    assert dock2.current_slice() == 7
    assert any("changed on disk" in m for m in messages(since))
    # The suggestion made before the restart is back in the table and the view.
    assert dock2.suggest.picks() == [SliceRef(0, 20), SliceRef(1, 9)]
    assert [dock2.suggest.table.item(r, 1).text() for r in (0, 1)] == ["z:20", "y:9"]
    assert dock2.suggest.table.item(0, 4).text() == REASONS["rare"]
    assert dock2.suggest.plan_label.text() == plan
    assert len(viewer2.layers[CANDIDATES_NAME].data) == 2
    assert "✓" in dock2.steps.itemText(3)


def test_a_reopened_project_restores_the_settings_of_its_models(
    make_napari_viewer_proxy, qtbot, sample, tmp_path
):
    folder = tmp_path / "settings.xrmal"
    viewer = make_napari_viewer_proxy()
    dock = make_dock(viewer, qtbot, sample, folder)
    dock.pretrain.form.set_value("temperature", 0.2)
    dock.data.open_project()
    wait(qtbot, dock, dock.pretrain.start())
    truth = dense_to_annotation(sample.labels)
    for index in (5, 15):
        paint_slice(dock, index, truth)
        assert dock.mark_done(index)
    dock.train.form.set_value("lr", 0.002)
    dock.train.form.set_value("augment.noise_std", 0.02)
    dock.train.seed_box.setValue(5)
    wait(qtbot, dock, dock.train.start())
    trained = (dock.pretrain.form.values(), dock.train.form.values())
    viewer.layers.remove(ANNOTATIONS)  # the project is free again

    # The plugin restarted: its forms start at the defaults until the project opens.
    dock2 = make_dock(make_napari_viewer_proxy(), qtbot, sample, folder, tiny=False)
    assert dock2.train.form.value("steps") is None and dock2.train.seed_box.value() == 0
    assert dock2.pretrain.form.values() != trained[0]
    assert dock2.data.open_project() is not None
    assert (dock2.pretrain.form.values(), dock2.train.form.values()) == trained
    assert dock2.train.form.value("lr") == pytest.approx(0.002)
    assert dock2.pretrain.form.value("features") == (4, 8, 8, 16, 16, 8)
    assert dock2.train.seed_box.value() == 5


def test_errors_become_notifications_and_leave_a_consistent_state(
    make_napari_viewer_proxy, qtbot, sample, tmp_path
):
    viewer = make_napari_viewer_proxy()
    dock = make_dock(viewer, qtbot, sample, tmp_path / "e.xrmal")
    since = len(notification_manager.records)
    assert dock.train.start() is None  # no project yet
    assert "Open a project first" in messages(since)[-1]

    dock.data.open_project()
    assert not dock.mark_done(3)  # nothing painted there
    assert "Slice z:3 has no painted pixels" in messages(since)[-1]

    worker = dock.train.start()  # nothing marked done: the core refuses
    wait(qtbot, dock, worker)
    assert "Mark at least one painted slice as done" in messages(since)[-1]
    assert "Mark at least one" in dock.train.controls.status.text()
    assert dock.session.cycles == [] and dock.train.controls.start_button.isEnabled()

    dock.train.validation_edit.setText("4, x")
    assert dock.train.start() is None
    assert "Validation slices must be" in messages(since)[-1]
    assert "y:40-45" in messages(since)[-1]
    assert "got '4, x'" in messages(since)[-1]
    assert dock.predict.export(str(tmp_path / "m.zarr")) is None
    assert "Predict the volume before exporting" in messages(since)[-1]
    dock.data.open_file(str(tmp_path / "missing.tif"))
    assert "Cannot open" in messages(since)[-1]
    assert not dock.runner.busy


def test_slices_across_y(make_napari_viewer_proxy, qtbot, sample, tmp_path):
    viewer = make_napari_viewer_proxy()
    dock = make_dock(viewer, qtbot, sample, tmp_path / "y.xrmal")
    dock.data.axis_combo.setCurrentText("y")
    session = dock.data.open_project()
    assert session.axis == "y"
    dock.go_to_slice(40)
    assert viewer.dims.order[0] == 1  # y is now the slider
    assert dock.current_slice() == 40
    layer = dock.annotations.layer
    layer.selected_label = 2
    layer.paint((5, 40, 7), 2)  # a brush dab on the shown y plane
    assert dock.mark_done()
    assert session.done == [SliceRef.of("y", 40)]
    assert session.annotations.read_slice(40)[5, 7] == 2


def test_open_a_scan_file_puts_the_project_beside_it(
    make_napari_viewer_proxy, qtbot, sample, tmp_path
):
    import tifffile

    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, sample.image)
    viewer = make_napari_viewer_proxy()
    dock = ActiveLearningWidget(viewer)
    qtbot.addWidget(dock)
    dock.data.open_file(str(path))
    layer = dock.data.image_layer()
    assert layer is not None and layer.data.shape == SHAPE
    assert dock.data.folder_edit.text() == str(tmp_path / "scan.tif.xrmal")
    session = dock.data.open_project()
    assert session.folder == tmp_path / "scan.tif.xrmal"
    assert session.image.path == str(path.resolve())


def test_export_never_overwrites_the_scan_or_the_project(
    make_napari_viewer_proxy, qtbot, sample, tmp_path
):
    scan = tmp_path / "scan.tif"
    scan.write_bytes(b"the scan")
    (tmp_path / "link").symlink_to(tmp_path, target_is_directory=True)
    viewer = make_napari_viewer_proxy()
    dock = make_dock(viewer, qtbot, sample, tmp_path / "p.xrmal")
    session = dock.data.open_project()
    session.image = dataclasses.replace(session.image, path=str(scan))
    viewer.add_labels(np.ones(SHAPE, np.uint8), name=dock.predict.prediction_name)
    before = sorted(p.name for p in session.folder.iterdir())
    since = len(notification_manager.records)
    for target, words in (
        (tmp_path / "link" / "scan.tif", "is the same file as the image"),
        (session.folder / ".." / "p.xrmal", "contains the project's"),
        (session.folder / "prediction.zarr", "the project's prediction"),
    ):
        assert dock.predict.export(str(target)) is None
        assert words in messages(since)[-1] and str(target) in messages(since)[-1]
    assert scan.read_bytes() == b"the scan"
    assert sorted(p.name for p in session.folder.iterdir()) == before
    assert not dock.runner.busy


def test_every_plot_wears_the_napari_theme(make_napari_viewer_proxy, qtbot):
    viewer = make_napari_viewer_proxy()
    dock = ActiveLearningWidget(viewer)
    qtbot.addWidget(dock)
    for name in ("light", "dark"):
        viewer.theme = name
        theme = get_theme(name)
        background = theme.background.as_hex()
        for plot in (dock.suggest.profile, dock.predict.curve):
            assert to_hex(plot.figure.get_facecolor()) == background
            assert to_hex(plot.ax.get_facecolor()) == background
            assert to_hex(plot.ax.yaxis.label.get_color()) == theme.text.as_hex()
        for plot in (dock.pretrain.plot, dock.train.plot):  # painted by Qt
            assert plot.grab().toImage().pixelColor(1, 1).name() == background
