"""What a simulation runs: the strategies compared and the protocol's settings.

:func:`settings_of` is what makes two results comparable: a result is resumed
or extended only with the same settings (:mod:`~napari_xrm_al.core.al.simulate`);
:func:`read_result` reads one back and :func:`finished_runs` takes what it holds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from napari_xrm_al.core.al.acquisition import DEFAULT_MIN_DISTANCE, get_strategy
from napari_xrm_al.core.slice_refs import parse_slice_refs
from napari_xrm_al.core.training.configs import PretrainConfig, TrainConfig
from napari_xrm_al.errors import XrmError

NO_PRETRAIN = ":no-pretrain"
WITH_PRETRAIN = ":pretrain"


@dataclass(frozen=True)
class RunSpec:
    """One strategy of a simulation, with or without pretraining."""

    strategy: str
    pretrain: bool

    @property
    def label(self) -> str:
        """Name used in plots: the strategy, marked when pretraining is off."""
        return self.strategy if self.pretrain else f"{self.strategy} (no pretrain)"


def parse_run(spec: str, pretrain_default: bool) -> RunSpec:
    """``"rareness"``, ``"rareness:no-pretrain"`` or ``"entropy:pretrain"``."""
    name, _, flag = spec.partition(":")
    get_strategy(name)
    if flag and f":{flag}" not in (NO_PRETRAIN, WITH_PRETRAIN):
        raise XrmError(
            f"Strategy {spec!r}: the suffix must be {NO_PRETRAIN!r} or {WITH_PRETRAIN!r}."
        )
    pre = pretrain_default if not flag else f":{flag}" == WITH_PRETRAIN
    return RunSpec(name, pre)


@dataclass(frozen=True)
class SimulationConfig:
    """Settings of a simulation run.

    Parameters
    ----------
    runs
        Strategies to compare (see :func:`parse_run`).
    initial
        Slices labelled before the first cycle, the same for every strategy of a
        seed (see :func:`~napari_xrm_al.core.al.simulate.initial_slices`).
    start_with
        Slices among the ``initial`` ones chosen by hand, e.g. one that shows
        the rare class, as an analyst who has seen a void would paint first;
        the others are picked as usual.
    per_cycle
        Slices added per cycle.
    cycles
        Acquisition cycles after the initial training.
    axis
        Slice axis: of the held-out test block, the test prediction, the
        full-supervision reference and ``start_with``.
    axes
        Axes of the candidate slices (picked, revealed and trained on
        together); empty = ``axis`` alone.
    seeds
        Seeds; each has its own pretraining and initial slices.
    min_distance
        Minimum distance between picks and from labelled slices.
    train
        Training settings of every cycle.
    pretrain
        Pretraining settings.
    full_supervision
        Also train on every pool slice once (slow) as the reference.
    """

    runs: tuple[RunSpec, ...]
    initial: int = 2
    start_with: tuple[int, ...] = ()
    per_cycle: int = 2
    cycles: int = 3
    axis: str = "z"
    axes: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    min_distance: int = DEFAULT_MIN_DISTANCE
    train: TrainConfig = field(default_factory=TrainConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    full_supervision: bool = False


def settings_of(config: SimulationConfig) -> dict[str, Any]:
    """Everything in ``config`` that shapes a run's numbers, as plain JSON."""
    settings = {
        "initial": config.initial,
        "start_with": list(config.start_with),
        "per_cycle": config.per_cycle,
        "cycles": config.cycles,
        "axis": config.axis,
        **({"axes": list(config.axes)} if config.axes else {}),
        "min_distance": config.min_distance,
        "train": asdict(config.train),
        "pretrain": asdict(config.pretrain),
    }
    return json.loads(json.dumps(settings))  # tuples as lists, as read back


def read_result(path: str | Path) -> dict[str, Any]:
    """A ``result.json`` written by :func:`simulate`, to resume or extend.

    Raises :class:`XrmError` naming the file when it is unreadable or not a
    simulation result.
    """
    try:
        result = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise XrmError(f"Cannot read {path} as a result JSON ({exc}).") from None
    if not isinstance(result, dict) or not isinstance(result.get("runs"), list):
        raise XrmError(f"{path} is not a simulation result.")
    return result


def finished_runs(
    earlier: dict[str, Any] | None, expected: dict[str, Any], cycles: int
) -> dict[tuple[int, str, bool], dict[str, Any]]:
    """The runs of ``earlier`` that hold every cycle, by (seed, strategy, pretrain).

    Raises :class:`XrmError` naming the first difference when ``earlier`` was
    run on other data or with other settings.
    """
    if earlier is None:
        return {}
    for key, value in expected.items():
        if earlier.get(key) != value:
            raise XrmError(
                f"The earlier result was run with another {key} "
                f"({earlier.get(key)!r}, now {value!r}); it cannot be resumed."
            )
    return {
        (r["seed"], r["strategy"], r["pretrain"]): r
        for r in earlier.get("runs", [])
        if len(r.get("cycles", ())) == cycles + 1
    }


def stopped_runs(
    earlier: dict[str, Any] | None, cycles: int
) -> dict[tuple[int, str, bool], dict[str, Any]]:
    """The runs of ``earlier`` stopped part-way (some cycles recorded, not every
    one), by (seed, strategy, pretrain): a resumed simulation goes on from the
    last cycle each recorded. Check ``earlier`` with :func:`finished_runs` first."""
    if earlier is None:
        return {}
    return {
        (r["seed"], r["strategy"], r["pretrain"]): r
        for r in earlier.get("runs", [])
        if 0 < len(r.get("cycles", ())) <= cycles
    }


def recorded_codes(labelled: Sequence[int | str], axis: str) -> list[int]:
    """Slice codes of a cycle's recorded ``labelled`` (indices along ``axis``,
    or ``'y:40'`` where the candidates lie along several axes)."""
    text = ",".join(str(item) for item in labelled)
    return [ref.code for ref in parse_slice_refs(text, "labelled", axis)]
