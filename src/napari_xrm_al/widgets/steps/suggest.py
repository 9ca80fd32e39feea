"""Step 4 of the dock: suggest slices to paint next, and go to them.

Candidates lie along the project's axis, or along z, y and x at once; the
latter is refused for strongly anisotropic voxels as on the command line
(:class:`~napari_xrm_al.widgets._anisotropy.AnisotropyGuard`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
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
from napari_xrm_al.core.al.batch_picking import pick_of_record
from napari_xrm_al.core.al.ranking import Ranking
from napari_xrm_al.core.session.jobs import rank_session
from napari_xrm_al.core.session.prediction import predict_slice_session
from napari_xrm_al.core.slice_refs import (
    SliceRef,
    anisotropy_note,
    parse_axes,
    ref_of_code,
)
from napari_xrm_al.core.slices import AXIS_NAMES
from napari_xrm_al.errors import XrmError
from napari_xrm_al.widgets._anisotropy import AnisotropyGuard, image_voxel_size
from napari_xrm_al.widgets._job_controls import JobControls
from napari_xrm_al.widgets._layers import fit_columns, show_candidates
from napari_xrm_al.widgets.plots import ProfilePlot

if TYPE_CHECKING:
    from collections.abc import Callable

    from napari.layers import Image

    from napari_xrm_al.widgets.dock_state import DockState

DEFAULT_STRATEGY = "rareness"
COLUMNS = ("#", "Slice", "Score", "Rare fraction", "Why")
#: The axes choice: the project's own axis, or all three.
ALL_AXES = "z, y, x"
#: What the "Why" column says for each part of a split batch.
REASONS = {"cover": "not labelled yet", "rare": "rare class"}


class SuggestSection(QWidget):
    """Rank slices with the latest model; the table and plot lead to them.

    ``chosen_image`` gives the Data step's image layer (before a project is
    open), ``validation_slices`` the Train step's slices, never suggested.
    """

    def __init__(
        self,
        state: DockState,
        chosen_image: Callable[[], Image | None],
        validation_slices: Callable[[], list[SliceRef]],
    ) -> None:
        super().__init__()
        self.state = state
        self.chosen_image = chosen_image
        self.validation_slices = validation_slices
        self.ranking: Ranking | None = None
        #: The axis whose slices the score profile shows.
        self.profile_axis = 0
        #: The picks in the table: the latest ranking's, or the project's kept
        #: suggestion when it was reopened.
        self.shown: list[Pick] = []
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
        self.axes_combo = QComboBox()
        self.axes_combo.addItems(["z", ALL_AXES])
        self.axes_combo.setToolTip(
            "Slices to rank: along the project's axis only, or along z, y and x "
            "together. A project opens with z, y and x unless its voxels are more "
            "than 2:1 (a slice along y or x shows every layer of a package at "
            "once, and models trained on such slices were far better after 8–12 "
            "slices); refused when the voxels are strongly anisotropic."
        )
        self.axes_guard = AnisotropyGuard("Rank slices")
        form = QFormLayout()
        form.addRow("Axes", self.axes_combo)
        form.addRow(self.axes_guard)
        form.addRow("Strategy", self.strategy_combo)
        form.addRow("Slices", self.k_spin)
        form.addRow("Min. distance", self.distance_spin)
        self.controls = JobControls(state.runner, "Suggest slices")
        self.plan_label = QLabel("")
        self.plan_label.setWordWrap(True)
        self.plan_label.setVisible(False)
        self.plan_label.setToolTip(
            "How 'rareness-discovery' (or one of its variants) split the batch: "
            "slices unlike everything labelled so far first, then slices likely to "
            "hold the rare class."
        )
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.setToolTip(
            "Click a row to go to that slice (the view turns to its axis) and paint it."
        )
        fit_columns(self.table)
        self.table.setMaximumHeight(150)
        self.profile = ProfilePlot()
        self.profile.setToolTip(
            "Score of every slice along the axis in view (of those ranked); click "
            "to go to a slice."
        )
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
        self.profile.slice_clicked.connect(self._on_profile_clicked)
        self.prefill_button.clicked.connect(self.prefill)
        self.axes_combo.currentIndexChanged.connect(self.check_axes)
        self.axes_guard.force_box.toggled.connect(self.check_axes)
        state.runner.busy_changed.connect(self._on_busy)
        state.session_opened.connect(self.choose_axes)
        state.session_opened.connect(self.show_suggestion)

    # -- axes ----------------------------------------------------------------------
    def axes(self) -> list[int]:
        """The axes to rank along; :class:`XrmError` when the voxels are too
        anisotropic for several axes (unless forced)."""
        axes, voxel_size = self._axes_and_voxels()
        self.axes_guard.check(voxel_size, axes)
        return axes

    def _axes_and_voxels(self) -> tuple[list[int], tuple[float, ...] | None]:
        """The axes chosen, and the voxel size when they are several."""
        session = self.state.session
        if self.axes_combo.currentText() != ALL_AXES:
            return parse_axes(session.axis if session else "z", "Axes"), None
        layer = self.state.image_layer or self.chosen_image()
        return parse_axes(ALL_AXES, "Axes"), image_voxel_size(layer)

    def choose_axes(self) -> None:
        """Rank an opened project's slices along z, y and x, or along its own
        axis where the voxels are more than 2:1 (unknown voxels count as cubic:
        a reconstructed X-ray scan has them)."""
        voxel_size = image_voxel_size(self.state.image_layer)
        cubic = anisotropy_note(voxel_size, range(3), force=True) is None
        self.axes_combo.setCurrentIndex(1 if cubic else 0)

    def check_axes(self) -> None:
        """Show the anisotropy note, or refusal, of the axes chosen."""
        axes, voxel_size = self._axes_and_voxels()
        self.axes_guard.show_check(voxel_size, axes)

    # -- ranking -------------------------------------------------------------------
    def start(self) -> Any:
        """Rank every slice; returns the worker (None if it cannot start)."""
        try:
            session, data = self.state.require_session()
            axes = self.axes()
            strategy = self.strategy_combo.currentText()
            validation = self.validation_slices()
        except XrmError as exc:
            self.state.notify_error(exc)
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
                axes=axes,
            ),
            on_done=self.show_ranking,
        )

    def show_ranking(self, ranking: Ranking) -> None:
        """Fill the table, the profile plot and the candidate frames."""
        self.ranking = ranking
        session = self.state.session
        rare = list(session.classes.rare_ids) if session else []
        fraction = (
            ranking.class_fraction[:, rare].sum(axis=1)
            if rare and ranking.class_fraction is not None
            else None
        )
        row_of = {int(s): i for i, s in enumerate(ranking.index)}
        kept = session.suggestion if session is not None else None
        self._show_picks(
            ranking.picks,
            lambda pick: None if fraction is None else fraction[row_of[pick.slice]],
            (kept.plan or "") if kept is not None else "",  # rank_session's words
        )
        self._show_frames(ranking.picks)
        in_view = self.state.view_axis()
        ranked = {ref.axis for ref in ranking.refs}
        self.show_profile(in_view if in_view in ranked else min(ranked))
        self.refresh()

    def show_profile(self, axis: int) -> None:
        """Plot the latest ranking's scores of the slices along ``axis``."""
        ranking, session = self.ranking, self.state.session
        if ranking is None or session is None:
            return
        self.profile_axis = axis
        along = [i for i, ref in enumerate(ranking.refs) if ref.axis == axis]
        self.profile.show_scores(
            np.asarray([ranking.refs[i].index for i in along], dtype=np.int64),
            np.asarray(ranking.scores)[along],
            [p.ref.index for p in ranking.picks if p.ref.axis == axis],
            session.done_along(axis),
            AXIS_NAMES[axis],
        )

    def follow_view(self, ref: SliceRef) -> None:
        """The viewer shows ``ref``: the profile turns to its axis (when ranked
        along it) and its cursor moves there."""
        ranked = {r.axis for r in self.ranking.refs} if self.ranking else set()
        if ref.axis != self.profile_axis and ref.axis in ranked:
            self.show_profile(ref.axis)
        if ref.axis == self.profile_axis:
            self.profile.set_current(ref.index)

    def _on_profile_clicked(self, index: int) -> None:
        self.state.go_to_slice(SliceRef(self.profile_axis, index))

    def show_suggestion(self) -> None:
        """The suggestion kept in the project just opened (table and frames; the
        score profile needs a new ranking)."""
        self.ranking = None
        self.profile_axis = self.state.axis
        session = self.state.session
        record = session.suggestion if session is not None else None
        picks = [pick_of_record(p) for p in record.picks] if record else []
        self._show_picks(
            picks, lambda pick: None, (record.plan or "") if record else ""
        )
        if picks:  # no empty frames layer in a project without a suggestion
            self._show_frames(picks)
        self.profile.clear(
            f"suggested by {record.strategy} on {record.created[:16].replace('T', ' ')}"
            "; suggest again to see the scores"
            if record
            else "suggest slices to see their scores"
        )
        self.refresh()

    def _show_picks(
        self,
        picks: Sequence[Pick],
        rare_share: Callable[[Pick], float | None],
        plan: str,
    ) -> None:
        """The table (rank, slice, score, rare share, why) and the plan."""
        self.shown = list(picks)
        self.table.blockSignals(True)
        self.table.clearSelection()
        self.table.setRowCount(len(picks))
        for r, pick in enumerate(picks):
            why = REASONS.get(pick.reason, pick.reason)
            share = rare_share(pick)
            values = (pick.rank, str(pick.ref), round(pick.score, 4), share, why)
            for c, value in enumerate(values):
                item = QTableWidgetItem()
                shown = "–" if value is None else value
                if isinstance(value, float | np.floating) and c == 3:
                    shown = f"{value:.2%}"
                item.setData(Qt.ItemDataRole.DisplayRole, shown)
                item.setData(Qt.ItemDataRole.UserRole, pick.slice)
                self.table.setItem(r, c, item)
        self.table.blockSignals(False)
        self.plan_label.setText(plan)
        self.plan_label.setVisible(bool(plan))

    def _show_frames(self, picks: Sequence[Pick]) -> None:
        image, session = self.state.image_layer, self.state.session
        if image is None or session is None:
            return
        show_candidates(self.state.viewer, image, session.image.shape, picks)
        self.state.activate_annotations()

    def picks(self) -> list[SliceRef]:
        """Suggested slices, best first."""
        return [p.ref for p in self.shown]

    def select_pick(self, rank: int) -> None:
        """Select table row ``rank`` (1 = best): the viewer goes to that slice."""
        self.table.selectRow(rank - 1)

    def _on_row_selected(self) -> None:
        items = self.table.selectedItems()
        if items:
            self.state.go_to_slice(ref_of_code(items[0].data(Qt.ItemDataRole.UserRole)))

    # -- pre-filling -----------------------------------------------------------------
    def prefill(self) -> Any:
        """Fill the current slice's unpainted pixels with the latest model's guess."""
        try:
            session, data = self.state.require_session()
            if session.latest_model is None:
                raise XrmError("Train a model before pre-filling a slice from it.")
        except XrmError as exc:
            self.state.notify_error(exc)
            return None
        ref = self.state.current_ref()
        self._prefill_ref = ref
        return self.controls.run(
            "Pre-filling",
            predict_slice_session(session, data, ref),
            on_done=self._on_prefilled,
        )

    def _on_prefilled(self, labels: np.ndarray) -> None:
        self.state.fill_unpainted(self._prefill_ref, labels)

    def _on_busy(self, busy: bool) -> None:
        self.prefill_button.setEnabled(not busy)

    def refresh(self) -> None:
        """Say what this step needs."""
        session = self.state.session
        self.axes_combo.setItemText(0, session.axis if session else "z")
        self.check_axes()
        if session is None:
            text = "Needs an open project (step 1)."
        elif session.latest_model is None and session.pretrained is None:
            text = "Needs a pretrained encoder (step 2) or a trained model (step 3)."
        elif session.latest_model is None:
            text = (
                "No model yet: suggests first slices that together show the "
                "scan's structures, from the pretrained encoder (core-set, "
                "preferring slices that hold several), whatever the strategy. "
                "Paint them, mark them done, then train."
            )
        else:
            text = (
                "Suggests the slices the model would learn most from. Click one, "
                "paint it (correct the pre-fill), then 'Mark slice done' and train "
                "again."
            )
        self.hint.setText(text)
