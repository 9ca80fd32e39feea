"""Step 5 of the dock: predict the whole volume, export the mask, learning curve."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_info
from qtpy.QtWidgets import (
    QCheckBox,
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

from napari_xrm_al._napari.writer import layer_voxel_size
from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.events import Progress
from napari_xrm_al.core.inference.slice_inference import TTA_MODES
from napari_xrm_al.core.session.jobs import learning_curve
from napari_xrm_al.core.session.prediction import predict_session, project_inputs
from napari_xrm_al.errors import XrmError
from napari_xrm_al.io.masks import write_mask
from napari_xrm_al.io.output_paths import check_apart, check_writable
from napari_xrm_al.widgets._job_controls import JobControls
from napari_xrm_al.widgets._layers import (
    CLASSES_KEY,
    PROVENANCE_KEY,
    find_layer,
    replace_or_add,
)
from napari_xrm_al.widgets.plots import LearningCurvePlot

if TYPE_CHECKING:
    from napari.layers import Labels

    from napari_xrm_al.widgets.dock_state import DockState

#: Export formats: combo text → file ending.
FORMATS = {
    "OME-Zarr labels": ".ome.zarr",
    "zarr v3 array": ".zarr",
    "TIFF (ImageJ)": ".tif",
}


def export_mask(
    path: Path,
    labels: Any,
    classes: ClassTable,
    voxel_size: tuple[float, ...] | None,
    provenance: dict[str, Any],
) -> Generator[Progress, None, Path]:
    """Write a mask (runs on the worker); returns the path written."""
    yield Progress("export", 0, 1, message=path.name)
    return write_mask(
        path,
        labels,
        classes,
        voxel_size=voxel_size,
        name="segmentation",
        provenance=provenance,
    )


def with_format(path: str, ending: str) -> str:
    """``path`` with its mask ending replaced by ``ending``."""
    for old in sorted(FORMATS.values(), key=len, reverse=True):
        if path.endswith(old):
            return path[: -len(old)] + ending
    return path + ending


class PredictSection(QWidget):
    """Whole-volume prediction as layers, export, and the learning curve."""

    def __init__(self, state: DockState) -> None:
        super().__init__()
        self.state = state
        self.last_export: Path | None = None
        self._default_path = ""
        self.hint = QLabel("")
        self.hint.setWordWrap(True)
        self.uncertainty_check = QCheckBox("Uncertainty layer")
        self.uncertainty_check.setChecked(True)
        self.uncertainty_check.setToolTip(
            "Also show where the model is unsure (pixel entropy, 0..1) as an "
            "overlay: good places to check or paint."
        )
        self.tta_combo = QComboBox()
        self.tta_combo.addItems(list(TTA_MODES))
        self.tta_combo.setToolTip(
            "Test-time augmentation: average each slice's prediction over its 4 "
            "flips (flips, about 4x the time) or its 8 flips and rotations "
            "(dihedral, about 8x). A little more accurate: about +0.015 mIoU and "
            "+0.02 void IoU on the sample."
        )
        self.controls = JobControls(state.runner, "Predict volume")
        self.format_combo = QComboBox()
        self.format_combo.addItems(list(FORMATS))
        self.format_combo.setToolTip(
            "OME-Zarr labels open in napari and Fiji (MoBIE); a zarr array suits "
            "scripts; TIFF suits any viewer. All keep the class table."
        )
        self.path_edit = QLineEdit()
        self.path_edit.setToolTip("Where the mask is written.")
        self.browse_button = QPushButton("…")
        self.export_controls = JobControls(state.runner, "Export mask")
        self.export_controls.cancel_button.setVisible(False)
        self.curve = LearningCurvePlot()
        self.curve.setToolTip(
            "Validation IoU (or final loss) after each training cycle."
        )
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(self.browse_button)
        form = QFormLayout()
        form.addRow("Format", self.format_combo)
        form.addRow("File", path_row)
        layout = QVBoxLayout(self)
        layout.addWidget(self.hint)
        layout.addWidget(self.uncertainty_check)
        tta_row = QHBoxLayout()
        tta_row.addWidget(QLabel("Test-time augmentation"))
        tta_row.addWidget(self.tta_combo, 1)
        layout.addLayout(tta_row)
        layout.addWidget(self.controls)
        layout.addLayout(form)
        layout.addWidget(self.export_controls)
        layout.addWidget(QLabel("Learning curve"))
        layout.addWidget(self.curve)
        layout.addStretch()
        self.controls.start_button.clicked.connect(self.start)
        self.export_controls.start_button.clicked.connect(self.export)
        self.format_combo.currentTextChanged.connect(self._on_format)
        self.browse_button.clicked.connect(self._on_browse)

    def _image_name(self) -> str:
        image = self.state.image_layer
        return image.name if image is not None else "image"

    @property
    def prediction_name(self) -> str:
        """Name of the prediction Labels layer."""
        return f"{self._image_name()} prediction"

    @property
    def uncertainty_name(self) -> str:
        """Name of the uncertainty Image layer."""
        return f"{self._image_name()} uncertainty"

    # -- prediction ------------------------------------------------------------------
    def start(self) -> Any:
        """Predict the whole volume; returns the worker (None if it cannot start)."""
        try:
            session, data = self.state.require_session()
        except XrmError as exc:
            self.state.notify_error(exc)
            return None
        return self.controls.run(
            "Predicting",
            predict_session(
                session,
                data,
                uncertainty=self.uncertainty_check.isChecked(),
                tta=self.tta_combo.currentText(),
            ),
            on_done=self.show_prediction,
        )

    def show_prediction(self, prediction: Any) -> None:
        """Add (or update) the prediction and uncertainty layers."""
        session, image = self.state.session, self.state.image_layer
        if session is None or image is None:
            return
        geometry = {
            "scale": image.scale,
            "translate": image.translate,
            "units": image.units,
        }
        labels = replace_or_add(
            self.state.viewer,
            "labels",
            prediction.labels,
            name=self.prediction_name,
            colormap=session.classes.napari_colormap(),
            metadata={
                CLASSES_KEY: session.classes.to_dict(),
                PROVENANCE_KEY: {
                    "session": str(session.folder),
                    "model": prediction.model,
                    "axes": ",".join(prediction.axes),
                },
            },
            opacity=0.5,
            **geometry,
        )
        # The prediction is read from the project folder; paint on the
        # annotation layer (or pre-fill a slice from the model) instead.
        labels.editable = False
        if prediction.uncertainty is not None:
            replace_or_add(
                self.state.viewer,
                "image",
                prediction.uncertainty,
                name=self.uncertainty_name,
                colormap="inferno",
                blending="additive",
                contrast_limits=(0, 255),
                opacity=0.6,
                **geometry,
            )
        self.state.activate_annotations()
        self.refresh()
        if prediction.note or prediction.axes != (session.axis,):
            text = prediction.along()
            show_info(f"{text[0].upper()}{text[1:]}.")

    # -- export ----------------------------------------------------------------------
    def prediction_layer(self) -> Labels | None:
        """The prediction layer, if predicted."""
        return find_layer(self.state.viewer, self.prediction_name, "labels")

    def export(self, path: str | None = None) -> Any:
        """Write the prediction to ``path`` (default: the path box); the worker."""
        layer = self.prediction_layer()
        session = self.state.session
        if layer is None or session is None:
            self.state.notify_error(XrmError("Predict the volume before exporting it."))
            return None
        target = Path(path or self.path_edit.text()).expanduser()
        try:
            check_apart({"the export file": target}, project_inputs(session))
            check_writable(target, "the mask")
        except XrmError as exc:
            self.state.notify_error(exc)
            return None
        _, meta, _ = layer.as_layer_data_tuple()
        provenance = dict(layer.metadata.get(PROVENANCE_KEY, {}))
        self.last_export = None
        return self.export_controls.run(
            "Exporting",
            export_mask(
                target,
                layer.data,
                session.classes,
                layer_voxel_size(meta),
                provenance,
            ),
            on_done=self._on_exported,
        )

    def _on_exported(self, path: Path) -> None:
        self.last_export = Path(path)
        self.export_controls.status.setText(f"Wrote {path}")
        show_info(f"Mask written to {path}.")

    def _on_format(self, name: str) -> None:
        text = self.path_edit.text().strip()
        if text:
            self.path_edit.setText(with_format(text, FORMATS[name]))

    def _on_browse(self) -> None:
        ending = FORMATS[self.format_combo.currentText()]
        path, _ = QFileDialog.getSaveFileName(
            self, "Export mask", self.path_edit.text(), f"Mask (*{ending})"
        )
        if path:
            self.path_edit.setText(with_format(path, ending))

    def refresh(self) -> None:
        """Say what this step needs; default export path; learning curve."""
        session = self.state.session
        if session is None:
            self.hint.setText("Needs an open project (step 1).")
            self.curve.show_curve([])
            return
        if session.latest_model is None:
            self.hint.setText("Needs a trained model (step 3).")
        else:
            self.hint.setText(
                "Segments every slice with the latest model. Check it, paint "
                "corrections on suggested slices and train again, or export."
            )
        text = self.path_edit.text().strip()
        if not text or text == self._default_path:
            ending = FORMATS[self.format_combo.currentText()]
            self._default_path = str(session.folder / f"segmentation{ending}")
            self.path_edit.setText(self._default_path)
        self.curve.show_curve(learning_curve(session))
