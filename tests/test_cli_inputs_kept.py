"""No command overwrites its inputs: an output that is an input after resolving
``..``, symlinks and hard links, lies inside an input zarr store or contains
one, or is another output, is refused with one line naming both, exit status 2,
before any work and with every input unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import zarr

from napari_xrm_al.cli import main
from napari_xrm_al.core.synthetic.sample import make_hbm_sample, write_sample

SHAPE = (8, 32, 32)
QUICK = ["--threads", "1", "--quiet"]
TRAIN = ["--dense-labels", "--slices", "2", "--steps", "1", *QUICK]


@pytest.fixture(scope="module")
def sample():
    return make_hbm_sample(seed=0, shape=SHAPE)


@pytest.fixture
def data(tmp_path, sample, tiny_model_file, monkeypatch):
    """In ``data/``: a scan (TIFF, zarr array, array in a zarr group), its labels
    and a model; the working folder is ``same/``."""
    torch.set_num_threads(1)
    folder = tmp_path / "data"
    paths = write_sample(folder, sample)
    paths["image"].rename(folder / "scan.tif")
    paths["labels"].rename(folder / "lab.tif")
    zarr.create_array(folder / "in.zarr", data=sample.image)
    group = zarr.open_group(folder / "g.zarr", mode="w")
    group.create_array("scan", data=sample.image)
    tiny_model_file(folder / "model.pt")
    (tmp_path / "same").mkdir()
    monkeypatch.chdir(tmp_path / "same")
    return folder


def contents(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


#: argv (``{d}`` = the data folder) → the output and the input the error names.
CASES = {
    "predict --out ../same/scan.tif": (
        ["predict", "--image", "{d}/scan.tif", "--model", "{d}/model.pt",
         "--out", "../data/scan.tif", *QUICK],
        "../data/scan.tif", "--image",
    ),
    "predict --out ../same/in.zarr": (
        ["predict", "--image", "{d}/in.zarr", "--model", "{d}/model.pt",
         "--out", "../data/in.zarr", *QUICK],
        "../data/in.zarr", "--image",
    ),
    "predict --out inside the input store": (
        ["predict", "--image", "{d}/in.zarr", "--model", "{d}/model.pt",
         "--out", "{d}/in.zarr/mask.tif", *QUICK],
        "lies inside", "--image",
    ),
    "predict --out the group holding the input": (
        ["predict", "--image", "{d}/g.zarr/scan", "--model", "{d}/model.pt",
         "--out", "{d}/g.zarr", *QUICK],
        "contains", "--image",
    ),
    "predict --out through a symlinked folder": (
        ["predict", "--image", "{d}/scan.tif", "--model", "{d}/model.pt",
         "--out", "link/scan.tif", *QUICK],
        "link/scan.tif", "--image",
    ),
    "predict --out a hard link to the scan": (
        ["predict", "--image", "{d}/scan.tif", "--model", "{d}/model.pt",
         "--out", "hard.tif", *QUICK],
        "hard.tif", "--image",
    ),
    "predict --uncertainty the --out": (
        ["predict", "--image", "{d}/scan.tif", "--model", "{d}/model.pt",
         "--out", "p.zarr", "--uncertainty", "../same/p.zarr", *QUICK],
        "give each output its own path", "--uncertainty",
    ),
    "train --out scan.tif": (
        ["train", "--image", "{d}/scan.tif", "--labels", "{d}/lab.tif",
         "--out", "../data/scan.tif", *TRAIN],
        "--out", "--image",
    ),
    "train --labels lab.tif --out lab.tif": (
        ["train", "--image", "{d}/scan.tif", "--labels", "{d}/lab.tif",
         "--out", "{d}/lab.tif", *TRAIN],
        "--out", "--labels",
    ),
    "train --out the --init": (
        ["train", "--image", "{d}/scan.tif", "--labels", "{d}/lab.tif",
         "--init", "{d}/model.pt", "--out", "{d}/./model.pt", *TRAIN],
        "--out", "--init",
    ),
    "pretrain --out scan.tif": (
        ["pretrain", "--image", "{d}/scan.tif", "--out", "{d}/scan.tif",
         "--steps", "1", *QUICK],
        "--out", "--image",
    ),
    "metrology --labels lab.tif --out lab.tif": (
        ["metrology", "--labels", "{d}/lab.tif", "--dense-labels",
         "--out", "../data/lab.tif"],
        "--out", "--labels",
    ),
    "rank --csv scan.tif": (
        ["rank", "--image", "{d}/scan.tif", "--model", "{d}/model.pt",
         "--csv", "../data/scan.tif", *QUICK],
        "--csv", "--image",
    ),
    "simulate --plot the labels": (
        ["simulate", "--image", "{d}/scan.tif", "--labels", "{d}/lab.tif",
         "--out", "r.json", "--plot", "{d}/lab.tif", "--cycles", "0",
         "--initial", "1", "--train-steps", "1", "--pretrain-steps", "1",
         "--no-pretrain", "--strategy", "random", *QUICK],
        "--plot", "--labels",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_an_output_never_overwrites_an_input(data, capsys, case) -> None:
    argv, *words = CASES[case]
    argv = [a.replace("{d}", str(data)) for a in argv]
    Path("link").symlink_to(data, target_is_directory=True)
    os.link(data / "scan.tif", "hard.tif")
    before = contents(data)
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-xrm-al: error:"), err
    assert "refusing to overwrite an input" in lines[0] or "own path" in lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert contents(data) == before
    assert sorted(p.name for p in Path.cwd().iterdir()) == ["hard.tif", "link"]


def test_the_same_name_in_another_folder_is_fine(data, capsys) -> None:
    argv = ["predict", "--image", str(data / "scan.tif"), "--model",
            str(data / "model.pt"), "--out", "scan.tif", *QUICK]  # fmt: skip
    before = contents(data)
    assert main(argv) == 0
    assert Path("scan.tif").is_file()
    assert contents(data) == before
