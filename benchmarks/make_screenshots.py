"""Screenshots of the Active learning dock for ``docs/tutorial.md``.

Walks the loop on the synthetic sample exactly as the tutorial tells a user
to (through the dock's public methods), and saves a PNG of the whole napari
window after each step to ``docs/images/tutorial_*.png``.

Run (a virtual display on a headless machine)::

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" \\
        .venv/bin/python benchmarks/make_screenshots.py

Takes a few minutes on a 2-core CPU (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"
PLUGIN = "napari-xrm-al"
SIZE = (1400, 860)
#: Dense ids of copper and void in the sample's class table.
COPPER, VOID = 1, 3


def wait_for(app, dock) -> None:
    """Pump events until the dock's job ends."""
    while dock.runner.busy:
        app.processEvents()
        time.sleep(0.01)
    for _ in range(20):  # let throttled plots and the canvas redraw
        app.processEvents()
        time.sleep(0.02)


def shoot(viewer, app, name: str, out: Path) -> None:
    """Save the whole window as ``out/tutorial_<name>.png``."""
    for _ in range(10):
        app.processEvents()
        time.sleep(0.02)
    path = out / f"tutorial_{name}.png"
    viewer.screenshot(str(path), canvas_only=False)
    print("wrote", path, flush=True)


def tutorial_slices(labels: np.ndarray) -> tuple[list[int], int]:
    """Slices to paint: the one with most void and the one with most copper
    (to train on), and the void-richest slice of another bump layer (to
    validate)."""
    counts = np.stack([(labels == k).sum(axis=(1, 2)) for k in (COPPER, VOID)], 1)
    void_slice = int(np.argmax(counts[:, 1]))
    copper_slice = int(np.argmax(counts[:, 0]))
    far = np.abs(np.arange(len(labels)) - void_slice) >= 10
    validation = int(np.argmax(np.where(far, counts[:, 1], -1)))
    return sorted([void_slice, copper_slice]), validation


def paint(layer, ref, truth: np.ndarray) -> None:
    """Paint slice ``ref`` (a z index, or a SliceRef along any axis) of ``layer``
    like the brush would (undoable)."""
    axis, index = (0, ref) if isinstance(ref, int) else (ref.axis, ref.index)
    plane = np.nonzero(np.ones(np.delete(truth.shape, axis), bool))
    coords = list(plane)
    coords.insert(axis, np.full(plane[0].size, index))
    layer.data_setitem(tuple(coords), truth[tuple(coords)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny steps (smoke run)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    import napari
    from napari_xrm_al._napari.sample_data import sample_layer_data
    from napari_xrm_al.classes import dense_to_annotation
    from napari_xrm_al.core.synthetic.sample import make_hbm_sample

    args.out.mkdir(parents=True, exist_ok=True)
    sample = make_hbm_sample(seed=0)  # what `napari-xrm-al demo` opens
    truth = dense_to_annotation(sample.labels)
    viewer = napari.Viewer(title="napari-xrm-al tutorial")
    viewer.window.resize(*SIZE)
    for data, meta, kind in sample_layer_data(sample, ground_truth_visible=False):
        getattr(viewer, f"add_{kind}")(data, **meta)
    _, dock = viewer.window.add_plugin_dock_widget(PLUGIN, "Active learning")
    app = napari.qt.get_qapp()
    steps = 3 if args.quick else None

    with tempfile.TemporaryDirectory() as tmp:
        dock.data.folder_edit.setText(str(Path(tmp) / "HBM_sample.xrmal"))
        dock.steps.setCurrentIndex(0)
        shoot(viewer, app, "1_data", args.out)

        dock.data.open_project()
        dock.pretrain.form.set_value("steps", steps or 150)
        dock.pretrain.form.set_value("time_budget_s", None)
        dock.pretrain.start()
        wait_for(app, dock)
        shoot(viewer, app, "2_pretrain", args.out)

        # Paint two slices (here: copied from the ground truth, as a careful
        # analyst would paint them) and mark them done; a third, not marked
        # done, validates.
        train_slices, validation = tutorial_slices(sample.labels)
        for index in (*train_slices, validation):
            dock.go_to_slice(index)
            paint(dock.annotations.layer, index, truth)
            if index != validation:
                dock.mark_done()
        dock.train.validation_edit.setText(str(validation))
        dock.go_to_slice(train_slices[0])
        dock.steps.setCurrentIndex(2)
        shoot(viewer, app, "3_paint", args.out)

        dock.train.form.set_value("steps", steps or 200)
        dock.train.start()
        wait_for(app, dock)
        shoot(viewer, app, "4_train", args.out)

        dock.steps.setCurrentIndex(3)
        dock.suggest.start()
        wait_for(app, dock)
        dock.suggest.select_pick(1)
        shoot(viewer, app, "5_suggest", args.out)

        top = dock.suggest.picks()[0]  # along z, y or x (the dock's default axes)
        dock.suggest.prefill()
        wait_for(app, dock)
        shoot(viewer, app, "6_prefill", args.out)
        paint(dock.annotations.layer, top, truth)  # the analyst's corrections
        dock.mark_done(top)
        dock.train.start()
        wait_for(app, dock)

        dock.steps.setCurrentIndex(4)
        dock.predict.start()
        wait_for(app, dock)
        viewer.layers[dock.predict.uncertainty_name].visible = False
        dock.annotations.layer.visible = False
        viewer.layers["suggested slices"].visible = False
        dock.go_to_slice(validation, paint=False)
        shoot(viewer, app, "7_predict", args.out)
    viewer.close()


if __name__ == "__main__":
    main()
