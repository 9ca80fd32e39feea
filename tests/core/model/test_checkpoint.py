from __future__ import annotations

import ast
import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.model.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    Checkpoint,
    load_checkpoint,
    make_provenance,
    save_checkpoint,
)
from napari_xrm_al.errors import InputError, XrmError


def test_round_trip_keeps_everything(tmp_path, segmenter_ckpt):
    path = save_checkpoint(tmp_path / "model.pt", segmenter_ckpt)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temp left
    ckpt = load_checkpoint(path)
    assert ckpt.classes == segmenter_ckpt.classes
    assert ckpt.normalisation == segmenter_ckpt.normalisation
    assert ckpt.model_config == segmenter_ckpt.model_config
    assert ckpt.axis == "y" and ckpt.provenance["value"] == 1.5
    for key, weights in segmenter_ckpt.state_dict.items():
        torch.testing.assert_close(ckpt.state_dict[key], weights)


def test_bad_files_give_one_clear_sentence(tmp_path, segmenter_ckpt):
    good = save_checkpoint(tmp_path / "good.pt", segmenter_ckpt).read_bytes()
    cases = {
        "missing.pt": None,
        "empty.pt": b"",
        "truncated.pt": good[: len(good) // 2],
        "text.pt": b"hello, not a checkpoint",
    }
    for name, payload in cases.items():
        if payload is not None:
            (tmp_path / name).write_bytes(payload)
        with pytest.raises(InputError) as err:
            load_checkpoint(tmp_path / name)
        message = str(err.value)
        assert name in message and "\n" not in message


def _raw(tmp_path, **payload):
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path = tmp_path / "raw.pt"
    path.write_bytes(buffer.getvalue())
    return path


class RunsCodeWhenUnpickled:
    """Unpickling it creates ``marker`` (as any code a hostile file could run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, segmenter_ckpt):
    good = save_checkpoint(tmp_path / "good.pt", segmenter_ckpt)
    payload = torch.load(good, weights_only=True)
    marker = tmp_path / "code-ran"
    payload["provenance"]["note"] = RunsCodeWhenUnpickled(marker)
    hostile = tmp_path / "hostile.pt"
    torch.save(payload, hostile)
    with pytest.raises(InputError) as err:
        load_checkpoint(hostile)
    message = str(err.value)
    assert message.startswith(f"{hostile}: ") and "\n" not in message
    assert "never loaded" in message
    assert not marker.exists()


def test_every_torch_load_in_the_package_is_weights_only():
    """No ``torch.load`` anywhere may unpickle arbitrary objects: each call
    must pass ``weights_only=True`` literally (the default changed between
    PyTorch versions)."""
    package = Path(__file__).parents[3] / "src" / "napari_xrm_al"
    calls = []
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(
                "torch.load"
            ):
                flags = {k.arg: k.value for k in node.keywords}
                safe = isinstance(flags.get("weights_only"), ast.Constant) and (
                    flags["weights_only"].value is True
                )
                calls.append((f"{source.name}:{node.lineno}", safe))
    assert calls, "no torch.load found: the scan is broken"
    assert all(safe for _, safe in calls), calls


def test_foreign_and_newer_files_are_refused(tmp_path):
    with pytest.raises(InputError, match="not a napari-xrm-al checkpoint"):
        load_checkpoint(_raw(tmp_path, weights=torch.zeros(2)))
    newer = _raw(tmp_path, format=FORMAT, format_version=FORMAT_VERSION + 1)
    with pytest.raises(InputError, match="upgrade"):
        load_checkpoint(newer)
    damaged = _raw(
        tmp_path, format=FORMAT, format_version=FORMAT_VERSION, kind="encoder"
    )
    with pytest.raises(InputError, match="damaged"):
        load_checkpoint(damaged)


def test_wrong_kind_and_mismatched_classes(tmp_path, segmenter_ckpt):
    path = save_checkpoint(tmp_path / "m.pt", segmenter_ckpt)
    with pytest.raises(InputError, match="kind 'encoder'"):
        load_checkpoint(path, kind="encoder")
    ckpt = load_checkpoint(path, kind="segmenter")
    with pytest.raises(XrmError, match="do not match"):
        ckpt.check_classes(ClassTable(("background", "copper", "void", "solder")))
    with pytest.raises(XrmError, match="2 classes but the model predicts 4"):
        Checkpoint(
            "segmenter",
            segmenter_ckpt.model_config,
            {},
            segmenter_ckpt.normalisation,
            classes=ClassTable(("a", "b")),
        )


def test_provenance_describes_the_volume(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    prov = make_provenance(data, tmp_path / "scan.tif", seed=3)
    assert prov["image_shape"] == [2, 3, 4] and prov["image_dtype"] == "uint16"
    assert (
        prov["image_fingerprint"] == make_provenance(data.copy())["image_fingerprint"]
    )
    assert prov["image_fingerprint"] != make_provenance(data + 1)["image_fingerprint"]
    assert {"torch", "monai", "numpy"} <= set(prov["versions"]) and prov["seed"] == 3


@pytest.mark.parametrize(
    ("slices", "axes"),
    [
        ([], ("y",)),  # an older file or an encoder: its own axis
        ([["x", 3], ["x", 5], ["z", 1]], ("x", "z")),  # most slices first
        ([["z", 3], ["y", 5]], ("y", "z")),  # a tie: its own axis first
        ([4, ["x", 2]], ("y", "x")),  # a bare index is along its own axis
    ],
)
def test_trained_axes_follow_the_training_slices(segmenter_ckpt, slices, axes):
    ckpt = dataclasses.replace(segmenter_ckpt, history={"slices": slices})
    assert ckpt.trained_axes == axes
