"""Optimiser, step budgets, learning-rate schedule and ETA shared by pretraining and training."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import torch


def adamw(
    params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float
) -> torch.optim.AdamW:
    """AdamW with the fused kernel (one pass over all parameters; on a CPU
    about 4× faster than the per-tensor loop, 5 ms a step saved here)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)


def lr_factor(progress: float, warmup: float) -> float:
    """Learning-rate multiplier at ``progress`` ∈ [0, 1]: linear warm-up from
    10 %, then cosine decay to 1 %."""
    if progress < warmup:
        return 0.1 + 0.9 * progress / warmup
    t = min(1.0, (progress - warmup) / max(1e-9, 1.0 - warmup))
    return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * t))


class StepClock:
    """Counts steps against a step total and an optional time budget.

    ``progress`` is whichever of the two is further along, so a time-limited
    run still completes its learning-rate schedule.
    """

    def __init__(self, total: int, budget_s: float | None = None) -> None:
        self.total = max(1, int(total))
        self.budget_s = budget_s
        self.start = time.perf_counter()
        self.step = 0
        self._last = self.start
        self._step_s: float | None = None

    @property
    def elapsed(self) -> float:
        """Seconds since the clock started."""
        return time.perf_counter() - self.start

    @property
    def done(self) -> bool:
        """Whether the step total or the time budget is reached."""
        return self.step >= self.total or self.out_of_time

    @property
    def out_of_time(self) -> bool:
        """Whether the time budget is spent."""
        return self.budget_s is not None and self.elapsed >= self.budget_s

    @property
    def progress(self) -> float:
        """Fraction of the run done, by steps or by time."""
        p = self.step / self.total
        if self.budget_s:
            p = max(p, self.elapsed / self.budget_s)
        return min(1.0, p)

    def set_lr(
        self, optimiser: torch.optim.Optimizer, peak: float, warmup: float
    ) -> None:
        """Set every parameter group's learning rate for the current progress."""
        factor = lr_factor(self.progress, warmup)
        for group in optimiser.param_groups:
            group["lr"] = peak * factor

    def tick(self) -> None:
        """Mark the end of a step."""
        now = time.perf_counter()
        dt = now - self._last
        self._last = now
        self._step_s = dt if self._step_s is None else 0.9 * self._step_s + 0.1 * dt
        self.step += 1

    def restart_step_timer(self) -> None:
        """Exclude time spent outside the steps (e.g. validation) from the step time."""
        self._last = time.perf_counter()

    @property
    def eta(self) -> float | None:
        """Estimated seconds left."""
        if self._step_s is None:
            return None
        left = (self.total - self.step) * self._step_s
        if self.budget_s is not None:
            left = min(left, max(0.0, self.budget_s - self.elapsed))
        return left

    @property
    def expected_total(self) -> int:
        """Steps expected by the end (fewer than ``total`` when time runs short)."""
        if self._step_s is None or self.budget_s is None:
            return self.total
        fits = self.step + int(max(0.0, self.budget_s - self.elapsed) / self._step_s)
        return max(self.step, min(self.total, fits))


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of ``module``'s state dict."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
