"""The step loop shared by training and pretraining."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from napari_xrm_al.core.training.schedule import StepClock
from napari_xrm_al.core.training.step_loop import run_steps, seeded_generators

#: Learning rate, weight decay and warm-up of the toy run.
SETTINGS = SimpleNamespace(lr=0.1, weight_decay=0.0, warmup_fraction=0.1)


def toy_run(clock: StepClock, history: dict, **hooks):
    """``run_steps`` on a linear fit, whose loss falls as the weights learn."""
    _, gen = seeded_generators(0)
    x = torch.randn(64, 3, generator=gen)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    w = torch.nn.Parameter(torch.zeros(3))
    loss = lambda: ((x @ w - y) ** 2).mean()  # noqa: E731
    result = hooks.pop("result", lambda: "result")
    return run_steps("toy", SETTINGS, clock, [w], loss, result, history, **hooks)


def test_steps_lower_the_loss_and_report_each_step():
    history: dict = {}
    updates, ends = [], []
    gen = toy_run(
        StepClock(40),
        history,
        after_update=lambda: updates.append(1),
        after_step=lambda smooth, last: ends.append(last) or {"smooth": smooth},
    )
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            assert stop.value == "result"
            break
    assert [e.step for e in events] == list(range(1, 41))
    assert {e.stage for e in events} == {"toy"}
    assert events[-1].metrics == {"smooth": events[-1].loss}
    assert len(updates) == 40 and ends == [False] * 39 + [True]
    assert history["loss"][-1] < 0.1 * history["loss"][0]
    assert "stopped" not in history and history["steps"] == 40


def test_a_spent_time_budget_still_ends_with_a_last_check():
    history: dict = {}
    ends = []
    gen = toy_run(
        StepClock(40, budget_s=0.0),
        history,
        after_step=lambda smooth, last: ends.append((smooth, last)),
    )
    assert list(gen) == []
    assert ends == [(None, True)]
    assert history["loss"] == [] and history["stopped"] == "time budget"
    assert history["steps"] == 0


def test_closing_early_marks_the_run_cancelled():
    history: dict = {}
    results = []
    gen = toy_run(
        StepClock(40), history, result=lambda: results.append("built") or "result"
    )
    next(gen), next(gen)
    gen.close()
    assert history["stopped"] == "cancelled" and len(history["loss"]) == 2
    assert results == [] and "steps" not in history  # nothing to save without ``out``
