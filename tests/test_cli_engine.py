"""The ``pretrain`` and ``train`` subcommands on a tiny synthetic scan."""

from __future__ import annotations

import pytest
import torch

from napari_xrm_al.cli import main
from napari_xrm_al.core.inference.segmenter import Segmenter
from napari_xrm_al.core.model.checkpoint import load_checkpoint
from napari_xrm_al.core.synthetic.sample import make_hbm_sample, write_sample
from napari_xrm_al.core.training.configs import PretrainConfig


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("scan")
    return write_sample(folder, make_hbm_sample(seed=0, shape=(16, 64, 64)))


FAST = ["--threads", "1", "--quiet", "--steps", "2"]


def train_args(scan, out, *options: str) -> list[str]:
    """``train`` on the scan's dense labels writing ``out``, with ``options``."""
    return [
        "train",
        "--image",
        str(scan["image"]),
        "--labels",
        str(scan["labels"]),
        "--dense-labels",
        "--out",
        str(out),
        *options,
    ]


def test_pretrain_then_train(tmp_path, scan, capsys):
    enc = tmp_path / "enc.pt"
    assert (
        main(
            [
                "pretrain",
                "--image",
                str(scan["image"]),
                "--out",
                str(enc),
                "--batch-size",
                "4",
                *FAST,
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    encoder = load_checkpoint(enc, kind="encoder")
    assert encoder.provenance["image_shape"] == [16, 64, 64]
    assert encoder.provenance["image_fingerprint"].startswith("sha256:")

    model_path = tmp_path / "model.pt"
    args = train_args(
        scan,
        model_path,
        "--slices",
        "3,8-9",
        "--val-slices",
        "12",
        "--init",
        str(enc),
        "--rare-paste",
        "0.5",
        "--precision",
        "float32",
        "--ensemble",
        "2",
        "--ema-decay",
        "0.9",
        "--augment-histogram-shift",
        "0.3",
        *FAST,
    )
    assert main(args) == 0
    assert "best validation mIoU" in capsys.readouterr().out
    segmenter = Segmenter.from_checkpoint(model_path)
    ckpt = segmenter.checkpoint
    assert ckpt.classes.names == ("background", "copper", "solder", "void")
    assert ckpt.classes.rare == ("void",)
    assert (
        ckpt.history["slices"] == [["z", 3], ["z", 8], ["z", 9]]
        and ckpt.history["init_kind"] == "encoder"
    )
    assert ckpt.provenance["labels_path"] == str(scan["labels"])
    assert ckpt.model_config.features == encoder.model_config.features
    assert ckpt.history["config"]["rare_paste"] == 0.5
    assert ckpt.model_config.members == 2 and len(segmenter.net.members) == 2
    assert ckpt.history["config"]["ema_decay"] == 0.9
    augment = ckpt.history["config"]["augment"]
    assert augment["histogram_shift"] == 0.3 and augment["blur_prob"] == 0.25
    assert ckpt.history["precision"] == "float32"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        # classes.json beside the labels holds their class table
        (["--classes", "a,b", "--slices", "9"], "classes.json: has the classes"),
        (["--slices", "3,x"], "--slices must be"),
        (["--init", "missing.pt"], "missing.pt: does not exist"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--rare-paste", "2"], "--rare-paste must be between 0 and 1"),
        (["--ensemble", "0"], "--ensemble must be at least 1"),
        (["--ema-decay", "1"], "--ema-decay must be in [0, 1)"),
    ],
)
def test_train_errors_are_one_line(tmp_path, scan, capsys, extra, message):
    quick = ["--threads", "1", "--quiet", "--steps", "1"]
    args = train_args(scan, tmp_path / "m.pt", "--slices", "3", *quick, *extra)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("napari-xrm-al: error:") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.pt").exists()


def test_bad_checkpoint_as_init(tmp_path, scan, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    args = train_args(scan, tmp_path / "m.pt", "--slices", "3", "--init", str(bad))
    assert main([*args, *FAST]) == 2
    assert (
        "bad.pt: is not a readable napari-xrm-al checkpoint" in capsys.readouterr().err
    )


def test_pretrain_help_gives_its_own_step_default(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    steps = PretrainConfig().steps
    assert f"optimiser steps (default: {steps})" in help_text
    assert "automatic" not in help_text
