"""Options of ``pretrain`` and ``train`` built from the config fields' settings
(``commands/_settings.py``): names, types, choices, help, range checks."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

import pytest

from napari_xrm_al.cli import build_parser
from napari_xrm_al.commands._engine import (
    RUN_SETTINGS,
    TRAIN_SETTINGS,
    model_overrides,
)
from napari_xrm_al.commands._settings import (
    add_setting_options,
    flag,
    setting_overrides,
)
from napari_xrm_al.core.model.network import DEFAULT_FEATURES, PRESETS
from napari_xrm_al.core.settings import setting, settings, with_settings
from napari_xrm_al.core.training.configs import PretrainConfig, TrainConfig
from napari_xrm_al.errors import XrmError


@dataclass(frozen=True)
class Toy:
    """A config whose fields the tests describe."""

    batch_size: int = setting(
        16, label="Batch", help="Crops per step (10 %).", minimum=1, maximum=64
    )
    limit_s: float | None = setting(
        None,
        label="Limit",
        help="Stop after ``limit_s``, see :mod:`~a.b.timing`.",
        minimum=0,
        special="no limit",
        special_on_cli=True,
        flag="--limit",
    )
    mode: str = setting("a", label="Mode", help="NT-Xent mode.", choices=("a", "b"))


def toy_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy")
    add_setting_options(parser, Toy, ("batch_size", "limit_s", "mode"))
    return parser


def test_options_are_named_typed_and_helped_from_the_settings():
    parser = toy_parser()
    help_text = " ".join(parser.format_help().split())
    assert "--batch-size BATCH_SIZE crops per step (10 %) (default: 16)" in help_text
    assert "--limit LIMIT stop after limit_s, see timing (0 = no limit;" in help_text
    assert "default: no limit)" in help_text
    assert "--mode {a,b} NT-Xent mode (default: a)" in help_text
    args = parser.parse_args(["--batch-size", "4", "--limit", "2.5"])
    assert (args.batch_size, args.limit_s, args.mode) == (4, 2.5, None)
    given = setting_overrides(args, Toy, ("batch_size", "limit_s", "mode"))
    assert given == {"batch_size": 4, "limit_s": 2.5}  # left out: the defaults stay
    assert replace(Toy(), **given) == Toy(batch_size=4, limit_s=2.5)
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "c"])


def test_the_special_value_and_the_range():
    parser = toy_parser()
    names = ("batch_size", "limit_s")
    args = parser.parse_args(["--limit", "0"])
    assert setting_overrides(args, Toy, names) == {"limit_s": None}
    for argv, message in [
        (["--batch-size", "65"], "--batch-size must be between 1 and 64, got 65."),
        (["--limit", "-1"], "--limit must be above 0, got -1.0."),
    ]:
        with pytest.raises(XrmError, match=message.replace(".", r"\.")):
            setting_overrides(parser.parse_args(argv), Toy, names)


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        (
            "pretrain",
            ["--preset", "--arch", "--context", "--steps", "--time-budget"]
            + ["--batch-size"],
        ),
        (
            "train",
            ["--preset", "--arch", "--context", "--steps", "--time-budget", "--loss"]
            + ["--rare-paste", "--ensemble", "--ema-decay", "--precision"]
            + ["--augment-histogram-shift", "--augment-noise-std"],
        ),
    ],
)
def test_pretrain_and_train_keep_their_options(command, flags, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    options = {word.strip("[],") for word in capsys.readouterr().out.split()}
    assert set(flags) <= options


def test_pretrain_and_train_options_set_their_configs():
    args = build_parser().parse_args(
        ["pretrain", "--image", "i", "--out", "o", "--time-budget", "0"]
        + ["--arch", "basicunet"]
    )
    assert setting_overrides(args, PretrainConfig, RUN_SETTINGS) == {
        "time_budget_s": None
    }
    assert model_overrides(args, PretrainConfig) == {
        "arch": "basicunet",
        "features": DEFAULT_FEATURES["basicunet"],
    }
    args = build_parser().parse_args(
        ["train", "--image", "i", "--labels", "l", "--slices", "3", "--out", "o"]
        + ["--preset", "medium", "--steps", "7"]
    )
    assert setting_overrides(args, TrainConfig, RUN_SETTINGS) == {"steps": 7}
    assert model_overrides(args, TrainConfig) == {"features": PRESETS["medium"]}


def test_train_sets_augmentation_strengths_of_the_nested_config(capsys):
    argv = ["train", "--image", "i", "--labels", "l", "--slices", "3", "--out", "o"]
    args = build_parser().parse_args(
        [*argv, "--augment-histogram-shift", "0.25", "--augment-blur-prob", "0"]
    )
    names = ("augment.histogram_shift", "augment.blur_prob", "augment.noise_std")
    given = setting_overrides(args, TrainConfig, names)
    assert given == {"augment.histogram_shift": 0.25, "augment.blur_prob": 0.0}
    config = with_settings(TrainConfig(), given)
    assert (config.augment.histogram_shift, config.augment.blur_prob) == (0.25, 0.0)
    assert config.augment.noise_std == TrainConfig().augment.noise_std
    bad = build_parser().parse_args([*argv, "--augment-histogram-shift", "0.9"])
    with pytest.raises(XrmError, match="--augment-histogram-shift must be between"):
        setting_overrides(bad, TrainConfig, names)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--augment-histogram-shift AUGMENT_HISTOGRAM_SHIFT largest move" in help_text


@pytest.mark.parametrize("action", ["pretrain", "train"])
def test_session_actions_take_the_same_run_options(action):
    config_cls = {"pretrain": PretrainConfig, "train": TrainConfig}[action]
    parse = build_parser().parse_args
    args = parse(["session", action, "p.xrmal", "--steps", "9", "--time-budget", "0"])
    given = setting_overrides(args, config_cls, RUN_SETTINGS)
    assert given == {"steps": 9, "time_budget_s": None}  # 0 = no limit, as elsewhere
    args = parse(["session", action, "p.xrmal", "--steps", "0"])
    with pytest.raises(XrmError, match="--steps must be at least 1, got 0"):
        setting_overrides(args, config_cls, RUN_SETTINGS)


def test_session_train_takes_the_options_of_train(capsys):
    for command in (["train"], ["session", "train"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args([*command, "--help"])
        options = {word.strip("[],") for word in capsys.readouterr().out.split()}
        assert {flag(name, s) for name, s in settings(TrainConfig).items()
                if name in TRAIN_SETTINGS} <= options  # fmt: skip
