"""The "Active learning" dock: the whole loop, in order, in one widget.

Data → Pretrain → Train → Suggest & paint → Predict & export, as numbered
sections of a tool box whose titles tick off what is done, above an always
visible annotation bar (slice in view, "Mark slice done", slices done). Slices
are painted and marked done along whichever axis the viewer slices (its
slider), recorded as :class:`~napari_xrm_al.core.slice_refs.SliceRef`. Every
long job is a core generator (:mod:`napari_xrm_al.core.session.jobs`, ``core.al.ranking``) run by one
:class:`~napari_xrm_al.widgets._jobs.JobRunner`, so a second job is refused
while one runs. The widget holds no learning logic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import Qt, Signal
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
from napari_xrm_al.core.slice_refs import SliceRef, format_slice_refs
from napari_xrm_al.core.slices import axis_index
from napari_xrm_al.errors import XrmError
from napari_xrm_al.widgets import _layers
from napari_xrm_al.widgets._jobs import JobRunner, preload_torch
from napari_xrm_al.widgets.annotations import AnnotationBinding, check_free
from napari_xrm_al.widgets.plots import follow_theme
from napari_xrm_al.widgets.steps.data import DataSection
from napari_xrm_al.widgets.steps.predict import PredictSection
from napari_xrm_al.widgets.steps.suggest import SuggestSection
from napari_xrm_al.widgets.steps.training import PretrainSection, TrainSection

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
        self.done_label = QLabel("")
        self.done_label.setWordWrap(True)
        self.done_label.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
        )
        self.done_label.setToolTip(
            "The slices marked done, as axis:index (what the command line's "
            "slice options read)."
        )
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
        layout.addWidget(self.done_label)

        self.done_button.clicked.connect(self.toggle_done)
        self.session_changed.connect(self.refresh)
        self.runner.busy_changed.connect(self._on_busy)
        viewer.dims.events.current_step.connect(self._on_dims)
        viewer.dims.events.order.connect(self._on_dims)
        viewer.dims.events.ndisplay.connect(self._on_dims)
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
        self.go_to_slice((session.done or [self._middle_slice()])[0], paint=False)
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
        """Slices along the session axis with painted pixels not in a done slice."""
        if self.annotations is None or self.session is None:
            return []
        return self.annotations.painted_beyond(self.session.done)

    # -- navigation ----------------------------------------------------------------
    @property
    def axis(self) -> int:
        """Slice axis of the open project (0 without one)."""
        return axis_index(self.session.axis) if self.session else 0

    def _middle_slice(self) -> int:
        return self.session.image.shape[self.axis] // 2 if self.session else 0

    def view_axis(self) -> int:
        """The axis the viewer slices along (the slider; the project's axis in 3D)."""
        if self.annotations is None:
            return self.axis
        return _layers.view_axis(self.viewer, self.annotations.layer, self.axis)

    def current_ref(self) -> SliceRef:
        """The slice shown by the viewer, along the axis in view."""
        if self.annotations is None:
            raise XrmError("Open a project first (step 1, Data).")
        axis = self.view_axis()
        index = _layers.current_slice(self.viewer, self.annotations.layer, axis)
        return SliceRef(axis, index)

    def current_slice(self) -> int:
        """Index of the slice shown by the viewer, along the axis in view."""
        return self.current_ref().index

    def go_to_slice(self, item: SliceRef | int, paint: bool = True) -> None:
        """Show a slice (a plain index: along the project's axis), turning the
        view to its axis; with ``paint``, select the annotation layer to paint."""
        if self.annotations is None or self.session is None:
            return
        ref = self.session.ref(item)
        _layers.go_to_slice(self.viewer, self.annotations.layer, ref.axis, ref.index)
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
    def mark_done(self, item: SliceRef | int | None = None, done: bool = True) -> bool:
        """Mark a slice (default: the one in view; a plain index: along the
        project's axis) done or not; saved at once."""
        if self.session is None or self.annotations is None:
            self.notify_error(XrmError("Open a project first (step 1, Data)."))
            return False
        ref = self.current_ref() if item is None else self.session.ref(item)
        self.annotations.flush()
        if done and not self.annotations.is_painted(ref):
            show_warning(
                f"Slice {ref} has no painted pixels; paint it before marking it done."
            )
            return False
        try:
            self.session.mark_done(ref, done)
        except XrmError as exc:
            self.notify_error(exc)
            return False
        self.session_changed.emit()
        return True

    def toggle_done(self) -> bool:
        """Mark the slice in view done, or not done if it already is."""
        if self.session is None:
            return self.mark_done()
        ref = self.current_ref()
        return self.mark_done(ref, not self.session.is_done(ref))

    def fill_unpainted(self, item: SliceRef | int, labels: np.ndarray) -> None:
        """Give the unpainted pixels of a slice the values ``labels`` (undoable)."""
        if self.annotations is None:
            return
        self.annotations.fill_unpainted(item, labels)
        self.go_to_slice(item)

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
            self.done_label.setText("")
            self.done_button.setEnabled(False)
            return
        ref = self.current_ref()
        done = self.session.is_done(ref)
        n = self.session.image.shape[ref.axis]
        self.slice_label.setText(
            f"Slice {ref.index} of {n} ({ref.axis_name})"
            f"{' ✓ done' if done else ''} · {len(self.session.done)} done"
        )
        self.done_label.setText(
            f"Done: {format_slice_refs(self.session.done)}" if self.session.done else ""
        )
        self.done_button.setText("Unmark slice" if done else "Mark slice done")
        self.done_button.setEnabled(not self.runner.busy)
        if ref.axis == self.axis:
            self.suggest.profile.set_current(ref.index)

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
