"""Step 1 of the dock, Data: the image, slice axis, classes and project folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.layers import Image
from napari.utils.notifications import show_error, show_warning
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_xrm_al.core.session.jobs import session_for
from napari_xrm_al.core.session.session import SUFFIX, Session, default_session_dir
from napari_xrm_al.errors import XrmError
from napari_xrm_al.widgets._classes import ClassTableEditor
from napari_xrm_al.widgets._layers import relist

if TYPE_CHECKING:
    from napari_xrm_al.widgets.dock_state import DockState

#: Where projects of images that are not files (samples, scripts) go by default.
DEFAULT_PROJECTS = Path.home() / "napari-xrm-al"


def image_path(layer: Image) -> str | None:
    """The file an image layer was read from, if any."""
    path = layer.source.path
    return str(path) if path else None


def default_folder(layer: Image) -> Path:
    """``<scan>.xrmal`` beside the file, else ``~/napari-xrm-al/<layer>.xrmal``."""
    path = image_path(layer)
    if path is not None:
        return default_session_dir(path)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in layer.name)
    return DEFAULT_PROJECTS / f"{safe}{SUFFIX}"


class DataSection(QWidget):
    """Choose the image and classes, then create or reopen the project."""

    def __init__(self, state: DockState) -> None:
        super().__init__()
        self.state = state
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("The 3D greyscale scan to segment.")
        self.open_file_button = QPushButton("Open file…")
        self.open_file_button.setToolTip(
            "Read a TIFF, TIFF folder, zarr, OME-Zarr or ZEISS .txm/.txrm scan."
        )
        self.axis_combo = QComboBox()
        self.axis_combo.addItems(["z", "y", "x"])
        self.axis_combo.setToolTip(
            "You paint, and the model predicts, 2D slices across this axis "
            "(z: planes of an HBM stack)."
        )
        self.classes = ClassTableEditor()
        self.folder_edit = QLineEdit()
        self.folder_edit.setToolTip(
            "The project folder (annotations, models, history). An existing project "
            "there is reopened."
        )
        self.browse_button = QPushButton("…")
        self.browse_button.setToolTip("Choose the project folder.")
        self.open_button = QPushButton("Create / open project")
        self.open_button.setToolTip(
            "Creates the project (or reopens it) and the annotation layer you paint on."
        )
        self.info = QLabel("No project open.")
        self.info.setWordWrap(True)

        image_row = QHBoxLayout()
        image_row.addWidget(self.image_combo, 1)
        image_row.addWidget(self.open_file_button)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(self.browse_button)
        form = QFormLayout()
        form.addRow("Image", image_row)
        form.addRow("Slice axis", self.axis_combo)
        form.addRow("Classes", self.classes)
        form.addRow("Project", folder_row)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.open_button)
        layout.addWidget(self.info)
        layout.addStretch()

        self.image_combo.currentTextChanged.connect(self._on_image_chosen)
        self.open_file_button.clicked.connect(self._on_open_file)
        self.browse_button.clicked.connect(self._on_browse)
        self.open_button.clicked.connect(self.open_project)
        layers = state.viewer.layers.events
        for event in (layers.inserted, layers.removed, layers.reordered):
            event.connect(self.refresh_layers)
        self.refresh_layers()

    # -- inputs ------------------------------------------------------------------
    def refresh_layers(self, event: Any = None) -> None:
        """List the viewer's 3D image layers."""
        names = [
            layer.name
            for layer in self.state.viewer.layers
            if isinstance(layer, Image) and not layer.rgb and layer.ndim >= 3
        ]
        if relist(self.image_combo, names):
            self._on_image_chosen(names[0])

    def image_layer(self) -> Image | None:
        """The chosen image layer."""
        name = self.image_combo.currentText()
        layer = next((x for x in self.state.viewer.layers if x.name == name), None)
        return layer if isinstance(layer, Image) else None

    def _on_image_chosen(self, name: str) -> None:
        layer = self.image_layer()
        if layer is not None:
            self.folder_edit.setText(str(default_folder(layer)))
        self.refresh()

    def _on_open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Open scan",
            "",
            "Scans (*.tif *.tiff *.zarr *.txm *.txrm);;All files (*)",
        )
        if path:
            self.open_file(path)

    def open_file(self, path: str) -> None:
        """Read a scan into the viewer and choose it."""
        try:
            layers = self.state.viewer.open(path, plugin="napari-xrm-al")
        except (XrmError, ValueError, OSError, RuntimeError) as exc:
            show_error(f"Cannot open {path}: {exc}")
            return
        images = [x for x in layers if isinstance(x, Image)]
        if images:
            self.image_combo.setCurrentText(images[0].name)

    def _on_browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Project folder")
        if folder:
            self.folder_edit.setText(folder)

    # -- the project ---------------------------------------------------------------
    def open_project(self) -> Session | None:
        """Create or reopen the project of the chosen image; None on failure."""
        layer = self.image_layer()
        if layer is None:
            show_error("Choose a 3D image layer (or open a scan file) first.")
            return None
        if self.state.runner.busy:
            show_warning(
                f"{self.state.runner.name} is running; open the project after it."
            )
            return None
        data = layer.data[0] if layer.multiscale else layer.data
        folder = self.folder_edit.text().strip() or str(default_folder(layer))
        try:
            if len(data.shape) != 3:
                raise XrmError(
                    f"Image '{layer.name}' has {len(data.shape)} dimensions; the "
                    "plugin needs a 3D (z, y, x) scan."
                )
            session, warnings = session_for(
                image_path(layer),
                data,
                self.classes.classes(),
                axis=self.axis_combo.currentText(),
                folder=folder,
            )
        except XrmError as exc:
            show_error(f"Cannot open the project: {exc}")
            return None
        for warning in warnings:
            show_warning(warning)
        self.classes.set_classes(session.classes)
        self.axis_combo.setCurrentText(session.axis)
        try:
            self.state.set_session(session, layer)
        except XrmError as exc:
            show_error(f"Cannot open the project: {exc}")
            return None
        return session

    def refresh(self) -> None:
        """Show the project state; an open project fixes classes and axis."""
        session = self.state.session
        new = session is None or self.image_layer() is not self.state.image_layer
        self.classes.set_editable(new)
        self.axis_combo.setEnabled(new)
        if session is None:
            self.info.setText("No project open.")
            return
        self.info.setText(
            f"Project: {session.folder}\n{len(session.done)} slices done, "
            f"{len(session.cycles)} training cycles"
            + (", encoder pretrained." if session.pretrained else ".")
        )
