"""The "Void metrology" dock widget: the per-bump void report of a Labels layer.

Measuring runs on the same job runner as the active-learning dock (progress,
ETA, cancel, errors as one sentence); the results fill a sortable table (clicking a
row centres the viewer on that bump), a ``bumps`` Points layer (failing bumps
red) and a histogram of void ratios, and can be exported as CSV. The chosen
layer follows the newest prediction: a prediction layer that is added or
updated becomes the layer to measure (the user may choose another after that).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from napari.layers import Labels, Layer, Points
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from napari_xrm_al._napari.layer_keys import CLASSES_KEY, PROVENANCE_KEY
from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.metrology.bumps import (
    DEFAULT_MAX_VOID_RATIO,
    Bump,
    equivalent_diameter,
    iter_measure_bumps,
    with_threshold,
)
from napari_xrm_al.core.metrology.report import bumps_to_rows, write_bumps_csv
from napari_xrm_al.errors import XrmError
from napari_xrm_al.io.output_paths import check_apart
from napari_xrm_al.widgets._dock import JobDock
from napari_xrm_al.widgets._job_controls import JobControls
from napari_xrm_al.widgets._layers import relist
from napari_xrm_al.widgets.plots import (
    FAIL_COLOUR,
    PASS_COLOUR,
    RatioHistogram,
    follow_theme,
)

if TYPE_CHECKING:
    import napari

POINTS_NAME = "bumps"
#: Table rows visible without scrolling (the table grows with the dock).
TABLE_ROWS = 5
#: Table columns (a subset of the CSV's, most useful first).
TABLE_COLUMNS = (
    "id",
    "void_ratio",
    "pass",
    "partial",
    "n_voids",
    "largest_void_diameter_vox",
    "solder_voxels",
    "void_voxels",
    "z",
    "y",
    "x",
)


def _voxel_size_um(layer: Labels) -> tuple[float, ...] | None:
    """The layer's scale in µm when its units are lengths, else ``None``."""
    import pint

    units = layer.units[-3:]
    if any(
        u.dimensionality != pint.util.UnitsContainer({"[length]": 1}) for u in units
    ):
        return None
    registry = pint.get_application_registry()
    return tuple(
        float(registry.Quantity(s, u).to("micrometer").magnitude)
        for s, u in zip(layer.scale[-3:], units, strict=True)
    )


def is_prediction(layer: Layer) -> bool:
    """Whether ``layer`` is a model's prediction (its provenance names a model)."""
    provenance = layer.metadata.get(PROVENANCE_KEY)
    return (
        isinstance(layer, Labels)
        and isinstance(provenance, dict)
        and bool(provenance.get("model"))
    )


