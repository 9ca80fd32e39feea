"""Hostile inputs on the command line: for ``info``, ``train`` and ``predict``,
each bad scan gives one error line naming it, exit status 2, and nothing is
written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from tests.ole_writer import write_xradia

from napari_xrm_al.cli import main
from napari_xrm_al.core.synthetic.sample import make_hbm_sample, write_sample
from napari_xrm_al.io.mask_reader import read_mask

SHAPE = (8, 32, 32)


def empty(folder: Path) -> Path:
    path = folder / "empty.tif"
    path.write_bytes(b"")
    return path


def text(folder: Path) -> Path:
    path = folder / "notes.tif"
    path.write_text("this is a text file, not a scan\n")
    return path


def truncated(folder: Path) -> Path:
    path = folder / "cut.tif"
    tifffile.imwrite(path, np.ones(SHAPE, np.uint16), photometric="minisblack")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    return path


def flat(folder: Path) -> Path:
    path = folder / "photo.tif"
    tifffile.imwrite(path, np.zeros(SHAPE[1:], np.uint16), photometric="minisblack")
    return path


def rgb(folder: Path) -> Path:
    path = folder / "colour.tif"
    tifffile.imwrite(path, np.zeros((*SHAPE[1:], 3), np.uint8), photometric="rgb")
    return path


def rgb_stack(folder: Path) -> Path:
    path = folder / "colour_stack.tif"
    tifffile.imwrite(path, np.zeros((*SHAPE, 3), np.uint8), photometric="rgb")
    return path


def not_zarr(folder: Path) -> Path:
    path = folder / "scan.zarr"
    path.mkdir()
    (path / "readme.txt").write_text("no zarr here")
    return path


def missing(folder: Path) -> Path:
    return folder / "nowhere.tif"


def truncated_txm(folder: Path) -> Path:
    path = write_xradia(folder / "cut.txm", np.ones(SHAPE, np.uint16))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    return path


def txm_without_images(folder: Path) -> Path:
    images = [f"ImageData1/Image{k}" for k in range(1, SHAPE[0] + 1)]
    return write_xradia(folder / "recon.txm", np.ones(SHAPE, np.uint16), omit=images)


#: Each bad scan and words its error line must hold.
CASES = {
    "empty file": (empty, "is empty"),
    "text named .tif": (text, "not a TIFF file"),
    "truncated TIFF": (truncated, "truncated"),
    "2D image": (flat, "not a volume"),
    "RGB image": (rgb, "RGB 2D image"),
    "RGB stack": (rgb_stack, "--channel"),
    "folder that is not zarr": (not_zarr, "neither a zarr store"),
    "missing path": (missing, "does not exist"),
    "truncated .txm": (truncated_txm, "truncated or corrupt"),
    ".txm without images": (txm_without_images, "no image data"),
}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """Valid labels and model to go with the bad scans."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("good")
    paths = write_sample(folder, make_hbm_sample(seed=0, shape=SHAPE))
    assert main(["train", "--image", str(paths["image"]), "--labels",
                 str(paths["labels"]), "--dense-labels", "--slices", "2", "--out",
                 str(folder / "model.pt"), "--threads", "1", "--quiet", "--steps",
                 "1"]) == 0  # fmt: skip
    paths["model"] = folder / "model.pt"
    return paths


def arguments(command: str, image: Path, good: dict, out: Path) -> list[str]:
    if command == "info":
        return ["info", str(image)]
    if command == "predict":
        return ["predict", "--image", str(image), "--model", str(good["model"]),
                "--out", str(out / "pred.zarr"), "--threads", "1", "--quiet"]  # fmt: skip
    return ["train", "--image", str(image), "--labels", str(good["labels"]),
            "--dense-labels", "--slices", "2", "--out", str(out / "m.pt"),
            "--threads", "1", "--quiet", "--steps", "1"]  # fmt: skip


def fails_cleanly(capsys, argv: list[str], out: Path, *words: str) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("napari-xrm-al: error:"), lines[0]
    assert "Traceback" not in captured.err
    for word in words:
        assert word in lines[0], lines[0]
    assert list(out.iterdir()) == []  # nothing written
    return lines[0]


@pytest.mark.parametrize("command", ["info", "predict", "train"])
@pytest.mark.parametrize("case", list(CASES))
def test_bad_scans(tmp_path, capsys, good, command, case) -> None:
    make, words = CASES[case]
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    image = make(inputs)
    before = sorted(p.name for p in inputs.rglob("*"))
    fails_cleanly(capsys, arguments(command, image, good, out), out, image.name, words)
    assert sorted(p.name for p in inputs.rglob("*")) == before


@pytest.mark.parametrize("command", ["info", "predict", "train"])
def test_a_fifo_named_tif(tmp_path, capsys, good, fifo, command) -> None:
    """Reading a named pipe would block forever: it is refused up front."""
    out = tmp_path / "out"
    out.mkdir()
    image = fifo(tmp_path / "scan.tif")
    argv = arguments(command, image, good, out)
    fails_cleanly(capsys, argv, out, str(image), "named pipe")


def test_float_labels_with_fractional_values(tmp_path, capsys, good) -> None:
    """Training would cut 1.5 to class 1 silently: refused, as metrology does."""
    labels = np.asarray(tifffile.imread(good["labels"]), np.float32)
    labels[2] += 0.5
    path = tmp_path / "float_labels.tif"
    tifffile.imwrite(path, labels, photometric="minisblack")
    out = tmp_path / "out"
    out.mkdir()
    argv = arguments("train", good["image"], good, out)
    argv[argv.index("--labels") + 1] = str(path)
    fails_cleanly(capsys, argv, out, f"{path}: holds float32 values such as ", ".5;")


def test_labels_of_another_shape_than_the_image(tmp_path, capsys, good) -> None:
    other = tmp_path / "labels.tif"
    tifffile.imwrite(other, np.zeros((8, 32, 30), np.uint8), photometric="minisblack")
    out = tmp_path / "out"
    out.mkdir()
    argv = arguments("train", good["image"], good, out)
    argv[argv.index("--labels") + 1] = str(other)
    fails_cleanly(capsys, argv, out, "(8, 32, 30)", "(8, 32, 32)")


def test_nan_and_inf_voxels_are_predicted(tmp_path, capsys, good) -> None:
    image = tifffile.imread(good["image"]).astype(np.float32)
    image[2, :4, :4], image[3, 0, 0], image[4] = np.nan, np.inf, -np.inf
    path = tmp_path / "holes.tif"
    tifffile.imwrite(path, image, photometric="minisblack")
    out = tmp_path / "out"
    out.mkdir()
    assert main(arguments("predict", path, good, out)) == 0
    labels = read_mask(out / "pred.zarr").data
    assert labels.shape == SHAPE
    assert np.min(labels) >= 1 and np.max(labels) <= 4  # a class for every voxel
