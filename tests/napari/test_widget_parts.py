"""Parts of the Active learning dock: job runner, annotation binding, forms, plots."""

from __future__ import annotations

import argparse
import re
import threading
import time
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.commands._settings import add_setting_options, setting_overrides
from napari_xrm_al.core.events import Progress
from napari_xrm_al.core.session.paint_volume import PaintVolume
from napari_xrm_al.core.session.session import ImageRef, Session
from napari_xrm_al.core.settings import setting, settings
from napari_xrm_al.core.training.configs import PretrainConfig, TrainConfig
from napari_xrm_al.errors import XrmError
from napari_xrm_al.widgets import _job_controls, _jobs, annotations
from napari_xrm_al.widgets._config_form import ConfigForm
from napari_xrm_al.widgets.annotations import AnnotationBinding
from napari_xrm_al.widgets.plots import LearningCurvePlot, LossPlot, ProfilePlot
from napari_xrm_al.widgets.steps.training import PRETRAIN_FIELDS, TRAIN_FIELDS

SHAPE = (6, 10, 12)


# -- annotation binding ------------------------------------------------------------
@pytest.fixture
def session(tmp_path):
    image = ImageRef(path="", shape=SHAPE, dtype="uint16", fingerprint="x")
    return Session.create(tmp_path / "s.xrmal", image, ClassTable.hbm(), "z")


@pytest.mark.gui
def test_binding_saves_paint_fill_undo_and_replaced_data(
    make_napari_viewer_proxy, qtbot, session, monkeypatch
):
    viewer = make_napari_viewer_proxy()
    image = viewer.add_image(np.zeros(SHAPE, np.uint16), name="scan", scale=(2, 1, 1))
    session.annotations.write_slice(1, np.full(SHAPE[1:], 2, np.uint8))
    binding = AnnotationBinding(viewer, session, image)
    layer = binding.layer
    assert layer.name == "scan annotations"
    assert tuple(layer.scale) == (2, 1, 1)
    assert isinstance(layer.data, PaintVolume)  # slices read on demand, no copy
    assert layer.data[1].max() == 2  # loaded from the store
    assert binding.painted == {1}
    assert layer.colormap.map(np.array([4]))[0, 0] == pytest.approx(0xD6 / 255)

    layer.selected_label = 4
    layer.brush_size = 3
    layer.paint((3, 5, 5), 4)  # data coordinates
    assert binding.dirty == {3}
    assert session.annotations.read_slice(3).max() == 0  # not yet: debounced
    qtbot.waitUntil(lambda: session.annotations.read_slice(3).max() == 4, timeout=2000)
    assert not binding.dirty and binding.painted == {1, 3}

    layer.undo()  # no paint event, but the write is tracked
    assert binding.dirty == {3}
    assert binding.flush() == [3]
    assert session.annotations.read_slice(3).max() == 0 and binding.painted == {1}

    layer.fill((1, 0, 0), 3)
    binding.flush()
    assert (session.annotations.read_slice(1) == 3).all()

    guess = np.full(SHAPE[1:], 2, np.uint8)
    layer.data[4, :2] = 1
    binding.fill_unpainted(4, guess)
    binding.flush()
    stored = session.annotations.read_slice(4)
    assert (stored[:2] == 1).all() and (stored[2:] == 2).all()
    layer.undo()  # the pre-fill is one undo step
    binding.flush()
    assert (session.annotations.read_slice(4)[2:] == 0).all()

    layer.data = np.zeros(SHAPE, np.uint8)  # replaced from a script
    assert isinstance(layer.data, PaintVolume)
    binding.flush()
    assert session.annotations.array[...].max() == 0

    errors = []
    monkeypatch.setattr(annotations, "show_error", errors.append)
    layer.data[5, 0, 0] = 9  # not a class
    assert binding.flush() == []
    assert "Slice 5 was not saved" in errors[0]
    assert binding.dirty == {5}  # kept, to be saved once it is valid
    layer.data[5, 0, 0] = 1
    assert binding.flush() == [5] and session.annotations.read_slice(5)[0, 0] == 1

    layer.data[2, 0, 0] = 1
    viewer.layers.remove(layer)  # pending strokes are saved on removal
    assert session.annotations.read_slice(2)[0, 0] == 1


# -- job runner --------------------------------------------------------------------
def slow_job(n, delay, state, fail_at=None):
    state["thread"] = threading.get_ident()
    try:
        for i in range(1, n + 1):
            time.sleep(delay)
            if i == fail_at:
                raise XrmError("The volume is empty.")
            yield Progress("test", i, n, loss=1.0 / i, eta_seconds=(n - i) * delay)
        return "result"
    finally:
        state["closed_in"] = threading.get_ident()


@pytest.fixture
def notes(monkeypatch):
    found = {"warning": [], "error": []}
    for kind in found:
        monkeypatch.setattr(_jobs, f"show_{kind}", found[kind].append)
    return found