class MetrologyWidget(JobDock):
    """Measure voids per solder bump of a Labels layer (a :class:`JobDock` of
    ``viewer``)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer)
        self.bumps: list[Bump] | None = None
        #: The file the measured layer was read from (None if made in napari).
        self.measured_file: str | None = None
        #: Planes read at a time (``None``: the core's default); also the
        #: granularity of progress and cancelling.
        self.slab: int | None = None
        self._transform: tuple[Any, Any, Any] = (np.ones(3), np.zeros(3), None)
        self._points_name = POINTS_NAME

        self.layer_combo = QComboBox()
        self.solder_spin = QSpinBox(minimum=0, maximum=65535, value=3)
        self.void_spin = QSpinBox(minimum=0, maximum=65535, value=4)
        self.threshold_spin = QDoubleSpinBox(
            minimum=0.0, maximum=1.0, singleStep=0.01, decimals=3
        )
        self.threshold_spin.setValue(DEFAULT_MAX_VOID_RATIO)
        self.threshold_spin.setToolTip(
            "A bump fails when void / (solder + void) voxels is above this ratio."
        )
        self.controls = JobControls(self.runner, "Measure")
        self.controls.start_button.setToolTip(
            "Find every bump (connected solder + void) and its void ratio."
        )
        self.summary = QLabel("")
        self.table = QTableWidget(0, len(TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(TABLE_COLUMNS))
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSortIndicator(0, Qt.SortOrder.AscendingOrder)
        self.table.verticalHeader().setVisible(False)
        header_height = self.table.horizontalHeader().sizeHint().height()
        row_height = self.table.verticalHeader().defaultSectionSize()
        self.table.setMinimumHeight(header_height + TABLE_ROWS * row_height + 4)
        self.histogram = RatioHistogram()
        self.export_button = QPushButton("Export CSV…", enabled=False)

        form = QFormLayout()
        form.addRow("Labels", self.layer_combo)
        form.addRow("Solder id", self.solder_spin)
        form.addRow("Void id", self.void_spin)
        form.addRow("Max void ratio", self.threshold_spin)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.controls)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.histogram)
        layout.addWidget(self.export_button)

        self.layer_combo.currentTextChanged.connect(self._on_layer_chosen)
        self.controls.start_button.clicked.connect(self.measure)
        self.threshold_spin.valueChanged.connect(self._on_threshold)
        self.table.itemSelectionChanged.connect(self._on_row_selected)
        self.export_button.clicked.connect(self._on_export)
        for event in ("removed", "reordered"):
            getattr(viewer.layers.events, event).connect(self._refresh_layers)
        viewer.layers.events.inserted.connect(self._on_inserted)
        for layer in viewer.layers:
            layer.events.data.connect(self._on_layer_data)
        follow_theme(viewer, self.histogram)
        self._refresh_layers()

    # -- inputs -------------------------------------------------------------
    def _refresh_layers(self, event: Any = None) -> None:
        names = [
            layer.name for layer in self.viewer.layers if isinstance(layer, Labels)
        ]
        if relist(self.layer_combo, names):
            self._on_layer_chosen()

    def _on_inserted(self, event: Any) -> None:
        self._refresh_layers()
        event.value.events.data.connect(self._on_layer_data)
        self._follow(event.value)

    def _on_layer_data(self, event: Any) -> None:
        self._follow(event.source)

    def _follow(self, layer: Layer) -> None:
        """Choose ``layer`` if it is a prediction: the newest result is measured."""
        if is_prediction(layer) and layer in self.viewer.layers:
            self.layer_combo.setCurrentText(layer.name)

    def _on_layer_chosen(self, name: str = "") -> None:
        """Default the class ids from the layer's class table, when it has one."""
        layer = self.labels_layer()
        if layer is None or CLASSES_KEY not in layer.metadata:
            return
        try:
            table = ClassTable.from_dict(layer.metadata[CLASSES_KEY])
        except XrmError:
            return
        for spin, cls in ((self.solder_spin, "solder"), (self.void_spin, "void")):
            if cls in table.names:
                spin.setValue(table.index(cls) + 1)

    def labels_layer(self) -> Labels | None:
        """The chosen Labels layer, if any."""
        name = self.layer_combo.currentText()
        found = (x for x in self.viewer.layers if x.name == name)
        return next((x for x in found if isinstance(x, Labels)), None)

    # -- running ------------------------------------------------------------
    def measure(self) -> Any:
        """Start measuring the chosen layer; returns the worker (None if refused)."""
        layer = self.labels_layer()
        if layer is None:
            show_error("Choose a Labels layer to measure.")
            return None
        data = layer.data[0] if layer.multiscale else layer.data
        try:
            gen = iter_measure_bumps(
                data,
                solder_id=self.solder_spin.value(),
                void_id=self.void_spin.value(),
                voxel_size=_voxel_size_um(layer),
                max_void_ratio=self.threshold_spin.value(),
                slab=self.slab,
            )
        except XrmError as exc:
            show_error(f"Cannot measure '{layer.name}': {exc}")
            return None
        self.measured_file = layer.source.path
        self._transform = (
            np.asarray(layer.scale[-3:]),
            np.asarray(layer.translate[-3:]),
            layer.units[-3:],
        )
        return self.controls.run("Measuring voids", gen, on_done=self._on_returned)

    def _on_returned(self, bumps: list[Bump]) -> None:
        self.bumps = bumps
        self._show()

    def _on_threshold(self, value: float) -> None:
        if self.bumps is not None:
            self.bumps = with_threshold(self.bumps, value)
            self._show()

    # -- results ------------------------------------------------------------
    def _show(self) -> None:
        bumps = self.bumps or []
        failed = sum(not b.passed for b in bumps)
        partial = sum(b.partial for b in bumps)
        self.summary.setText(f"{len(bumps)} bumps: {failed} fail, {partial} partial.")
        self._fill_table(bumps)
        self._update_points(bumps)
        self.histogram.show_ratios(
            [b.void_ratio for b in bumps], self.threshold_spin.value()
        )
        self.export_button.setEnabled(True)

    def _fill_table(self, bumps: list[Bump]) -> None:
        self.table.blockSignals(True)
        self.table.setSortingEnabled(False)
        self.table.clearContents()
        self.table.setRowCount(len(bumps))
        for r, row in enumerate(bumps_to_rows(bumps)):
            for c, key in enumerate(TABLE_COLUMNS):
                value = row[key]
                item = QTableWidgetItem()
                if isinstance(value, bool):
                    value = {"pass": ("FAIL", "pass")}.get(key, ("", "partial"))[value]
                elif isinstance(value, float):
                    value = round(value, 4)
                item.setData(Qt.ItemDataRole.DisplayRole, value)
                item.setData(Qt.ItemDataRole.UserRole, row["id"])
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)
        self.table.blockSignals(False)

    def _update_points(self, bumps: list[Bump]) -> None:
        data = np.array([(b.z, b.y, b.x) for b in bumps]).reshape(-1, 3)
        features = pd.DataFrame(bumps_to_rows(bumps))
        colours = [PASS_COLOUR if b.passed else FAIL_COLOUR for b in bumps]
        sizes = [equivalent_diameter(b.solder_voxels + b.void_voxels) for b in bumps]
        scale, translate, units = self._transform
        layer = next(
            (
                x
                for x in self.viewer.layers
                if x.name == self._points_name and isinstance(x, Points)
            ),
            None,
        )
        if layer is None:
            layer = self.viewer.add_points(
                data,
                name=POINTS_NAME,
                features=features,
                face_color=colours or "white",
                size=sizes or 1,
                opacity=0.6,
                scale=scale,
                translate=translate,
                units=units,
                projection_mode="rescale_spherical",
            )
            self._points_name = layer.name
            return
        # Update in place: the user's display settings for the layer survive.
        layer.units, layer.scale, layer.translate = units, scale, translate
        layer.data = data
        layer.features = features
        layer.face_color = colours or "white"
        layer.size = sizes or 1

    def _on_row_selected(self) -> None:
        items = self.table.selectedItems()
        if items:
            self.center_on(int(items[0].data(Qt.ItemDataRole.UserRole)))

    def center_on(self, bump_id: int) -> None:
        """Centre the camera on a bump and move the sliders to its plane."""
        bump = next(b for b in self.bumps or [] if b.id == bump_id)
        scale, translate, _ = self._transform
        world = np.array([bump.z, bump.y, bump.x]) * scale + translate
        dims = self.viewer.dims
        point = list(dims.point)
        point[dims.ndim - 3 :] = world
        hidden = [a for a in range(dims.ndim) if a not in dims.displayed]
        if hidden:
            dims.set_point(hidden, [point[a] for a in hidden])
        # napari >= 0.9 moved the camera to viewer.scene
        camera = getattr(self.viewer, "scene", self.viewer).camera
        camera.center = tuple(point[a] for a in dims.displayed)

    def export_csv(self, path: str) -> None:
        """Write the current report (with the current threshold) as CSV."""
        if self.bumps is None:
            raise XrmError("Measure a Labels layer before exporting its bump report.")
        check_apart(
            {"the bump report": path}, {"the measured mask": self.measured_file}
        )
        write_bumps_csv(path, self.bumps)

    def _on_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export bumps", "bumps.csv", "CSV (*.csv)"
        )
        if not path:
            return
        try:
            self.export_csv(path)
        except XrmError as exc:
            show_error(str(exc))
        else:
            show_info(f"Wrote {len(self.bumps or [])} bumps to {path}.")
