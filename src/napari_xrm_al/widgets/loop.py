"""The "Active learning" dock: the whole loop, in order, in one widget.

Data → Pretrain → Train → Suggest & paint → Predict & export, as numbered
sections of a tool box whose titles tick off what is done, above an always
visible annotation bar (current slice, "Mark slice done", slices done). Every
long job is a core generator (:mod:`napari_xrm_al.core.loop`, ``core.ranking``) run by one
:class:`~napari_xrm_al.widgets._jobs.JobRunner`, so a second job is refused
while one runs. The widget holds no learning logic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QToolBox,
    QVBoxLayout,
    QWidget,
)

from napari_xrm_al.core.session.session import Session
from napari_xrm_al.core.slices import axis_index
from napari_xrm_al.errors import XrmError
from napari_xrm_al.widgets import _layers
from napari_xrm_al.widgets._data import DataSection
from napari_xrm_al.widgets._jobs import JobRunner, preload_torch
from napari_xrm_al.widgets._predict import PredictSection
from napari_xrm_al.widgets._suggest import SuggestSection
from napari_xrm_al.widgets._training import PretrainSection, TrainSection
from napari_xrm_al.widgets.annotations import AnnotationBinding, check_free
from napari_xrm_al.widgets.plots import follow_theme

if TYPE_CHECKING:
    import napari

#: Smallest height of the tool box of steps (titles and the open step).
MIN_STEPS_HEIGHT = 300
STEP_TITLES = (
    "1 · Data",
    "2 · Pretrain",
    "3 · Train",
    "4 · Suggest && paint",
    "5 · Predict && export",
)


class ActiveLearningWidget(QWidget):
    """The active-learning loop on one scan.

    Parameters
    ----------
    viewer
        The napari viewer this widget is docked in.

    Signals
    -------
    session_changed()
        The project was opened or changed (slices done, pretraining, cycles).
    """

    session_changed = Signal()

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.session: Session | None = None
        self.image_layer: Image | None = None
        self.annotations: AnnotationBinding | None = None
        preload_torch()
        self.runner = JobRunner(self)
        self.data = DataSection(self)
        self.pretrain = PretrainSection(self)
        self.train = TrainSection(self)
        self.suggest = SuggestSection(self)
        self.predict = PredictSection(self)
        self.sections = (
            self.data,
            self.pretrain,
            self.train,
            self.suggest,
            self.predict,
        )
        # One step open at a time, each in its own scroll area, so the dock
        # fits a laptop screen (1366 x 768) with the open step's buttons shown.
        self.steps = QToolBox()
        self.steps.setMinimumHeight(MIN_STEPS_HEIGHT)
        for section, title in zip(self.sections, STEP_TITLES, strict=True):
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setWidget(section)
            self.steps.addItem(scroll, title)

        self.slice_label = QLabel("")
        self.done_button = QPushButton("Mark slice done")
        self.done_button.setToolTip(
            "Add the slice you see to the training set (paint every class in it "
            "first). Click again to take it out."
        )
        bar = QHBoxLayout()
        bar.addWidget(self.slice_label, 1)
        bar.addWidget(self.done_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.steps, 1)
        layout.addLayout(bar)

        self.done_button.clicked.connect(self.toggle_done)
        self.session_changed.connect(self.refresh)
        self.runner.busy_changed.connect(self._on_busy)
        viewer.dims.events.current_step.connect(self._on_dims)
        follow_theme(
            viewer,
            self.pretrain.plot,
            self.train.plot,
            self.suggest.profile,
            self.predict.curve,
        )
        self.refresh()

    # -- project state -----------------------------------------------------------
    def set_session(self, session: Session, image: Image) -> None:
        """Make ``session`` (for image layer ``image``) the open project.

        Raises
        ------
        XrmError
            When another viewer paints the same project (nothing changes here).
        """
        check_free(session, mine=self.annotations)
        if self.annotations is not None:
            self.annotations.disconnect_all()
        if self.session is not None and self.session is not session:
            self.session.close()
        self.session, self.image_layer = session, image
        self.annotations = AnnotationBinding(self.viewer, session, image)
        self.suggest.ranking = None
        self.go_to_slice(
            (session.done_along() or [self._middle_slice()])[0], paint=False
        )
        self.activate_annotations()
        self.steps.setCurrentIndex(1)
        self.session_changed.emit()

    def require_session(self) -> tuple[Session, Any]:
        """The open session and the image array, annotations saved; XrmError if none."""
        if self.session is None or self.image_layer is None:
            raise XrmError("Open a project first (step 1, Data).")
        if self.image_layer not in self.viewer.layers:
            raise XrmError(
                f"The project's image layer '{self.image_layer.name}' was removed; "
                "open the project again."
            )
        if self.annotations is not None:
            self.annotations.flush()
        layer = self.image_layer
        return self.session, layer.data[0] if layer.multiscale else layer.data

    def notify_error(self, exc: Exception) -> None:
        """Show a user-facing error as a napari notification."""
        show_error(str(exc))

    def painted_not_done(self) -> list[int]:
        """Slices with painted pixels that are not marked done."""
        if self.annotations is None or self.session is None:
            return []
        return sorted(self.annotations.painted - set(self.session.done_along()))

    # -- navigation ----------------------------------------------------------------
    @property
    def axis(self) -> int:
        """Slice axis of the open project (0 without one)."""
        return axis_index(self.session.axis) if self.session else 0

    def _middle_slice(self) -> int:
        return self.session.image.shape[self.axis] // 2 if self.session else 0

    def current_slice(self) -> int:
        """The slice shown by the viewer along the project's axis."""
        if self.annotations is None:
            raise XrmError("Open a project first (step 1, Data).")
        return _layers.current_slice(self.viewer, self.annotations.layer, self.axis)

    def go_to_slice(self, index: int, paint: bool = True) -> None:
        """Show slice ``index``; with ``paint``, select the annotation layer to paint."""
        if self.annotations is None:
            return
        _layers.go_to_slice(self.viewer, self.annotations.layer, self.axis, int(index))
        if paint:
            self.activate_annotations()
            self.annotations.layer.mode = "paint"

    def activate_annotations(self) -> None:
        """Make the annotation layer the selected layer."""
        if (
            self.annotations is not None
            and self.annotations.layer in self.viewer.layers
        ):
            self.viewer.layers.selection.active = self.annotations.layer

    # -- annotating -----------------------------------------------------------------
    def mark_done(self, index: int | None = None, done: bool = True) -> bool:
        """Mark slice ``index`` (default: the current one) done or not; saved at once."""
        if self.session is None or self.annotations is None:
            self.notify_error(XrmError("Open a project first (step 1, Data)."))
            return False
        index = self.current_slice() if index is None else int(index)
        self.annotations.flush()
        if done and index not in self.annotations.painted:
            show_warning(
                f"Slice {index} has no painted pixels; paint it before marking it done."
            )
            return False
        try:
            self.session.mark_done(index, done)
        except XrmError as exc:
            self.notify_error(exc)
            return False
        self.session_changed.emit()
        return True

    def toggle_done(self) -> bool:
        """Mark the current slice done, or not done if it already is."""
        if self.session is None:
            return self.mark_done()
        index = self.current_slice()
        return self.mark_done(index, not self.session.is_done(index))

    def fill_unpainted(self, index: int, labels: np.ndarray) -> None:
        """Give the unpainted pixels of slice ``index`` the values ``labels`` (undoable)."""
        if self.annotations is None:
            return
        self.annotations.fill_unpainted(index, labels)
        self.go_to_slice(index)

    # -- display -------------------------------------------------------------------
    def refresh(self) -> None:
        """Update titles, hints and the annotation bar from the project state."""
        for section in self.sections:
            section.refresh()
        session = self.session
        ticks = (
            session is not None,
            bool(session and session.pretrained),
            bool(session and session.cycles),
            self.suggest.ranking is not None,
            self.predict.prediction_layer() is not None,
        )
        for i, (title, tick) in enumerate(zip(STEP_TITLES, ticks, strict=True)):
            self.steps.setItemText(i, f"{title}  ✓" if tick else title)
        self._on_dims()

    def _on_dims(self, event: Any = None) -> None:
        if self.session is None or self.annotations is None:
            self.slice_label.setText("No project open.")
            self.done_button.setEnabled(False)
            return
        index = self.current_slice()
        done = self.session.is_done(index)
        n = self.session.image.shape[self.axis]
        self.slice_label.setText(
            f"Slice {index} of {n} ({self.session.axis})"
            f"{' ✓ done' if done else ''} · {len(self.session.done)} done"
        )
        self.done_button.setText("Unmark slice" if done else "Mark slice done")
        self.done_button.setEnabled(not self.runner.busy)
        self.suggest.profile.set_current(index)

    def _on_busy(self, busy: bool) -> None:
        self.data.open_button.setEnabled(not busy)
        self.done_button.setEnabled(not busy and self.session is not None)
        if not busy:
            self.refresh()

    def hideEvent(self, event: Any) -> None:  # noqa: N802 (Qt override)
        """Save pending strokes when the dock is hidden or the viewer closes."""
        if self.annotations is not None:
            self.annotations.flush()
        super().hideEvent(event)
