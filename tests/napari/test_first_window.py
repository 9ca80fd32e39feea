"""The demo's first window on a laptop screen (1366 x 768): it fits, the two
docks are tabbed, and every main button of the open step is on screen.

Run under ``xvfb-run -s "-screen 0 1600x1000x24"``: the screen is larger than
the laptop's, so the window could grow past 768 pixels if its contents asked.
"""

from __future__ import annotations

import pytest
from qtpy.QtCore import QRect
from qtpy.QtWidgets import QApplication, QWidget

from napari_xrm_al.commands.demo import open_demo

pytestmark = pytest.mark.gui

LAPTOP = (1366, 768)
LOOP = "Active learning (napari-xrm-al)"
METROLOGY = "Void metrology (napari-xrm-al)"


def settle(qtbot) -> None:
    """Let Qt lay out and paint (zero-delay timers included)."""
    for _ in range(3):
        QApplication.processEvents()
        qtbot.wait(20)


def assert_on_screen(widget: QWidget, window: QWidget) -> None:
    """``widget`` is shown whole: not clipped by a scroll area, inside the window."""
    name = getattr(widget, "text", lambda: type(widget).__name__)()
    assert not widget.visibleRegion().isEmpty(), f"{name!r} is hidden"
    assert widget.visibleRegion().boundingRect() == widget.rect(), (
        f"{name!r} is partly scrolled out of view"
    )
    top_left = widget.mapTo(window, widget.rect().topLeft())
    placed = QRect(top_left, widget.size())
    assert window.rect().contains(placed), f"{name!r} at {placed} is off the window"


def laptop_window(make_napari_viewer, qtbot):
    """The demo in a shown window resized to the laptop's screen.

    (A helper, not a fixture: a fixture's value would outlive napari's check
    that the viewer was freed.)
    """
    viewer = make_napari_viewer(show=True)
    open_demo(viewer, seed=0, shape=(24, 64, 64))
    window = viewer.window._qt_window
    window.resize(*LAPTOP)
    settle(qtbot)
    return viewer, window


def test_the_demo_window_fits_a_laptop_screen(make_napari_viewer, qtbot):
    viewer, window = laptop_window(make_napari_viewer, qtbot)
    assert window.height() <= LAPTOP[1]
    assert window.width() <= LAPTOP[0]
    docks = viewer.window._wrapped_dock_widgets
    assert window.tabifiedDockWidgets(docks[LOOP]) == [docks[METROLOGY]]
    loop = viewer.window.dock_widgets[LOOP]
    assert not loop.visibleRegion().isEmpty()  # the loop's tab is in front
    assert viewer.window.dock_widgets[METROLOGY].visibleRegion().isEmpty()

    main_buttons = {
        0: [loop.data.open_button],
        1: [loop.pretrain.controls.start_button],
        2: [loop.train.controls.start_button],
        3: [loop.suggest.controls.start_button, loop.suggest.prefill_button],
        4: [
            loop.predict.controls.start_button,
            loop.predict.export_controls.start_button,
        ],
    }
    assert loop.steps.currentIndex() == 0  # the first step is open
    for step, buttons in main_buttons.items():
        loop.steps.setCurrentIndex(step)
        settle(qtbot)
        for button in [*buttons, loop.done_button]:
            assert_on_screen(button, window)


def test_the_metrology_tab_fits_and_its_table_shows_rows(make_napari_viewer, qtbot):
    viewer, window = laptop_window(make_napari_viewer, qtbot)
    viewer.window._wrapped_dock_widgets[METROLOGY].raise_()
    settle(qtbot)
    assert window.height() <= LAPTOP[1]
    metrology = viewer.window.dock_widgets[METROLOGY]
    for widget in (metrology.controls.start_button, metrology.export_button):
        assert_on_screen(widget, window)
    table = metrology.table
    row = table.verticalHeader().defaultSectionSize()
    assert table.viewport().height() >= 5 * row
