"""Small plots of the dock: live loss, score profile, learning curve, void ratios.

All drawing runs on the GUI thread, which must stay responsive while a job
streams progress: the live loss is painted directly with ``QPainter``; the
matplotlib plots (drawn when a job ends, or when the slice changes) redraw at
most every :data:`REDRAW_MS`. Every plot takes its background, text and axes
colours from the napari theme (:func:`follow_theme` keeps them in step).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from qtpy.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QWidget

from napari_xrm_al.core.events import Progress

if TYPE_CHECKING:
    import napari

#: Shortest interval between two redraws of a plot.
REDRAW_MS = 300
PICK_COLOUR = "#d62728"
LOSS_COLOUR = "#56b4e9"
DONE_COLOUR = "#2ca02c"
PASS_COLOUR = "#2ca02c"
FAIL_COLOUR = "#d62728"
CURSOR_COLOUR = "#888888"
#: Height of the matplotlib plots, in pixels (kept small: the dock must fit a laptop).
PLOT_HEIGHT = 130


@dataclass(frozen=True)
class PlotColours:
    """The colours of a napari theme that a plot uses (``'#rrggbb'``)."""

    background: str
    text: str
    axes: str
    muted: str


def theme_colours(theme_id: str | None = None) -> PlotColours:
    """The plot colours of napari theme ``theme_id`` (default: napari's setting)."""
    from napari.settings import get_settings
    from napari.utils.theme import get_theme

    theme = get_theme(theme_id or get_settings().appearance.theme)
    return PlotColours(
        background=theme.background.as_hex(),
        text=theme.text.as_hex(),
        axes=theme.icon.as_hex(),
        muted=theme.highlight.as_hex(),
    )


def follow_theme(viewer: napari.Viewer, *plots: _Plot | LossPlot) -> None:
    """Colour ``plots`` like ``viewer``'s theme, now and whenever it changes."""
    for plot in plots:
        plot.set_theme(viewer.theme)
        viewer.events.theme.connect(plot._on_theme)


class _Plot(FigureCanvasQTAgg):
    """A small figure with one axes, theme colours and a throttled redraw."""

    def __init__(self) -> None:
        super().__init__(Figure(figsize=(4, 1.6), tight_layout=True))
        self.setMinimumHeight(PLOT_HEIGHT)
        self.setMaximumHeight(int(PLOT_HEIGHT * 1.5))
        self.colours = theme_colours()
        self.figure.set_facecolor(self.colours.background)
        self.ax = self.figure.add_subplot()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.draw_idle)

    def set_theme(self, theme_id: str) -> None:
        """Recolour the plot for napari theme ``theme_id``."""
        self.colours = theme_colours(theme_id)
        self.figure.set_facecolor(self.colours.background)
        self.request_draw()

    def _on_theme(self, event: Any) -> None:
        self.set_theme(event.value)

    def request_draw(self) -> None:
        """Redraw soon, at most once per :data:`REDRAW_MS`."""
        self._style_axes()
        if not self._timer.isActive():
            self._timer.start()

    def _style_axes(self) -> None:
        """Theme colours for the axes, its labels, legend and notes."""
        c = self.colours
        self.ax.set_facecolor(c.background)
        for spine in self.ax.spines.values():
            spine.set_color(c.axes)
        self.ax.tick_params(colors=c.axes, labelcolor=c.text, labelsize=8)
        for label in (self.ax.xaxis.label, self.ax.yaxis.label):
            label.set_color(c.text)
        for note in self.ax.texts:
            note.set_color(c.muted)
        legend = self.ax.get_legend()
        if legend is not None:
            legend.get_frame().set_facecolor(c.background)
            legend.get_frame().set_edgecolor(c.axes)
            for text in legend.get_texts():
                text.set_color(c.text)

    def _reset_axes(self, xlabel: str, ylabel: str) -> None:
        self.ax.clear()
        self.ax.set_xlabel(xlabel, fontsize=8)
        self.ax.set_ylabel(ylabel, fontsize=8)

    def _note(self, text: str) -> None:
        """A grey note in the middle of the axes (e.g. when there is no data)."""
        self.ax.text(
            0.5, 0.5, text, ha="center", va="center", transform=self.ax.transAxes
        )


