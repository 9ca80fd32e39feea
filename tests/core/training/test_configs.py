"""The settings of training and pretraining: every field described, defaults valid."""

from __future__ import annotations

from dataclasses import fields

import pytest

from napari_xrm_al.core.settings import setting_value, settings
from napari_xrm_al.core.training.augment import AugmentConfig
from napari_xrm_al.core.training.configs import PretrainConfig, TrainConfig


@pytest.mark.parametrize("config_cls", [TrainConfig, PretrainConfig])
def test_every_field_is_described_and_its_default_is_allowed(config_cls):
    described = settings(config_cls)
    assert [name for name in described if "." not in name] == [
        f.name for f in fields(config_cls)
    ]
    assert [name for name in described if "." in name] == [
        f"augment.{name}" for name in settings(AugmentConfig)
    ]
    defaults = config_cls()
    for name, spec in described.items():
        assert spec.label and spec.help.endswith("."), name
        value = setting_value(defaults, name)
        if spec.choices:
            assert value in spec.choices, name
        elif value is None:
            assert spec.special is not None, name
        elif isinstance(value, int | float):
            spec.check(value, name)


def test_shared_settings_are_described_once():
    train, pre = settings(TrainConfig), settings(PretrainConfig)
    for name in ("time_budget_s", "lr", "context", "features"):
        assert train[name] is pre[name]
    assert train["steps"].special == "auto" and pre["steps"].special is None
