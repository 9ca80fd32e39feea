"""The Start / Cancel / progress / ETA strip each section of the dock shows.

:class:`JobControls` starts its section's job on the dock's
:class:`~napari_xrm_al.widgets._jobs.JobRunner` and shows its progress; its
status line tells how the last job ended ("Done.", "Cancelled." or the error)
until the next starts.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_xrm_al.core.events import Progress
from napari_xrm_al.widgets._jobs import JobRunner, error_message, format_eta


class JobControls(QWidget):
    """Start / Cancel buttons, a progress bar and an ETA line for one section.

    Parameters
    ----------
    runner
        The dock's job runner; while it runs any job, Start is disabled.
    start_text
        Label of the Start button.
    """

    def __init__(self, runner: JobRunner, start_text: str) -> None:
        super().__init__()
        self.runner = runner
        self.running_here = False
        self.start_button = QPushButton(start_text)
        self.cancel_button = QPushButton("Cancel", enabled=False)
        self.cancel_button.setToolTip("Stop at the next step (within about a second).")
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self._on_progress_extra: Callable[[Progress], Any] | None = None
        self._on_end_extra: Callable[[str], Any] | None = None
        self._error = ""
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        self.cancel_button.clicked.connect(runner.cancel)
        runner.busy_changed.connect(self._on_busy)

    def run(
        self,
        name: str,
        gen: Generator[Progress, None, Any],
        *,
        on_done: Callable[[Any], Any] | None = None,
        on_progress: Callable[[Progress], Any] | None = None,
        on_end: Callable[[str], Any] | None = None,
    ) -> Any:
        """Start ``gen`` on the runner, shown in this strip; the worker or None."""
        self._on_progress_extra = on_progress
        self._on_end_extra = on_end
        self._error = ""
        worker = self.runner.start(
            name,
            gen,
            on_progress=self.show_progress,
            on_done=on_done,
            on_error=self._on_error,
            on_end=self._on_end,
        )
        if worker is not None:
            self.running_here = True
            self.cancel_button.setEnabled(True)
            self.bar.setRange(0, 0)
            self.status.setText(f"{name}: starting…")
        return worker

    def show_progress(self, event: Progress) -> None:
        """Show one progress event."""
        self.bar.setRange(0, max(1, event.total))
        self.bar.setValue(min(event.step, event.total))
        parts = [f"{event.step}/{event.total}"]
        if event.loss is not None:
            parts.append(f"loss {event.loss:.3f}")
        if event.message:
            parts.append(event.message)
        if event.eta_seconds is not None:
            parts.append(format_eta(event.eta_seconds))
        self.status.setText(" · ".join(parts))
        if self._on_progress_extra is not None:
            self._on_progress_extra(event)

    def _on_error(self, exc: BaseException) -> None:
        self._error = error_message(self.runner.name or "The job", exc)

    def _on_end(self, outcome: str) -> None:
        self.running_here = False
        self.cancel_button.setEnabled(False)
        if self.bar.maximum() == 0:
            self.bar.setRange(0, 1)
        if outcome == "done":
            self.bar.setValue(self.bar.maximum())
        texts = {"done": "Done.", "cancelled": "Cancelled.", "failed": self._error}
        self.status.setText(texts.get(outcome, outcome))
        if self._on_end_extra is not None:
            self._on_end_extra(outcome)

    def _on_busy(self, busy: bool) -> None:
        self.start_button.setEnabled(not busy)
        if not busy:
            self.cancel_button.setEnabled(False)