@pytest.mark.gui
def test_job_runner_progress_result_and_refusal(qtbot, notes):
    runner = _jobs.JobRunner()
    controls = _job_controls.JobControls(runner, "Go")
    qtbot.addWidget(controls)
    state, results, ends, events = {}, [], [], []
    worker = controls.run(
        "Job",
        slow_job(3, 0.05, state),
        on_done=results.append,
        on_progress=events.append,
        on_end=ends.append,
    )
    assert runner.busy and not controls.start_button.isEnabled()
    assert controls.cancel_button.isEnabled()
    other = {}
    assert runner.start("Other", slow_job(1, 0, other)) is None
    assert "Job is running" in notes["warning"][0]
    with qtbot.waitSignal(worker.finished, timeout=5000):
        pass
    qtbot.waitUntil(lambda: ends == ["done"], timeout=2000)
    assert results == ["result"]
    assert [e.step for e in events] == [1, 2, 3]
    assert controls.bar.value() == controls.bar.maximum() == 3
    assert controls.start_button.isEnabled() and not controls.cancel_button.isEnabled()
    assert state["closed_in"] != threading.get_ident()
    assert not runner.busy


@pytest.mark.gui
def test_job_runner_cancel_is_quick_and_closes_the_generator_on_the_worker(
    qtbot, notes
):
    runner = _jobs.JobRunner()
    state, results, ends = {}, [], []
    worker = runner.start(
        "Long job",
        slow_job(1000, 0.02, state),
        on_done=results.append,
        on_end=ends.append,
    )
    qtbot.waitUntil(lambda: "thread" in state, timeout=2000)
    t0 = time.perf_counter()
    with qtbot.waitSignal(worker.finished, timeout=3000):
        runner.cancel()
    assert time.perf_counter() - t0 < 1.5
    assert ends == ["cancelled"] and results == []
    assert state["closed_in"] == state["thread"] != threading.get_ident()
    assert notes == {"warning": [], "error": []}  # the strip says it, no toast


@pytest.mark.gui
def test_job_runner_error_becomes_a_notification(qtbot, notes):
    runner = _jobs.JobRunner()
    controls = _job_controls.JobControls(runner, "Go")
    qtbot.addWidget(controls)
    ends = []
    worker = controls.run("Job", slow_job(5, 0.01, {}, fail_at=2), on_end=ends.append)
    with qtbot.waitSignal(worker.finished, timeout=5000):
        pass
    qtbot.waitUntil(lambda: ends == ["failed"], timeout=2000)
    assert notes["error"] == ["Job stopped: The volume is empty."]
    assert controls.status.text() == "Job stopped: The volume is empty."
    assert controls.start_button.isEnabled()


def test_format_eta():
    assert _jobs.format_eta(None) == ""
    assert _jobs.format_eta(4.4) == "ETA 4 s"
    assert _jobs.format_eta(65) == "ETA 1 min 05 s"
    assert _jobs.format_eta(3 * 3600 + 120) == "ETA 3 h 02 min"


# -- config forms --------------------------------------------------------------------
@pytest.mark.gui
def test_config_form_defaults_specials_and_overrides(qtbot):
    form = ConfigForm(TrainConfig, TRAIN_FIELDS)
    qtbot.addWidget(form)
    assert form.config() == TrainConfig()  # defaults survive the round trip
    assert form.editors["steps"].specialValueText() == "auto"
    assert "optimiser steps" in form.editors["steps"].toolTip()
    form.set_value("steps", 7)
    form.set_value("time_budget_s", 30)
    form.set_value("loss", "dice_focal")
    config = form.config(features=(4, 8, 8, 16, 16, 8))
    assert (config.steps, config.time_budget_s, config.loss) == (7, 30, "dice_focal")
    assert config.features == (4, 8, 8, 16, 16, 8)
    form.set_value("steps", None)
    assert form.config().steps is None

    pre = ConfigForm(PretrainConfig, PRETRAIN_FIELDS)
    qtbot.addWidget(pre)
    assert pre.editors["features"].text() == "small"
    pre.editors["features"].setText("4, 8, 8, 16, 16, 8")
    assert pre.value("features") == (4, 8, 8, 16, 16, 8)
    pre.editors["features"].setText("big")
    with pytest.raises(XrmError, match="Feature widths 'big'"):
        pre.config()


@dataclass(frozen=True)
class Toy:
    """A config whose fields the tests describe."""

    decay: float = setting(
        0.5,
        label="Decay",
        help="Per step.",
        minimum=0.0,
        maximum=1.0,
        exclusive_maximum=True,
        step=0.01,
        decimals=2,
    )
    limit: int | None = setting(
        None,
        label="Limit",
        help="Most of them.",
        minimum=0,
        maximum=10,
        special="none",
        advanced=True,
    )


