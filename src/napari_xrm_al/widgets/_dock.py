"""What the plugin's dock widgets share: the viewer they sit in and a job runner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import QWidget

from napari_xrm_al.widgets._jobs import JobRunner

if TYPE_CHECKING:
    import napari


class JobDock(QWidget):
    """A dock widget of ``viewer`` whose long work runs on its own
    :class:`~napari_xrm_al.widgets._jobs.JobRunner` (``self.runner``).

    Parameters
    ----------
    viewer
        The napari viewer this widget is docked in.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.runner = JobRunner(self)
