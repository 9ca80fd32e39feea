"""The "Active learning" dock: the whole loop, in order, in one widget.

Data → Pretrain → Train → Suggest & paint → Predict & export, as numbered
sections of a tool box whose titles tick off what is done, above an always
visible annotation bar (slice in view, "Mark slice done", slices done). Slices
are painted and marked done along whichever axis the viewer slices (its
slider), recorded as :class:`~napari_xrm_al.core.slice_refs.SliceRef`. Every
long job is a core generator (:mod:`napari_xrm_al.core.session.jobs`,
``core.al.ranking``) run by one :class:`~napari_xrm_al.widgets._jobs.JobRunner`,
so a second job is refused while one runs. The widget holds no learning logic.
The steps (:mod:`napari_xrm_al.widgets.steps`) share the open project through
one :class:`~napari_xrm_al.widgets.dock_state.DockState`, never the dock itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QToolBox,
    QVBoxLayout,
)

from napari_xrm_al.core.slice_refs import SliceRef, format_slice_refs
from napari_xrm_al.errors import XrmError
from napari_xrm_al.widgets._dock import JobDock
from napari_xrm_al.widgets._jobs import preload_torch
from napari_xrm_al.widgets.dock_state import DockState
from napari_xrm_al.widgets.plots import follow_theme
from napari_xrm_al.widgets.steps.data import DataSection
from napari_xrm_al.widgets.steps.predict import PredictSection
from napari_xrm_al.widgets.steps.suggest import SuggestSection
from napari_xrm_al.widgets.steps.training import PretrainSection, TrainSection

if TYPE_CHECKING:
    import napari
    from napari_xrm_al.core.session.session import Session
    from napari_xrm_al.widgets.annotations import AnnotationBinding

#: Smallest height of the tool box of steps (titles and the open step).
MIN_STEPS_HEIGHT = 300
STEP_TITLES = (
    "1 · Data",
    "2 · Pretrain",
    "3 · Train",
    "4 · Suggest && paint",
    "5 · Predict && export",
)


class ActiveLearningWidget(JobDock):
    """The active-learning loop on one scan (a :class:`JobDock` of ``viewer``)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer)
        preload_torch()
        #: The open project and its layers, shared with the steps.
        self.state = DockState(viewer, self.runner)
        self.data = DataSection(self.state)
        self.pretrain = PretrainSection(self.state)
        self.train = TrainSection(self.state, self.pretrain.form)
        self.suggest = SuggestSection(
            self.state, self.data.image_layer, self.train.validation_slices
        )
        self.predict = PredictSection(self.state)
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
        # An opened project goes on to step 2 (Pretrain).
        self.state.session_opened.connect(lambda: self.steps.setCurrentIndex(1))
        self.state.session_changed.connect(self.refresh)
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

    # -- the open project (kept in :attr:`state`) -----------------------------------
    @property
    def session(self) -> Session | None:
        """The open project (None until step 1 opens one)."""
        return self.state.session

    @property
    def annotations(self) -> AnnotationBinding | None:
        """The annotation layer of the open project."""
        return self.state.annotations

    def painted_not_done(self) -> list[int]:
        """Slices along the session axis with painted pixels not in a done slice."""
        return self.state.painted_not_done()

    def current_ref(self) -> SliceRef:
        """The slice shown by the viewer, along the axis in view."""
        return self.state.current_ref()

    def current_slice(self) -> int:
        """Index of the slice shown by the viewer, along the axis in view."""
        return self.state.current_ref().index

    def go_to_slice(self, item: SliceRef | int, paint: bool = True) -> None:
        """Show a slice, turning the view to its axis; with ``paint``, select the
        annotation layer to paint (:meth:`DockState.go_to_slice`)."""
        self.state.go_to_slice(item, paint)

    # -- annotating -----------------------------------------------------------------
    def mark_done(self, item: SliceRef | int | None = None, done: bool = True) -> bool:
        """Mark a slice (default: the one in view; a plain index: along the
        project's axis) done or not; saved at once."""
        if self.session is None or self.annotations is None:
            self.state.notify_error(XrmError("Open a project first (step 1, Data)."))
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
            self.state.notify_error(exc)
            return False
        self.state.session_changed.emit()
        return True

    def toggle_done(self) -> bool:
        """Mark the slice in view done, or not done if it already is."""
        if self.session is None:
            return self.mark_done()
        ref = self.current_ref()
        return self.mark_done(ref, not self.session.is_done(ref))

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
            bool(self.suggest.shown),
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
        self.suggest.follow_view(ref)

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
