"""Child process of the crash test: paint through the dock until killed.

``python paint_and_die.py IMAGE.tif SESSION_FOLDER`` opens the scan and the
project in a hidden napari viewer with the Active learning dock, then paints
single pixels with the Labels layer's brush (the product path), one line of
JSON per stroke on stdout with its time, and marks a slice done now and then.
It never stops by itself: the test kills it with SIGKILL.
"""

from __future__ import annotations

import json
import sys
import time

from qtpy.QtWidgets import QApplication

import napari
from napari_xrm_al.widgets.active_learning_dock import ActiveLearningWidget

#: Seconds between strokes (the Qt event loop runs meanwhile).
STROKE_S = 0.05
#: Strokes after which the slice is marked done; only these few, so that the
#: other strokes reach the store through the binding's timed save alone.
MARK_DONE_AT = (6, 13)


def report(**fields) -> None:
    print(json.dumps({**fields, "t": time.time()}), flush=True)


def main(image_path: str, folder: str) -> None:
    viewer = napari.Viewer(show=False)
    dock = ActiveLearningWidget(viewer)
    dock.data.open_file(image_path)
    dock.data.folder_edit.setText(folder)
    if dock.data.open_project() is None:
        sys.exit("could not open the project")
    layer = dock.annotations.layer
    layer.brush_size = 1
    nz, ny, nx = layer.data.shape
    app = QApplication.instance()
    report(ready=True)
    i = 0
    while True:
        z = i % nz
        y = 1 + 2 * ((i // nz) % (ny // 2 - 1))
        x = 1 + 2 * ((i // (nz * (ny // 2 - 1))) % (nx // 2 - 1))
        label = 1 + i % 4
        dock.go_to_slice(z)
        layer.selected_label = label
        layer.paint((z, y, x), label)
        report(stroke=[z, y, x], label=label)
        if i in MARK_DONE_AT and dock.mark_done(z):  # also saves every stroke
            report(done=z)
        end = time.monotonic() + STROKE_S
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.005)
        i += 1


if __name__ == "__main__":
    main(*sys.argv[1:3])
