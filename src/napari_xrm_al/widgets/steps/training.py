"""Steps 2 and 3 of the dock: pretrain the encoder, train the segmenter."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_xrm_al.core.session.jobs import (
    last_settings,
    pretrain_session,
    train_session,
)
from napari_xrm_al.core.session.session import CycleRecord
from napari_xrm_al.core.slice_refs import SliceRef, format_slice_refs, parse_slice_refs
from napari_xrm_al.core.training.configs import PretrainConfig, TrainConfig
from napari_xrm_al.errors import XrmError
from napari_xrm_al.widgets._anisotropy import AnisotropyGuard, image_voxel_size
from napari_xrm_al.widgets._config_form import ConfigForm
from napari_xrm_al.widgets._job_controls import JobControls
from napari_xrm_al.widgets._layers import fit_columns
from napari_xrm_al.widgets.plots import LossPlot

if TYPE_CHECKING:
    from napari_xrm_al.core.model.checkpoint import Checkpoint
    from napari_xrm_al.widgets.dock_state import DockState

#: Fields of the two forms, in order (labels, ranges, tooltips: the core's settings).
PRETRAIN_FIELDS = (
    "steps",
    "time_budget_s",
    "batch_size",
    "region_size",
    "view_size",
    "features",
    "context",
    "dropout",
    "lr",
    "temperature",
    "pool_voxels",
)
TRAIN_FIELDS = (
    "steps",
    "time_budget_s",
    "batch_size",
    "crop_size",
    "ensemble",
    "ema_decay",
    "loss",
    "precision",
    "lr",
    "rare_crop_fraction",
    "rare_paste",
    "class_weight_power",
    "steps_per_slice",
    "augment.histogram_shift",
    "augment.intensity_scale",
    "augment.intensity_shift",
    "augment.mixed_grey_share",
    "augment.noise_std",
    "augment.blur_prob",
)
#: Architecture fields set in Pretrain and used by Train when there is no encoder.
ARCHITECTURE = ("features", "context", "dropout")


def _hint(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    return label


class PretrainSection(QWidget):
    """Contrastive pretraining of the encoder on the unlabelled scan."""

    def __init__(self, state: DockState) -> None:
        super().__init__()
        self.state = state
        self.hint = _hint("")
        self.form = ConfigForm(PretrainConfig, PRETRAIN_FIELDS)
        self.controls = JobControls(state.runner, "Start pretraining")
        self.plot = LossPlot()
        layout = QVBoxLayout(self)
        for widget in (self.hint, self.form, self.controls, self.plot):
            layout.addWidget(widget)
        layout.addStretch()
        self.controls.start_button.clicked.connect(self.start)

    def start(self) -> Any:
        """Start pretraining; returns the worker (None if it cannot start)."""
        try:
            session, data = self.state.require_session()
            config = self.form.config()
        except XrmError as exc:
            self.state.notify_error(exc)
            return None
        self.plot.reset()
        return self.controls.run(
            "Pretraining",
            pretrain_session(session, data, config),
            on_progress=self.plot.add,
            on_done=self.show_result,
        )

    def show_result(self, ckpt: Checkpoint) -> None:
        """Pretraining ended: the project records the encoder."""
        self.state.session_changed.emit()

    def refresh(self) -> None:
        """Say what this step needs and what it did."""
        session = self.state.session
        if session is None:
            text = "Needs an open project (step 1)."
        elif session.pretrained:
            text = (
                f"Encoder pretrained ({session.pretrained}). Pretrain again to "
                "replace it, or go on to Train."
            )
        else:
            text = (
                "Teaches the network what this scan looks like, without labels "
                "(optional, recommended). Then paint a few slices and Train."
            )
        self.hint.setText(text)


class TrainSection(QWidget):
    """Train the segmenter on the slices marked done.

    ``pretrain_form`` is the Pretrain step's settings, whose architecture fields
    training uses. The cycle records the project's suggestion, if any (its
    strategy and picks), and uses it up; then ``state.cycle_trained``.
    """

    def __init__(self, state: DockState, pretrain_form: ConfigForm) -> None:
        super().__init__()
        self.state = state
        self.pretrain_form = pretrain_form
        self.last_record: CycleRecord | None = None
        self.hint = _hint("")
        self.form = ConfigForm(TrainConfig, TRAIN_FIELDS)
        self.validation_edit = QLineEdit()
        self.validation_edit.setPlaceholderText("none")
        self.validation_edit.setToolTip(
            "Painted slices kept out of training (do not mark them done) to measure "
            "per-class IoU while training, e.g. '30, 95' (along the project's "
            "axis) or 'y:100' along another axis."
        )
        self.seed_box = QSpinBox()
        self.seed_box.setRange(0, 2**31 - 1)
        self.seed_box.setToolTip(
            "Training seed. The same slices and seed give the same model; another "
            "seed trains another one. When a retrain looks worse than the last "
            "cycle, try another seed before painting more."
        )
        self.axes_guard = AnisotropyGuard("Train on slices")
        extra = QFormLayout()
        extra.addRow("Validation slices", self.validation_edit)
        extra.addRow("Training seed", self.seed_box)
        extra.addRow(self.axes_guard)
        self.controls = JobControls(state.runner, "Start training")
        self.plot = LossPlot()
        self.metrics = QTableWidget(0, 3)
        self.metrics.setHorizontalHeaderLabels(["Class", "IoU", "Dice"])
        fit_columns(self.metrics)
        self.metrics.setMaximumHeight(150)
        self.metrics.setVisible(False)
        self.result = _hint("")
        layout = QVBoxLayout(self)
        layout.addWidget(self.hint)
        layout.addWidget(self.form)
        layout.addLayout(extra)
        for widget in (self.controls, self.plot, self.result, self.metrics):
            layout.addWidget(widget)
        layout.addStretch()
        self.controls.start_button.clicked.connect(self.start)
        self.axes_guard.force_box.toggled.connect(self.check_axes)
        state.session_opened.connect(self.restore_settings)

    def restore_settings(self) -> None:
        """Start both forms and the seed from what the opened project's latest
        model and encoder were made with; a form whose project has no such model
        keeps what it shows."""
        session = self.state.session
        if session is None:
            return
        last = last_settings(session)
        if last.pretrain is not None:
            self.pretrain_form.load(last.pretrain)
        elif last.train is not None:  # no encoder: the model's architecture
            self.pretrain_form.load(last.train, ARCHITECTURE)
        if last.train is not None:
            self.form.load(last.train)
        if last.seed is not None:
            self.seed_box.setValue(last.seed)

    def config(self) -> TrainConfig:
        """The training settings (architecture from the Pretrain step)."""
        pre = self.pretrain_form
        return self.form.config(**{name: pre.value(name) for name in ARCHITECTURE})

    def validation_slices(self) -> list[SliceRef]:
        """The slices in the Validation slices field (XrmError naming the field)."""
        return parse_slice_refs(
            self.validation_edit.text(),
            "Validation slices",
            self.state.axis,
            allow_empty=True,
        )

    def _done_axes(self) -> set[int]:
        session = self.state.session
        return {ref.axis for ref in session.done} if session else set()

    def check_axes(self) -> None:
        """Show the anisotropy note, or refusal, of the done slices' axes."""
        voxel_size = image_voxel_size(self.state.image_layer)
        self.axes_guard.show_check(voxel_size, self._done_axes())

    def start(self) -> Any:
        """Start a training cycle; returns the worker (None if it cannot start)."""
        try:
            session, data = self.state.require_session()
            self.axes_guard.check(
                image_voxel_size(self.state.image_layer), self._done_axes()
            )
            config = self.config()
            validation = self.validation_slices()
            overlap = set(validation) & set(session.done)
            if overlap:
                raise XrmError(
                    f"Slices {format_slice_refs(overlap)} are marked done (training "
                    "slices) and cannot also validate."
                )
        except XrmError as exc:
            self.state.notify_error(exc)
            return None
        self.plot.reset()
        return self.controls.run(
            "Training",
            train_session(
                session,
                data,
                config,
                validation_slices=validation,
                seed=self.seed_box.value(),
            ),
            on_progress=self._on_progress,
            on_done=self.show_result,
        )

    def _on_progress(self, event: Any) -> None:
        self.plot.add(event)
        if event.metrics:
            self.show_metrics(event.metrics)

    def show_result(self, record: CycleRecord) -> None:
        """A training cycle ended: its metrics and the learning curve."""
        self.last_record = record
        self.state.cycle_trained.emit(record)
        self.show_metrics(record.metrics)
        self.state.session_changed.emit()

    def show_metrics(self, metrics: dict[str, Any]) -> None:
        """Fill the per-class table from ``iou/<class>`` and ``dice/<class>``."""
        names = [k[4:] for k in metrics if k.startswith("iou/")]
        self.metrics.setVisible(bool(names))
        self.metrics.setRowCount(len(names))
        for row, name in enumerate(names):
            values = (name, metrics.get(f"iou/{name}"), metrics.get(f"dice/{name}"))
            for col, value in enumerate(values):
                text = value if isinstance(value, str) else _fmt(value)
                self.metrics.setItem(row, col, QTableWidgetItem(text))

    def refresh(self) -> None:
        """Say what this step needs and what the last cycle gave."""
        session = self.state.session
        self.check_axes()
        if session is None:
            self.hint.setText("Needs an open project (step 1).")
            return
        painted = self.state.painted_not_done()
        text = f"Trains on the {len(session.done)} slices marked done" + (
            " from the pretrained encoder."
            if session.pretrained
            else " (from scratch: no encoder)."
        )
        if not session.done:
            text = (
                "Needs slices marked done: paint a slice with the classes you see "
                "(label 1 = first class…), then 'Mark slice done' below."
            )
        if painted:
            text += f" Painted but not marked done: {painted}."
        self.hint.setText(text)
        if session.cycles:
            last = session.cycles[-1]
            loss = last.metrics.get("final_loss")
            miou = last.metrics.get("miou")
            self.result.setText(
                f"Cycle {last.cycle}: {len(last.labelled)} slices, seed {last.seed}"
                + (f", final loss {_fmt(loss)}" if loss is not None else "")
                + (f", mIoU {_fmt(miou)}" if miou is not None else "")
                + f" → {last.model}"
            )


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3f}"
