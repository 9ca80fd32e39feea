"""Progress events yielded by every long-running core generator.

Long work (pretraining, training, prediction, ranking) is written as a plain
generator that yields :class:`Progress` at least every half second or so and
*returns* its result (``StopIteration.value``). A caller stops the work by not
resuming the generator (``gen.close()``); generators leave nothing half-written.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
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