@pytest.mark.gui
def test_config_form_rows_come_from_the_settings(qtbot):
    form = ConfigForm(Toy, ("limit", "decay"))
    qtbot.addWidget(form)
    decay, limit = form.editors["decay"], form.editors["limit"]
    assert form.layout().itemAt(0).layout().labelForField(decay).text() == "Decay"
    assert form.advanced.layout().labelForField(limit).text() == "Limit"
    assert (decay.toolTip(), limit.toolTip()) == ("Per step.", "Most of them.")
    assert (decay.minimum(), decay.maximum(), decay.singleStep()) == (0, 0.99, 0.01)
    assert limit.specialValueText() == "none" and form.value("limit") is None
    form.set_value("limit", 4)
    assert form.config() == Toy(decay=0.5, limit=4)


@pytest.mark.gui
def test_a_setting_described_once_reaches_the_form_and_the_command_line(qtbot):
    form = ConfigForm(Toy, ("decay", "limit"))
    qtbot.addWidget(form)
    parser = argparse.ArgumentParser()
    add_setting_options(parser, Toy, ("decay", "limit"))
    help_text = " ".join(parser.format_help().split())
    for name, spec in settings(Toy).items():
        assert form.editors[name].toolTip() == spec.help
        assert f"--{name} {name.upper()} {spec.help.rstrip('.').lower()}" in help_text
    # the same range: what the form cannot be set to, the command line refuses
    for argv, message in [
        (["--decay", "1"], "in [0, 1)"),
        (["--limit", "0"], "at least 1"),
    ]:
        with pytest.raises(XrmError, match=re.escape(message)):
            setting_overrides(parser.parse_args(argv), Toy, ("decay", "limit"))


@pytest.mark.gui
def test_config_form_hides_advanced_fields(qtbot):
    form = ConfigForm(TrainConfig, ("batch_size", "lr"))
    qtbot.addWidget(form)
    assert form.advanced.isAncestorOf(form.editors["lr"])  # lr is advanced
    assert not form.advanced.isAncestorOf(form.editors["batch_size"])
    assert not form.advanced.isVisibleTo(form)
    form.advanced_button.setChecked(True)
    assert form.advanced.isVisibleTo(form)


@pytest.mark.gui
def test_config_form_sets_a_nested_augmentation_strength(qtbot):
    name = "augment.histogram_shift"
    form = ConfigForm(TrainConfig, ("batch_size", name))
    qtbot.addWidget(form)
    box = form.editors[name]
    assert form.advanced.isAncestorOf(box)
    assert form.advanced.layout().labelForField(box).text() == "Contrast-curve change"
    assert box.value() == TrainConfig().augment.histogram_shift
    assert (box.minimum(), box.maximum()) == (0.0, 0.5)
    form.set_value(name, 0.25)
    config = form.config(batch_size=4)
    assert (config.batch_size, config.augment.histogram_shift) == (4, 0.25)
    assert config.augment.noise_std == TrainConfig().augment.noise_std


# -- plots -----------------------------------------------------------------------------
@pytest.mark.gui
def test_plots(qtbot):
    loss = LossPlot()
    qtbot.addWidget(loss)
    loss.add(Progress("train", 1, 3, loss=0.9))
    loss.add(Progress("train", 2, 3))  # no loss: ignored
    loss.add(Progress("train", 3, 3, loss=0.5))
    assert loss.steps == [1, 3] and loss.losses == [0.9, 0.5]
    points = loss.points()  # pixels: the lower loss is drawn lower down
    assert points[0][0] < points[1][0] and points[0][1] < points[1][1]
    loss.grab()  # paints without error
    loss.reset()
    assert loss.steps == [] and loss.points() == []

    curve = LearningCurvePlot()
    qtbot.addWidget(curve)
    curve.show_curve(
        [
            {"cycle": 1, "strategy": "manual", "n_labelled": 2, "final_loss": 0.8},
            {
                "cycle": 2,
                "n_labelled": 4,
                "final_loss": 0.5,
                "miou": 0.7,
                "iou/void": 0.2,
            },
        ]
    )
    assert list(curve.series) == ["miou", "iou/void"]
    assert curve.series["miou"][1] == 0.7 and np.isnan(curve.series["miou"][0])
    legend = curve.ax.get_legend()
    assert legend.get_bbox_to_anchor().x0 > curve.ax.get_window_extent().x1  # outside
    one_cycle = {"cycle": 1, "n_labelled": 2, "miou": 0.7, "iou/void": 0.2}
    curve.show_curve([one_cycle])
    curve.figure.canvas.draw()
    ticks = [t for t in curve.ax.get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
    curve.show_curve([{"cycle": 1, "n_labelled": 2, "final_loss": 0.8}])
    assert curve.series == {"final_loss": [0.8]}

    profile = ProfilePlot()
    qtbot.addWidget(profile)
    profile.show_scores(np.arange(10), np.linspace(0, 1, 10), [9, 3], [0], "z")
    picks = profile.ax.lines[1]
    assert list(picks.get_xdata()) == [9, 3]
    profile.set_current(4)
    assert profile.cursor.get_xdata()[0] == 4
    with qtbot.waitSignal(profile.slice_clicked) as blocker:
        profile._on_click(SimpleNamespace(inaxes=profile.ax, xdata=6.6))
    assert blocker.args == [7]
