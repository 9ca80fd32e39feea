"""Small matplotlib plots of the dock: live loss, score profile, learning curve.

Redraws are throttled (at most every :data:`REDRAW_MS`) because drawing runs on
the GUI thread, which must stay responsive while a job streams progress.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QTimer, Signal

from napari_xrm_al.core.events import Progress

#: Shortest interval between two redraws of a plot.
REDRAW_MS = 300
PICK_COLOUR = "#d62728"
DONE_COLOUR = "#2ca02c"


class _Plot(FigureCanvasQTAgg):
    """A small figure with one axes and a throttled redraw."""

    def __init__(self, height: float = 2.0) -> None:
        super().__init__(Figure(figsize=(4, height), tight_layout=True))
        self.setMinimumHeight(int(height * 70))
        self.ax = self.figure.add_subplot()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.draw_idle)

    def request_draw(self) -> None:
        """Redraw soon, at most once per :data:`REDRAW_MS`."""
        if not self._timer.isActive():
            self._timer.start()

    def _reset_axes(self, xlabel: str, ylabel: str) -> None:
        self.ax.clear()
        self.ax.set_xlabel(xlabel)
        self.ax.set_ylabel(ylabel)
        self.ax.tick_params(labelsize=8)


class LossPlot(_Plot):
    """The smoothed loss of a running pretraining or training job."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.reset()

    def reset(self) -> None:
        """Start a new curve."""
        self.steps, self.losses = [], []
        self._reset_axes("step", "loss")
        (self.line,) = self.ax.plot([], [], color="#0072b2")
        self.request_draw()

    def add(self, event: Progress) -> None:
        """Append the loss of one progress event (ignored when it has none)."""
        if event.loss is None:
            return
        self.steps.append(event.step)
        self.losses.append(event.loss)
        self.line.set_data(self.steps, self.losses)
        self.ax.relim()
        self.ax.autoscale_view()
        self.request_draw()


class ProfilePlot(_Plot):
    """Acquisition score along the slice axis, picks and labelled slices marked.

    Signals
    -------
    slice_clicked(int)
        The user clicked the plot at this slice.
    """

    slice_clicked = Signal(int)

    def __init__(self) -> None:
        super().__init__()
        self._reset_axes("slice", "score")
        self.cursor = self.ax.axvline(0, color="#888888", lw=1)
        self.mpl_connect("button_press_event", self._on_click)

    def show_scores(
        self,
        index: np.ndarray,
        scores: np.ndarray,
        picks: Sequence[int],
        labelled: Sequence[int],
        axis: str,
    ) -> None:
        """Plot ``scores`` over slices ``index``, picks as red dots."""
        current = self.cursor.get_xdata()[0]
        self._reset_axes(f"slice ({axis})", "score")
        order = np.argsort(index)
        self.ax.plot(index[order], scores[order], color="#0072b2", lw=1)
        position = {int(s): i for i, s in enumerate(index)}
        hits = [position[p] for p in picks if p in position]
        self.ax.plot(index[hits], scores[hits], "o", color=PICK_COLOUR, ms=5)
        for s in labelled:
            self.ax.axvline(s, color=DONE_COLOUR, lw=0.8, alpha=0.6)
        self.cursor = self.ax.axvline(current, color="#888888", lw=1)
        self.request_draw()

    def set_current(self, index: int) -> None:
        """Move the cursor line to slice ``index``."""
        self.cursor.set_xdata([index, index])
        self.request_draw()

    def _on_click(self, event: Any) -> None:
        if event.inaxes is self.ax and event.xdata is not None:
            self.slice_clicked.emit(round(event.xdata))


class LearningCurvePlot(_Plot):
    """Validation scores (or the final training loss) against labelled slices."""

    def __init__(self) -> None:
        super().__init__()
        self.series: dict[str, list[float]] = {}
        self.show_curve([])

    def show_curve(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Plot one point per cycle; ``rows`` as from ``learning_curve(session)``."""
        x = [int(r["n_labelled"]) for r in rows]
        metrics = [dict(r.get("metrics") or {}) for r in rows]
        keys = [k for k in ("miou", *sorted(_iou_keys(metrics))) if _has(metrics, k)]
        if not keys and _has(metrics, "final_loss"):
            keys = ["final_loss"]
        self._reset_axes("labelled slices", "loss" if keys == ["final_loss"] else "IoU")
        self.series = {k: [float(m.get(k, np.nan)) for m in metrics] for k in keys}
        for key, values in self.series.items():
            self.ax.plot(x, values, "o-", ms=4, label=key)
        if len(self.series) > 1:
            self.ax.legend(fontsize=7)
        if not rows:
            self.ax.text(
                0.5,
                0.5,
                "no trained cycle yet",
                ha="center",
                va="center",
                transform=self.ax.transAxes,
                color="#888888",
            )
        self.request_draw()


def _iou_keys(metrics: Sequence[Mapping[str, Any]]) -> set[str]:
    return {k for m in metrics for k in m if k.startswith("iou/")}


def _has(metrics: Sequence[Mapping[str, Any]], key: str) -> bool:
    return any(isinstance(m.get(key), int | float) for m in metrics)