class LossPlot(QWidget):
    """The smoothed loss of a running pretraining or training job.

    Painted with ``QPainter`` rather than matplotlib: a new point costs about
    a millisecond on the GUI thread, where a matplotlib redraw costs 30 ms,
    and over 100 ms when a job keeps the CPU busy.
    """

    def __init__(self) -> None:
        super().__init__()
        self.setMinimumHeight(90)
        self.setMaximumHeight(PLOT_HEIGHT)
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.total = 1
        self.colours = theme_colours()
        self.setToolTip("Smoothed training loss (lower is better).")

    def set_theme(self, theme_id: str) -> None:
        """Repaint in the colours of napari theme ``theme_id``."""
        self.colours = theme_colours(theme_id)
        self.update()

    def _on_theme(self, event: Any) -> None:
        self.set_theme(event.value)

    def reset(self) -> None:
        """Start a new curve."""
        self.steps, self.losses, self.total = [], [], 1
        self.update()

    def add(self, event: Progress) -> None:
        """Append the loss of one progress event (ignored when it has none)."""
        if event.loss is None:
            return
        self.steps.append(event.step)
        self.losses.append(event.loss)
        self.total = max(event.total, event.step, 1)
        self.update()

    def points(self) -> list[tuple[float, float]]:
        """The curve in widget pixels."""
        plot = self._plot_rect()
        top = max(self.losses, default=1.0) * 1.1 or 1.0
        return [
            (
                plot.left() + plot.width() * s / self.total,
                plot.bottom() - plot.height() * max(0.0, v) / top,
            )
            for s, v in zip(self.steps, self.losses, strict=True)
        ]

    def _plot_rect(self) -> QRectF:
        return QRectF(self.rect()).adjusted(46, 8, -8, -20)

    def paintEvent(self, event: Any) -> None:  # noqa: N802 (Qt override)
        """Axes, scale labels and the curve."""
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor(self.colours.background))
        plot = self._plot_rect()
        painter.setPen(QPen(QColor(self.colours.text), 1))
        if not self.steps:
            painter.drawText(
                QRectF(self.rect()),
                Qt.AlignmentFlag.AlignCenter,
                "The loss is plotted here while the job runs.",
            )
            painter.end()
            return
        painter.drawLine(plot.bottomLeft(), plot.topLeft())
        painter.drawLine(plot.bottomLeft(), plot.bottomRight())
        top = max(self.losses) * 1.1
        align = Qt.AlignmentFlag
        for y, value in ((plot.top(), top), (plot.bottom(), 0.0)):
            box = QRectF(0, y - 8, plot.left() - 4, 16)
            painter.drawText(box, align.AlignRight | align.AlignVCenter, f"{value:.3g}")
        below = QRectF(plot.left(), plot.bottom() + 2, plot.width(), 16)
        painter.drawText(below, align.AlignLeft, "loss")
        last = self.steps[-1] if self.steps else 0
        painter.drawText(below, align.AlignRight, f"step {last}/{self.total}")
        if len(self.steps) > 1:
            painter.setPen(QPen(QColor(LOSS_COLOUR), 1.5))
            painter.drawPolyline(QPolygonF([QPointF(x, y) for x, y in self.points()]))
        painter.end()


