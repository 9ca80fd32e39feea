"""Step 4 of the dock: suggest slices to paint next, and go to them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_xrm_al.core.al.acquisition import DEFAULT_MIN_DISTANCE, STRATEGIES, Pick
from napari_xrm_al.core.al.discovery import rare_label
from napari_xrm_al.core.al.ranking import Ranking, rank_session
from napari_xrm_al.core.session.jobs import predict_slice_session
from napari_xrm_al.core.slices import axis_index
from napari_xrm_al.errors import XrmError
from napari_xrm_al.widgets._jobs import JobControls
from napari_xrm_al.widgets._layers import fit_columns, replace_or_add
from napari_xrm_al.widgets.plots import PICK_COLOUR, ProfilePlot

if TYPE_CHECKING:
    from napari_xrm_al.widgets.loop import ActiveLearningWidget

CANDIDATES_NAME = "suggested slices"
DEFAULT_STRATEGY = "rareness"
COLUMNS = ("#", "Slice", "Score", "Rare fraction", "Why")
#: What the "Why" column says for each part of a split batch.
REASONS = {"cover": "not labelled yet", "rare": "rare class"}


def slice_frames(
    shape: Sequence[int], axis: int, slices: Sequence[int]
) -> list[np.ndarray]:
    """A rectangle around the whole of each slice, as 3D vertices (data coordinates)."""
    a, b = (i for i in range(3) if i != axis)
    corners = [
        (0, 0),
        (0, shape[b] - 1),
        (shape[a] - 1, shape[b] - 1),
        (shape[a] - 1, 0),
    ]
    frames = []
    for s in slices:
        frame = np.zeros((4, 3))
        frame[:, axis] = s
        frame[:, [a, b]] = corners
        frames.append(frame)
    return frames


class SuggestSection(QWidget):
    """Rank slices with the latest model; the table and plot lead to them."""

    def __init__(self, dock: ActiveLearningWidget) -> None:
        super().__init__()
        self.dock = dock
        self.ranking: Ranking | None = None
        #: Strategy and picks recorded with the next training cycle.
        self.last_strategy = "manual"
        self.last_picks: list[Pick] = []
        self.hint = QLabel("")
        self.hint.setWordWrap(True)
        self.strategy_combo = QComboBox()
        for name, strategy in STRATEGIES.items():
            self.strategy_combo.addItem(name)
            self.strategy_combo.setItemData(
                self.strategy_combo.count() - 1,
                strategy.description,
                Qt.ItemDataRole.ToolTipRole,
            )
        self.strategy_combo.setCurrentText(DEFAULT_STRATEGY)
        self.strategy_combo.setToolTip(
            "How slices are scored. 'rareness' favours uncertain pixels of the rare "
            "class (voids) so they are found with few labels."
        )
        self.k_spin = QSpinBox(minimum=1, maximum=100, value=5)
        self.k_spin.setToolTip("How many slices to suggest.")
        self.distance_spin = QSpinBox(
            minimum=0, maximum=10_000, value=DEFAULT_MIN_DISTANCE
        )
        self.distance_spin.setToolTip(
            "Suggested slices keep at least this many slices from each other and "
            "from slices already done."
        )
        form = QFormLayout()
        form.addRow("Strategy", self.strategy_combo)
        form.addRow("Slices", self.k_spin)
        form.addRow("Min. distance", self.distance_spin)
        self.controls = JobControls(dock.runner, "Suggest slices")
        self.plan_label = QLabel("")
        self.plan_label.setWordWrap(True)
        self.plan_label.setVisible(False)
        self.plan_label.setToolTip(
            "How 'rareness-discovery' split the batch: slices unlike everything "
            "labelled so far first, then slices likely to hold the rare class."
        )
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.setToolTip("Click a row to go to that slice and paint it.")
        fit_columns(self.table)
        self.table.setMaximumHeight(150)
        self.profile = ProfilePlot()
        self.profile.setToolTip("Score of every slice; click to go to a slice.")
        self.prefill_button = QPushButton("Pre-fill slice from model")
        self.prefill_button.setToolTip(
            "Fill the unpainted pixels of the current slice with the model's "
            "prediction, so you correct it instead of painting from nothing "
            "(undo with Ctrl+Z)."
        )
        layout = QVBoxLayout(self)
        layout.addWidget(self.hint)
        layout.addLayout(form)
        for widget in (
            self.controls,
            self.plan_label,
            self.table,
            self.prefill_button,
            self.profile,
        ):
            layout.addWidget(widget)
        layout.addStretch()
        self.controls.start_button.clicked.connect(self.start)
        self.table.itemSelectionChanged.connect(self._on_row_selected)
        self.profile.slice_clicked.connect(self.dock.go_to_slice)
        self.prefill_button.clicked.connect(self.prefill)
        dock.runner.busy_changed.connect(self._on_busy)

    # -- ranking -------------------------------------------------------------------
    def start(self) -> Any:
        """Rank every slice; returns the worker (None if it cannot start)."""
        try:
            session, data = self.dock.require_session()
            strategy = self.strategy_combo.currentText()
            validation = self.dock.train.validation_slices()
        except XrmError as exc:
            self.dock.notify_error(exc)
            return None
        return self.controls.run(
            "Suggesting slices",
            rank_session(
                session,
                data,
                strategy=strategy,
                k=self.k_spin.value(),
                min_distance=self.distance_spin.value(),
                exclude=validation,
            ),
            on_done=self.show_ranking,
        )

    def show_ranking(self, ranking: Ranking) -> None:
        """Fill the table, the profile plot and the candidate frames."""
        self.ranking = ranking
        self.last_strategy, self.last_picks = ranking.strategy, list(ranking.picks)
        session = self.dock.session
        rare = list(session.classes.rare_ids) if session else []
        fraction = (
            ranking.class_fraction[:, rare].sum(axis=1)
            if rare and ranking.class_fraction is not None
            else None
        )
        row_of = {int(s): i for i, s in enumerate(ranking.index)}
        self.table.blockSignals(True)
        self.table.clearSelection()
        self.table.setRowCount(len(ranking.picks))
        for r, pick in enumerate(ranking.picks):
            share = None if fraction is None else fraction[row_of[pick.slice]]
            why = REASONS.get(pick.reason, pick.reason)
            values = (pick.rank, pick.ref.index, round(pick.score, 4), share, why)
            for c, value in enumerate(values):
                item = QTableWidgetItem()
                shown = "–" if value is None else value
                if isinstance(value, float | np.floating) and c == 3:
                    shown = f"{value:.2%}"
                item.setData(Qt.ItemDataRole.DisplayRole, shown)
                item.setData(Qt.ItemDataRole.UserRole, pick.ref.index)
                self.table.setItem(r, c, item)
        self.table.blockSignals(False)
        self.plan_label.setText(
            ranking.plan.describe(session.classes.names, rare_label(session.classes))
            if ranking.plan is not None and session is not None
            else ""
        )
        self.plan_label.setVisible(bool(self.plan_label.text()))
        self.profile.show_scores(
            np.asarray([ref.index for ref in ranking.refs]),
            np.asarray(ranking.scores),
            [p.ref.index for p in ranking.picks],
            session.done_along() if session else [],
            session.axis if session else "",
        )
        self._show_frames(ranking.picks)
        self.refresh()

    def _show_frames(self, picks: Sequence[Pick]) -> None:
        image = self.dock.image_layer
        session = self.dock.session
        if image is None or session is None:
            return
        shape = session.image.shape
        frames = slice_frames(
            shape, axis_index(session.axis), [p.ref.index for p in picks]
        )
        replace_or_add(
            self.dock.viewer,
            "shapes",
            frames,
            name=CANDIDATES_NAME,
            shape_type="rectangle",
            edge_color=PICK_COLOUR,
            face_color="transparent",
            edge_width=max(1.0, 0.01 * max(shape)),
            features=pd.DataFrame(
                {
                    "rank": [p.rank for p in picks],
                    "slice": [p.ref.index for p in picks],
                    "score": [p.score for p in picks],
                }
            ),
            text={
                "string": "suggested #{rank}",
                "color": PICK_COLOUR,
                "size": 10,
                "anchor": "upper_left",
            },
            scale=image.scale,
            translate=image.translate,
            units=image.units,
        )
        self.dock.activate_annotations()

    def picks(self) -> list[int]:
        """Suggested slices, best first."""
        return [p.ref.index for p in self.ranking.picks] if self.ranking else []

    def select_pick(self, rank: int) -> None:
        """Select table row ``rank`` (1 = best): the viewer goes to that slice."""
        self.table.selectRow(rank - 1)

    def _on_row_selected(self) -> None:
        items = self.table.selectedItems()
        if items:
            self.dock.go_to_slice(int(items[0].data(Qt.ItemDataRole.UserRole)))

    # -- pre-filling -----------------------------------------------------------------
    def prefill(self) -> Any:
        """Fill the current slice's unpainted pixels with the latest model's guess."""
        try:
            session, data = self.dock.require_session()
            if session.latest_model is None:
                raise XrmError("Train a model before pre-filling a slice from it.")
        except XrmError as exc:
            self.dock.notify_error(exc)
            return None
        index = self.dock.current_slice()
        self._prefill_index = index
        return self.controls.run(
            "Pre-filling",
            predict_slice_session(session, data, index),
            on_done=self._on_prefilled,
        )

    def _on_prefilled(self, labels: np.ndarray) -> None:
        self.dock.fill_unpainted(self._prefill_index, labels)

    def _on_busy(self, busy: bool) -> None:
        self.prefill_button.setEnabled(not busy)

    def refresh(self) -> None:
        """Say what this step needs."""
        session = self.dock.session
        if session is None:
            text = "Needs an open project (step 1)."
        elif session.latest_model is None and session.pretrained is None:
            text = "Needs a pretrained encoder (step 2) or a trained model (step 3)."
        elif session.latest_model is None:
            text = (
                "No model yet: suggests a first, diverse set of slices from the "
                "pretrained encoder (core-set), whatever the strategy. Paint them, "
                "mark them done, then train."
            )
        else:
            text = (
                "Suggests the slices the model would learn most from. Click one, "
                "paint it (correct the pre-fill), then 'Mark slice done' and train "
                "again."
            )
        self.hint.setText(text)
