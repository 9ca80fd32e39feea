"""What the steps of the Active learning dock share, and how they tell each other.

The dock (:mod:`napari_xrm_al.widgets.active_learning_dock`) creates one
:class:`DockState` and hands it to each step of :mod:`napari_xrm_al.widgets.steps`:
the viewer, the one job runner, the open project with its image and annotation
layers, navigation to a slice, and the signals a step emits for the others. The
steps never see the dock itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error
from qtpy.QtCore import QObject, Signal

from napari_xrm_al.core.slice_refs import SliceRef
from napari_xrm_al.core.slices import axis_index
from napari_xrm_al.errors import XrmError
from napari_xrm_al.widgets import _layers
from napari_xrm_al.widgets.annotations import AnnotationBinding, check_free

if TYPE_CHECKING:
    import numpy as np
    from napari.layers import Image

    import napari
    from napari_xrm_al.core.session.session import Session
    from napari_xrm_al.widgets._jobs import JobRunner


class DockState(QObject):
    """The open project of one dock, in the viewer it is docked in.

    Parameters
    ----------
    viewer
        The napari viewer the dock is docked in.
    runner
        The dock's job runner (a second job is refused while one runs).

    Signals
    -------
    session_opened()
        A project was opened (its first slice is shown); ``session_changed`` follows.
    session_changed()
        The project was opened or changed (slices done, pretraining, cycles).
    cycle_trained(CycleRecord)
        A training cycle ended and was recorded in the project.
    """

    session_opened = Signal()
    session_changed = Signal()
    cycle_trained = Signal(object)

    def __init__(self, viewer: napari.viewer.Viewer, runner: JobRunner) -> None:
        super().__init__()
        self.viewer = viewer
        self.runner = runner
        self.session: Session | None = None
        self.image_layer: Image | None = None
        self.annotations: AnnotationBinding | None = None

    # -- the project ---------------------------------------------------------------
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
        self.go_to_slice((session.done or [self._middle_slice()])[0], paint=False)
        self.activate_annotations()
        self.session_opened.emit()
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

    def fill_unpainted(self, item: SliceRef | int, labels: np.ndarray) -> None:
        """Give the unpainted pixels of a slice the values ``labels`` (undoable)."""
        if self.annotations is None:
            return
        self.annotations.fill_unpainted(item, labels)
        self.go_to_slice(item)
