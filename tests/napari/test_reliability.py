"""Nothing lost and nothing mixed up: a crash mid-painting, failing jobs, and
two viewers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from napari.utils.notifications import notification_manager

from napari_xrm_al._napari.sample_data import sample_layer_data
from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.events import Progress
from napari_xrm_al.core.session.jobs import session_for
from napari_xrm_al.core.session.session import CycleRecord, Session
from napari_xrm_al.core.slice_refs import SliceRef
from napari_xrm_al.core.synthetic.sample import make_hbm_sample
from napari_xrm_al.widgets import _job_controls, _jobs
from napari_xrm_al.widgets.active_learning_dock import ActiveLearningWidget

pytestmark = pytest.mark.gui

SHAPE = (8, 32, 32)
#: Strokes must reach the store within this many seconds.
SAVED_WITHIN_S = 2.0
CHILD = Path(__file__).with_name("paint_and_die.py")


@pytest.fixture(scope="module")
def sample():
    return make_hbm_sample(seed=0, shape=SHAPE)


def messages(since: int = 0) -> list[str]:
    return [n.message for n in notification_manager.records[since:]]


# -- a crash while painting ------------------------------------------------------------
def read_events(proc: subprocess.Popen, until: float) -> list[dict]:
    """JSON lines of the child until ``until`` (time.time())."""
    events = []
    while time.time() < until:
        line = proc.stdout.readline()
        if not line:
            break
        events.append(json.loads(line))
    return events


def test_sigkill_while_painting_loses_nothing_older_than_two_seconds(
    sample, tmp_path, tiny_model_file
):
    image = tmp_path / "scan.tif"
    tifffile.imwrite(image, sample.image)
    folder = tmp_path / "scan.tif.xrmal"
    session, _ = session_for(image, sample.image, ClassTable.hbm(), folder=folder)
    session.annotations.write_slice(0, np.full(SHAPE[1:], 2, np.uint8))
    session.mark_done(0)
    model = tiny_model_file(session.paths.model_path("cycle-001.pt"))
    session.add_cycle(
        CycleRecord(
            1, "manual", [0], model=session.paths.relative(model), metrics={"a": 1}
        )
    )
    model_bytes = model.read_bytes()
    session.close()

    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(image), str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "xcb")},
    )
    try:
        ready = proc.stdout.readline()  # napari and torch load: seconds
        assert ready and json.loads(ready).get("ready"), "the painter did not start"
        events = read_events(proc, time.time() + 4.0)
        killed_at = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    strokes = [e for e in events if "stroke" in e]
    old = [e for e in strokes if e["t"] < killed_at - SAVED_WITHIN_S]
    assert len(old) >= 10, f"only {len(old)} strokes were painted in time"

    again = Session.open(folder)  # the dead process's lock is stale
    assert not list(folder.glob(".*.tmp-*"))  # a write cut short is cleared away
    volume = again.annotations.read_all()
    lost = [e for e in old if volume[tuple(e["stroke"])] != e["label"]]
    assert lost == [], f"{len(lost)} of {len(old)} strokes older than 2 s were lost"
    done = {e["done"] for e in events if "done" in e}
    assert done and done | {0} <= set(again.done_along())
    painted = np.zeros(SHAPE, bool)
    painted[tuple(np.array([e["stroke"] for e in strokes]).T)] = True
    assert (volume[0][~painted[0]] == 2).all()  # painted before: intact
    assert [c.cycle for c in again.cycles] == [1] and again.cycles[0].metrics == {
        "a": 1
    }
    assert again.latest_model == model and model.read_bytes() == model_bytes
    assert again.warnings == []
    again.close()


# -- failing jobs ------------------------------------------------------------------------
def failing(exc: BaseException):
    yield Progress("train", 1, 3)
    raise exc


def finishing():
    yield Progress("train", 1, 1)
    return "ok"


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (MemoryError(), "ran out of memory; try a smaller batch size"),
        (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), "out of memory"),
        (ZeroDivisionError("division by zero"), "failed unexpectedly (ZeroDivision"),
    ],
)
def test_a_job_that_crashes_is_reported_and_the_next_one_runs(qtbot, exc, words):
    runner = _jobs.JobRunner()
    controls = _job_controls.JobControls(runner, "Go")
    qtbot.addWidget(controls)
    since, ends, results = len(notification_manager.records), [], []
    assert controls.run("Training", failing(exc), on_end=ends.append) is not None
    qtbot.waitUntil(lambda: ends == ["failed"], timeout=5000)
    assert any(m.startswith("Training") and words in m for m in messages(since))
    assert words in controls.status.text()
    assert controls.start_button.isEnabled() and not runner.busy

    worker = controls.run("Training", finishing(), on_done=results.append)
    assert worker is not None
    qtbot.waitUntil(lambda: results == ["ok"], timeout=5000)


# -- two viewers ---------------------------------------------------------------------------
def dock_in_new_viewer(make_napari_viewer_proxy, qtbot, sample, folder):
    viewer = make_napari_viewer_proxy()
    for data, meta, kind in sample_layer_data(sample, ground_truth_visible=False):
        getattr(viewer, f"add_{kind}")(data, **meta)
    dock = ActiveLearningWidget(viewer)
    qtbot.addWidget(dock)
    dock.data.folder_edit.setText(str(folder))
    return dock


def test_two_viewers_two_projects_and_one_project_in_one_viewer_only(
    make_napari_viewer_proxy, qtbot, sample, tmp_path
):
    one = dock_in_new_viewer(make_napari_viewer_proxy, qtbot, sample, tmp_path / "a")
    two = dock_in_new_viewer(make_napari_viewer_proxy, qtbot, sample, tmp_path / "b")
    first, second = one.data.open_project(), two.data.open_project()
    assert first is not None and second is not None
    one.annotations.layer.data[2, :3, :3] = 1
    two.annotations.layer.data[2, :3, :3] = 3
    two.annotations.layer.data[5, 0, 0] = 2
    assert one.mark_done(2) and two.mark_done(5)
    assert first.done == [SliceRef(0, 2)] and second.done == [SliceRef(0, 5)]
    assert (
        first.annotations.read_slice(2)[:3, :3] == 1
    ).all() and not first.annotations.read_slice(5).any()
    assert (second.annotations.read_slice(2)[:3, :3] == 3).all()

    # The second viewer may not open the first viewer's project...
    two.data.folder_edit.setText(str(tmp_path / "a"))
    since = len(notification_manager.records)
    assert two.data.open_project() is None
    assert "already open for painting in another viewer" in messages(since)[-1]
    assert two.session is second  # ... and keeps its own
    two.annotations.layer.data[6, 0, 0] = 4
    two.annotations.flush()
    assert (
        second.annotations.read_slice(6)[0, 0] == 4
        and not first.annotations.read_slice(6).any()
    )

    # Once the first viewer lets go of it, it can.
    one.viewer.layers.remove(one.annotations.layer)
    reopened = two.data.open_project()
    assert reopened is not None and reopened.done == [SliceRef(0, 2)]
    assert two.annotations.layer.data[2, 0, 0] == 1
