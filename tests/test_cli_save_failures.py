"""A trained model is never thrown away, and a full disk, a read-only or
forbidden folder or a lack of memory is one error line with exit status 2.

The tests run as root, whom ``chmod`` does not stop: read-only folders and full
disks are simulated by making the write itself fail with the errno the system
would give (or by a folder that is a regular file)."""

from __future__ import annotations

import errno
import re
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from napari_xrm_al.cli import main
from napari_xrm_al.core.inference.prediction_outputs import PredictionOutputs
from napari_xrm_al.core.model import checkpoint
from napari_xrm_al.core.model.checkpoint import load_checkpoint
from napari_xrm_al.core.synthetic.sample import make_hbm_sample, write_sample

SHAPE = (8, 32, 32)
QUICK = ["--threads", "1", "--quiet", "--steps", "1"]

#: errno → words of the error line.
PROBLEMS = {
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "not permitted",
}


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scan")
    return write_sample(folder, make_hbm_sample(seed=0, shape=SHAPE))


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """One thread; models kept after a failed save go below ``tmp_path``."""
    torch.set_num_threads(1)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.chdir(tmp_path)


def train_argv(scan, out) -> list[str]:
    return ["train", "--image", str(scan["image"]), "--labels", str(scan["labels"]),
            "--dense-labels", "--slices", "2", "--out", str(out), *QUICK]  # fmt: skip


def pretrain_argv(scan, out) -> list[str]:
    return ["pretrain", "--image", str(scan["image"]), "--out", str(out), *QUICK]


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-xrm-al: error:"), captured
    assert "this is a bug" not in lines[0] and "Traceback" not in captured.err
    return lines[0]


def failing_in(folder: Path, code: int, real):
    """``real(path, ...)``, except that it fails with ``code`` inside ``folder``."""

    def fail(path, *args, **kwargs):
        if folder in Path(path).parents:
            raise OSError(code, f"[Errno {code}] simulated", str(path))
        return real(path, *args, **kwargs)

    return fail


@pytest.mark.parametrize("command", ["train", "pretrain"])
def test_a_read_only_folder_is_refused_before_training(
    tmp_path, capsys, scan, monkeypatch, command
) -> None:
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        if kwargs.get("dir") == read_only:
            raise OSError(errno.EROFS, "Read-only file system", str(read_only))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    argv = (train_argv if command == "train" else pretrain_argv)(
        scan, read_only / "m.pt"
    )
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert "m.pt" in line and "read-only" in line
    assert capsys.readouterr().out == ""  # nothing trained
    assert list(read_only.iterdir()) == []


@pytest.mark.parametrize("command", ["train", "pretrain"])
def test_a_folder_that_is_a_file_is_refused_before_training(
    tmp_path, capsys, scan, command
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file")
    argv = (train_argv if command == "train" else pretrain_argv)(scan, blocker / "m.pt")
    assert main(argv) == 2
    assert "is not a folder" in one_error_line(capsys)


def test_too_little_free_space_is_refused_before_training(
    tmp_path, capsys, scan, monkeypatch
) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda _: SimpleNamespace(free=1000))
    assert main(train_argv(scan, tmp_path / "m.pt")) == 2
    line = one_error_line(capsys)
    assert "0.0 MiB free" in line and "MiB are needed" in line
    assert not (tmp_path / "m.pt").exists()


def kept_model(line: str) -> Path:
    match = re.search(r"it was kept at (\S+) instead\.$", line)
    assert match, line
    return Path(match[1])


@pytest.mark.parametrize("code", list(PROBLEMS))
@pytest.mark.parametrize("command", ["train", "pretrain"])
def test_a_failed_save_keeps_the_trained_model(
    tmp_path, capsys, scan, monkeypatch, command, code
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    monkeypatch.setattr(
        checkpoint,
        "atomic_write_bytes",
        failing_in(out_dir, code, checkpoint.atomic_write_bytes),
    )
    argv = (train_argv if command == "train" else pretrain_argv)(scan, out_dir / "m.pt")
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert str(out_dir / "m.pt") in line and PROBLEMS[code] in line
    kept = kept_model(line)
    assert kept.parent == tmp_path / "tmp" / "napari-xrm-al"
    ckpt = load_checkpoint(kept)
    assert ckpt.kind == ("segmenter" if command == "train" else "encoder")
    assert ckpt.history["steps"] == 1
    assert list(out_dir.iterdir()) == []


def test_a_model_that_cannot_be_kept_anywhere_says_so(
    tmp_path, capsys, scan, monkeypatch
) -> None:
    monkeypatch.setattr(
        checkpoint,
        "atomic_write_bytes",
        failing_in(tmp_path, errno.ENOSPC, checkpoint.atomic_write_bytes),
    )
    assert main(train_argv(scan, tmp_path / "m.pt")) == 2
    assert "it is lost" in one_error_line(capsys)


def test_a_full_disk_while_predicting_is_one_line_and_leaves_nothing(
    tmp_path, capsys, scan, monkeypatch, tiny_model_file
) -> None:
    model = tiny_model_file(tmp_path / "model.pt")
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def full(self, slices):
        chunk = next(out_dir.glob(".p.zarr.tmp-*")) / "c" / "0" / "0" / "0"
        raise OSError(errno.ENOSPC, "No space left on device", str(chunk))

    monkeypatch.setattr(PredictionOutputs, "flush", full)
    # (--intensity model: the tiny model's normalisation is far from the
    # scan's, and auto would add a note line before the error)
    argv = ["predict", "--image", str(scan["image"]), "--model", str(model),
            "--out", str(out_dir / "p.zarr"), "--threads", "1", "--quiet",
            "--intensity", "model"]  # fmt: skip
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert line.endswith(f"{out_dir / 'p.zarr'}: no space left on the device"), line
    assert list(out_dir.iterdir()) == []


def test_running_out_of_memory_is_one_line(tmp_path, capsys, scan, monkeypatch) -> None:
    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 55.9 GiB")

    monkeypatch.setattr("napari_xrm_al.commands.train.train", no_memory)
    assert main(train_argv(scan, tmp_path / "m.pt")) == 2
    assert "Out of memory" in one_error_line(capsys)
