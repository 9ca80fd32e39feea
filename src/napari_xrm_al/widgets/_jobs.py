"""Running core generators on a worker thread, one job at a time.

Every long job of the plugin is a core generator that yields
:class:`~napari_xrm_al.core.events.Progress` and returns its result.
:class:`JobRunner` drives it in a napari ``thread_worker``, shows a napari
progress bar (with a cancel button in the activity dock), relays progress and
the result to GUI-thread callbacks, refuses a second job while one runs, and
turns errors into notifications. The Start / Cancel strip each section of the
dock shows is :class:`~napari_xrm_al.widgets._job_controls.JobControls`.

Cancelling sets a flag the worker checks before it resumes the generator, and
then closes the generator *on the worker thread*, so whatever the core does on
close (keeping the previous model, removing half-written outputs) never runs
on the GUI thread. The core yields at least every half second, so a cancel
lands within about a second.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

from napari.qt.threading import create_worker
from napari.utils import cancelable_progress
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import QObject, Signal

from napari_xrm_al.core.events import Progress
from napari_xrm_al.errors import XrmError, out_of_memory
from napari_xrm_al.io.output_paths import resource_error

log = logging.getLogger(__name__)

#: Shortest interval between two updates of napari's progress bar.
BAR_INTERVAL_S = 0.25


class Cancelled:
    """What a cancelled job returns instead of its result."""


CANCELLED = Cancelled()


class JobCrash(Exception):
    """Carries a ``RuntimeError`` raised by a job out of the worker.

    superqt takes a ``RuntimeError`` leaving a generator worker for a deleted
    worker and then emits neither ``errored`` nor ``finished``: the runner
    would stay busy for ever. torch reports most failures (out of memory
    included) as ``RuntimeError``, so :func:`drive` wraps them in this.
    """

    def __init__(self, error: RuntimeError) -> None:
        super().__init__(str(error))
        self.error = error


def gui_threads() -> int:
    """Compute threads for jobs run beside the GUI: all cores but one.

    The spare core keeps the event loop responsive; oversubscribing a small
    machine also makes torch slower, not faster.
    """
    return max(1, (os.cpu_count() or 2) - 1)


def preload_torch() -> None:
    """Import now what torch would otherwise import during the first job.

    The first optimiser step imports ``torch._dynamo``, which holds the GIL
    for 0.3-0.5 s: inside a job that freezes the GUI once. The dock calls this
    when it is created, while napari is loading the plugin anyway.
    """
    import torch._dynamo  # noqa: F401


def drive(
    gen: Generator[Progress, None, Any], stop: threading.Event, threads: int
) -> Generator[Progress, None, Any]:
    """Re-yield ``gen``'s progress until it returns or ``stop`` is set.

    Runs in the worker, with torch limited to ``threads`` compute threads. On
    a stop, ``gen`` is closed here (worker thread) and :data:`CANCELLED` is
    returned.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(min(threads, before))
    try:
        while True:
            if stop.is_set():
                return CANCELLED
            try:
                event = next(gen)
            except StopIteration as end:
                return end.value
            except RuntimeError as exc:
                raise JobCrash(exc) from exc
            yield event
    finally:
        gen.close()
        torch.set_num_threads(before)


def format_eta(seconds: float | None) -> str:
    """``'ETA 1 min 05 s'``; empty when unknown."""
    if seconds is None:
        return ""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"ETA {seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"ETA {minutes} min {seconds:02d} s"
    return f"ETA {minutes // 60} h {minutes % 60:02d} min"


def error_message(job: str, exc: BaseException) -> str:
    """One clear sentence for a failed job."""
    if isinstance(exc, XrmError):
        return f"{job} stopped: {exc}"
    if out_of_memory(exc):
        return (
            f"{job} ran out of memory; try a smaller batch size or crop size, or "
            "close other programs. Nothing was saved from this run."
        )
    problem = resource_error(exc)  # a full disk, a read-only or forbidden path
    if problem is not None:
        return f"{job} stopped: {problem}"
    return f"{job} failed unexpectedly ({type(exc).__name__}: {exc})."