class ProfilePlot(_Plot):
    """Acquisition score along the slice axis, picks and labelled slices marked.

    The cursor (the slice shown in the viewer) is blitted over a cached
    background, so scrolling through slices does not redraw the plot.

    Signals
    -------
    slice_clicked(int)
        The user clicked the plot at this slice.
    """

    slice_clicked = Signal(int)

    def __init__(self) -> None:
        super().__init__()
        self._background: Any = None
        self.clear("suggest slices to see their scores")
        self.mpl_connect("button_press_event", self._on_click)
        self.mpl_connect("draw_event", self._on_draw)

    def clear(self, note: str) -> None:
        """No scores: empty axes with ``note``."""
        self._reset_axes("slice", "score")
        self._note(note)
        self.cursor = self.ax.axvline(0, color=CURSOR_COLOUR, lw=1, animated=True)
        self._background = None
        self.request_draw()

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
        self.ax.plot(index[order], scores[order], color=LOSS_COLOUR, lw=1)
        position = {int(s): i for i, s in enumerate(index)}
        hits = [position[p] for p in picks if p in position]
        self.ax.plot(index[hits], scores[hits], "o", color=PICK_COLOUR, ms=5)
        for s in labelled:
            self.ax.axvline(s, color=DONE_COLOUR, lw=0.8, alpha=0.6)
        self.cursor = self.ax.axvline(current, color=CURSOR_COLOUR, lw=1, animated=True)
        self._background = None
        self.request_draw()

    def set_current(self, index: int) -> None:
        """Move the cursor line to slice ``index``."""
        if self.cursor.get_xdata()[0] == index:
            return
        self.cursor.set_xdata([index, index])
        if self._background is None or self._timer.isActive():
            self.request_draw()
            return
        self.restore_region(self._background)
        self.ax.draw_artist(self.cursor)
        self.blit(self.ax.bbox)

    def _on_draw(self, event: Any) -> None:
        self._background = self.copy_from_bbox(self.ax.bbox)
        self.ax.draw_artist(self.cursor)

    def _on_click(self, event: Any) -> None:
        if event.inaxes is self.ax and event.xdata is not None:
            self.slice_clicked.emit(round(event.xdata))


class LearningCurvePlot(_Plot):
    """Validation scores (or the final training loss) against labelled slices."""

    def __init__(self) -> None:
        super().__init__()
        self.series: dict[str, list[float]] = {}
        self.rows: list[dict[str, Any]] | None = None
        self.show_curve([])

    def show_curve(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Plot one point per cycle; ``rows`` as from ``learning_curve(session)``
        (``n_labelled`` and the cycle's metrics, e.g. ``miou``, ``final_loss``)."""
        if list(rows) == self.rows:
            return  # unchanged: no redraw
        self.rows = [dict(r) for r in rows]
        x = [int(r["n_labelled"]) for r in rows]
        metrics = [{k: v for k, v in r.items() if k not in _NOT_METRICS} for r in rows]
        keys = [k for k in ("miou", *sorted(_iou_keys(metrics))) if _has(metrics, k)]
        if not keys and _has(metrics, "final_loss"):
            keys = ["final_loss"]
        self._reset_axes("labelled slices", "loss" if keys == ["final_loss"] else "IoU")
        self.ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
        if len(set(x)) == 1:  # one cycle: a whole-number axis around its point
            self.ax.set_xlim(x[0] - 1, x[0] + 1)
        self.series = {k: [float(m.get(k, np.nan)) for m in metrics] for k in keys}
        for key, values in self.series.items():
            self.ax.plot(x, values, "o-", ms=4, label=key)
        if len(self.series) > 1:  # beside the axes, never over a point
            self.ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        if not rows:
            self._note("no trained cycle yet")
        self.request_draw()


class RatioHistogram(_Plot):
    """How many bumps have each void ratio, with the pass/fail threshold."""

    def __init__(self) -> None:
        super().__init__()
        self.show_ratios([], None)

    def show_ratios(self, ratios: Sequence[float], threshold: float | None) -> None:
        """Histogram of ``ratios`` (none: a note) and the ``threshold`` line."""
        self._reset_axes("void ratio", "bumps")
        if threshold is None:
            self._note("measure a mask to see its void ratios")
        else:
            upper = max([threshold, *ratios]) * 1.1 or 1.0
            self.ax.hist(ratios, bins=20, range=(0.0, upper), color=PASS_COLOUR)
            self.ax.axvline(
                threshold, color=FAIL_COLOUR, linestyle="--", label="threshold"
            )
        self.request_draw()


_NOT_METRICS = ("cycle", "strategy", "n_labelled")


def _iou_keys(metrics: Sequence[Mapping[str, Any]]) -> set[str]:
    return {k for m in metrics for k in m if k.startswith("iou/")}


def _has(metrics: Sequence[Mapping[str, Any]], key: str) -> bool:
    return any(isinstance(m.get(key), int | float) for m in metrics)
