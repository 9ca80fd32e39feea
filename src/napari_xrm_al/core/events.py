"""Progress events yielded by every long-running core generator.

Long work (pretraining, training, prediction, ranking) is written as a plain
generator that yields :class:`Progress` at least every half second or so and
*returns* its result (``StopIteration.value``). A caller stops the work by not
resuming the generator (``gen.close()``); generators leave nothing half-written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Progress:
    """One progress report.

    Parameters
    ----------
    stage
        What is running: ``'pretrain'``, ``'train'``, ``'predict'``, ``'rank'``...
    step
        1-based step number.
    total
        Expected number of steps (may shrink when a time budget ends the work).
    loss
        Current (smoothed) training loss, when there is one.
    eta_seconds
        Estimated time left.
    metrics
        Optional named figures, e.g. validation ``{'miou': .., 'iou/void': ..}``.
    message
        Short human-readable note.
    """

    stage: str
    step: int
    total: int
    loss: float | None = None
    eta_seconds: float | None = None
    metrics: dict[str, float] | None = None
    message: str = ""

    def describe(self) -> str:
        """One line for logs and the command line."""
        parts = [f"{self.stage} {self.step}/{self.total}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.metrics:
            parts.extend(f"{k} {v:.3f}" for k, v in self.metrics.items())
        if self.eta_seconds is not None:
            parts.append(f"eta {self.eta_seconds:.0f}s")
        if self.message:
            parts.append(self.message)
        return ", ".join(parts)


def run_to_end(
    gen: Generator[Progress, None, R],
    on_progress: Callable[[Progress], None] | None = None,
) -> R:
    """Drain ``gen``, passing each event to ``on_progress``; return its result."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(event)


def one_of_parts(
    job: Generator[Progress, None, R],
    sizes: Sequence[int],
    part: int,
    name: str,
) -> Generator[Progress, None, R]:
    """The events of ``job``, part ``part`` (0-based) of a run of parts of
    ``sizes`` (e.g. slices), counted over the whole run: one progress bar
    and one ETA; each message starts with ``name``."""
    before, whole = sum(sizes[:part]), sum(sizes)
    size = sizes[part]
    t0 = time.perf_counter()
    try:
        while True:
            try:
                event = next(job)
            except StopIteration as stop:
                return stop.value
            done = event.step / max(1, event.total) * size
            eta = event.eta_seconds
            if eta is not None and done > 0:
                eta += (whole - before - size) * (time.perf_counter() - t0) / done
            yield replace(
                event,
                step=round(before + done),
                total=whole,
                eta_seconds=eta,
                message=f"{name} ({part + 1}/{len(sizes)}) {event.message}".rstrip(),
            )
    finally:
        job.close()