class JobRunner(QObject):
    """Runs one core generator at a time on a napari thread worker.

    Signals
    -------
    busy_changed(bool)
        A job started (True) or ended (False).

    Parameters
    ----------
    threads
        Most torch compute threads per job; default :func:`gui_threads`.
    """

    busy_changed = Signal(bool)

    def __init__(
        self, parent: QObject | None = None, threads: int | None = None
    ) -> None:
        super().__init__(parent)
        #: Most torch compute threads a job may use.
        self.threads = threads or gui_threads()
        self.name: str | None = None
        self.worker: Any = None
        self._stop = threading.Event()
        self._bar: cancelable_progress | None = None
        self._bar_time = 0.0
        self._updating = False
        self._outcome = "failed"
        self._callbacks: dict[str, Callable[..., Any] | None] = {}

    @property
    def busy(self) -> bool:
        """Whether a job is running."""
        return self.worker is not None

    def start(
        self,
        name: str,
        gen: Generator[Progress, None, Any],
        *,
        on_progress: Callable[[Progress], Any] | None = None,
        on_done: Callable[[Any], Any] | None = None,
        on_error: Callable[[BaseException], Any] | None = None,
        on_end: Callable[[str], Any] | None = None,
    ) -> Any:
        """Run ``gen`` on a worker; returns the started worker, or None if refused.

        ``on_progress(event)``, ``on_done(result)`` and ``on_error(exc)`` run on
        the GUI thread; ``on_end(outcome)`` runs last with ``'done'``,
        ``'cancelled'`` or ``'failed'``.
        """
        if self.busy:
            gen.close()
            show_warning(
                f"{self.name} is running: wait for it or cancel it before "
                f"starting {name.lower()}."
            )
            return None
        self.name = name
        self._stop = threading.Event()
        self._callbacks = {
            "progress": on_progress,
            "done": on_done,
            "error": on_error,
            "end": on_end,
        }
        self._outcome, self._bar_time = "failed", 0.0
        self._bar = cancelable_progress(total=0, desc=name, cancel_callback=self.cancel)
        self.worker = create_worker(
            drive,
            gen,
            self._stop,
            self.threads,
            _start_thread=False,
            _ignore_errors=True,
            _connect={
                "yielded": self._on_yielded,
                "returned": self._on_returned,
                "errored": self._on_errored,
                "finished": self._on_finished,
            },
        )
        self.busy_changed.emit(True)
        self.worker.start()
        return self.worker

    def cancel(self) -> None:
        """Ask the running job to stop at its next progress report."""
        if self.busy:
            self._stop.set()

    # -- GUI-thread handlers ---------------------------------------------------
    def _on_yielded(self, event: Progress) -> None:
        callback = self._callbacks.get("progress")
        if callback is not None:
            callback(event)
        self._update_bar(event)

    def _update_bar(self, event: Progress) -> None:
        """Update napari's progress bar, at most every :data:`BAR_INTERVAL_S`.

        napari's bar calls ``processEvents`` when it changes, so later events
        (even the end of the job) can be handled inside this call: the
        callbacks above already ran, and the bar is closed only afterwards.
        """
        bar, now = self._bar, time.monotonic()
        last = event.step >= event.total
        if bar is None or self._updating:
            return
        if now - self._bar_time < BAR_INTERVAL_S and not last:
            return
        self._updating, self._bar_time = True, now
        try:
            if bar.is_canceled:  # the activity dock's cancel button
                self.cancel()
            if bar.total != event.total:
                bar.total = event.total
            bar.n = min(event.step, event.total)
            bar.set_description(f"{self.name}: {format_eta(event.eta_seconds)}")
            bar.update(0)
        finally:
            self._updating = False
            if self._bar is not bar:  # the job ended meanwhile
                bar.close()

    def _on_returned(self, result: Any) -> None:
        if isinstance(result, Cancelled):
            # No notification: the user asked for it, and a toast would outlast
            # the next run. The section's status line says "Cancelled." until
            # that run replaces it.
            self._outcome = "cancelled"
            return
        self._outcome = "done"
        callback = self._callbacks.get("done")
        if callback is not None:
            callback(result)

    def _on_errored(self, exc: BaseException) -> None:
        if isinstance(exc, JobCrash):
            exc = exc.error
        if resource_error(exc) is None and not isinstance(exc, XrmError):
            log.error("%s failed", self.name, exc_info=exc)
        show_error(error_message(self.name or "The job", exc))
        callback = self._callbacks.get("error")
        if callback is not None:
            callback(exc)

    def _on_finished(self) -> None:
        bar, self._bar = self._bar, None
        if bar is not None and not self._updating:
            bar.close()  # else closed when the interrupted update returns
        end = self._callbacks.get("end")
        self.worker, self.name, self._callbacks = None, None, {}
        self.busy_changed.emit(False)
        if end is not None:
            end(self._outcome)
