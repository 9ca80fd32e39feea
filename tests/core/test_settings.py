"""Settings described once in a config field's metadata: storing, reading, range checks."""

from __future__ import annotations

from dataclasses import dataclass, fields

import pytest

from napari_xrm_al.core.settings import (
    Setting,
    setting,
    setting_type,
    setting_value,
    settings,
    with_settings,
)
from napari_xrm_al.errors import XrmError

SHARED = Setting(label="Shared", help="One description, two configs.", minimum=0)


@dataclass(frozen=True)
class Config:
    size: int = setting(8, label="Size", help="Pixels.", minimum=1, maximum=64)
    plain: int = 3
    widths: tuple[int, ...] = setting(
        default_factory=lambda: (1, 2), label="Widths", help="Feature widths."
    )
    shared: float = SHARED.field(0.5)


@dataclass(frozen=True)
class Inner:
    strength: float = setting(0.1, label="Strength", help="How strong.", minimum=0)
    hidden: bool = True


@dataclass(frozen=True)
class Outer:
    steps: int | None = setting(None, label="Steps", help="Steps.", minimum=0)
    inner: Inner = setting(default_factory=Inner, label="Inner", help="Nested.")
    after: int = setting(2, label="After", help="Last.", minimum=0)


def test_setting_is_a_field_whose_metadata_reads_back():
    assert Config() == Config(size=8, plain=3, widths=(1, 2), shared=0.5)
    described = settings(Config)
    assert list(described) == ["size", "widths", "shared"]  # field order, no plain
    assert described["size"] == Setting(
        label="Size", help="Pixels.", minimum=1, maximum=64
    )
    assert described["shared"] is SHARED
    assert fields(Config)[1].metadata == {}


@pytest.mark.parametrize(
    ("spec", "value", "message"),
    [
        (Setting("S", "h", minimum=1, maximum=8), 0, "--n must be at least 1, got 0."),
        (Setting("S", "h", minimum=0, maximum=1), 2.0, "between 0 and 1, got 2.0."),
        (
            Setting("S", "h", minimum=0, maximum=1, exclusive_maximum=True),
            1.0,
            "--n must be in [0, 1), got 1.0.",
        ),
        (Setting("S", "h", minimum=0, special="auto"), 0, "at least 1, got 0."),
        (Setting("S", "h", minimum=0, special="none"), -2.5, "above 0, got -2.5."),
    ],
)
def test_check_refuses_values_out_of_range_in_one_line(spec, value, message):
    with pytest.raises(XrmError) as info:
        spec.check(value, "--n")
    assert str(info.value).endswith(message)


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        (Setting("S", "h", minimum=1, maximum=8), 8),
        (Setting("S", "h", minimum=0, maximum=1, exclusive_maximum=True), 0.999),
        (Setting("S", "h", minimum=0, special="auto"), 1),
        (Setting("S", "h"), -1e9),
    ],
)
def test_check_accepts_values_in_range(spec, value):
    spec.check(value, "--n")


def test_a_nested_configs_settings_follow_it_under_dotted_names():
    described = settings(Outer)
    assert list(described) == ["steps", "inner", "inner.strength", "after"]
    assert described["inner.strength"].label == "Strength"
    assert setting_value(Outer(), "inner.strength") == 0.1
    assert setting_type(Outer, "inner.strength") is float
    assert setting_type(Outer, "steps") == int | None


def test_with_settings_replaces_nested_values_and_keeps_the_others():
    base = Outer(inner=Inner(hidden=False))
    changed = with_settings(base, {"inner.strength": 0.3, "after": 5})
    assert changed == Outer(inner=Inner(strength=0.3, hidden=False), after=5)
    assert base.inner.strength == 0.1  # frozen: a new config, the old one kept
    # A whole nested config and one of its settings: the setting wins on top.
    both = with_settings(base, {"inner": Inner(strength=0.5), "inner.strength": 0.7})
    assert both.inner == Inner(strength=0.7)
    with pytest.raises(TypeError):
        with_settings(base, {"inner.nonexistent": 1})
