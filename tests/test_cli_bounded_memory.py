"""``predict``, ``rank``, ``train`` and ``pretrain`` on huge sparse zarr scans
with a small ``--max-memory``: each completes within the limit (tiles, boxes)
or refuses in one line with exit status 2, and never hangs (seconds each)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import zarr

from napari_xrm_al.cli import main

#: 2 × 20000 × 20000 float32: 1.6 GB a slice; nothing stored on disk.
HUGE = (2, 20000, 20000)
#: Seconds any one command may take before the test fails as hung.
DEADLINE_S = 60


class Hung(BaseException):
    """Raised in a command that ran past the deadline (passes every handler)."""


@pytest.fixture(autouse=True)
def deadline():
    """Turn a hang into a failure after :data:`DEADLINE_S` seconds."""

    def expire(signum, frame):
        raise Hung(f"still running after {DEADLINE_S} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, DEADLINE_S)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def scans(tmp_path, sparse_zarr, tiny_model_file) -> dict[str, Path]:
    paths = {
        "huge": tmp_path / "huge.zarr",
        "huge_chunks": tmp_path / "huge_chunks.zarr",
        "labels": tmp_path / "labels.zarr",
        "wide": tmp_path / "wide.zarr",
        "model": tiny_model_file(tmp_path / "model.pt"),
    }
    sparse_zarr(paths["huge"], HUGE, chunks=(1, 512, 512))
    sparse_zarr(paths["huge_chunks"], HUGE, chunks=(1, 4096, 4096))  # 64 MiB each
    labels = sparse_zarr(paths["labels"], HUGE, "u1", chunks=(1, 512, 512))
    labels[1, :64, :64] = 2
    wide = sparse_zarr(paths["wide"], (2, 1200, 1200), chunks=(1, 512, 512))
    wide[1, 300:700, 300:700] = 0.8
    out = tmp_path / "out"
    out.mkdir()
    return paths | {"out": out}


def command_line(command: str, image: Path, scans: dict, limit_mib: int) -> list[str]:
    out = scans["out"]
    common = ["--image", str(image), "--max-memory", str(limit_mib), "--threads", "1"]
    extra = {
        "predict": ["--model", str(scans["model"]), "--out", str(out / "p.zarr")],
        "rank": ["--model", str(scans["model"]), "--csv", str(out / "scores.csv")],
        "train": [
            "--labels",
            str(scans["labels"]),
            "--slices",
            "1",
            "--steps",
            "1",
            "--out",
            str(out / "m.pt"),
        ],  # fmt: skip
        "pretrain": ["--steps", "2", "--batch-size", "4", "--out", str(out / "e.pt")],
    }[command]
    return [command, *common, *extra]


def refused(capsys, argv: list[str], out: Path, *words: str) -> None:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-xrm-al: error:"), lines
    for word in words:
        assert word in lines[0], lines[0]
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("command", ["predict", "rank", "train", "pretrain"])
def test_chunks_larger_than_the_limit_are_refused_on_opening(capsys, scans, command):
    image = scans["huge_chunks"]
    argv = command_line(command, image, scans, 32)
    refused(capsys, argv, scans["out"], str(image), "chunks of 1 × 4096 × 4096",
            "(64 MiB each", "limit of 32 MiB")  # fmt: skip


def test_training_on_huge_labelled_slices_is_refused_with_the_figures(capsys, scans):
    argv = command_line("train", scans["huge"], scans, 64)
    refused(capsys, argv, scans["out"], "1 labelled 20000 × 20000 slices", "GiB",
            "limit of 64 MiB")  # fmt: skip


def test_pretraining_on_huge_slices_reads_boxes(capsys, scans):
    argv = command_line("pretrain", scans["huge"], scans, 64)
    assert main([*argv, "--quiet"]) == 0
    assert "pretrained 2 steps" in capsys.readouterr().out
    assert (scans["out"] / "e.pt").is_file()


@pytest.mark.parametrize("command", ["predict", "rank"])
def test_a_slice_larger_than_the_limit_is_predicted_in_tiles(capsys, scans, command):
    argv = command_line(command, scans["wide"], scans, 8)
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "tile" in captured.err  # progress names the tiles
    written = {"predict": "p.zarr", "rank": "scores.csv"}[command]
    assert (scans["out"] / written).exists()
    if command == "predict":
        classes = zarr.open_array(scans["out"] / "p.zarr", mode="r")
        assert classes.shape == (2, 1200, 1200) and classes[1, -1, -1] >= 1
