"""``napari-xrm-al metrology`` end to end on tiny masks."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile
import zarr

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.cli import main
from napari_xrm_al.core.metrology.report import CSV_COLUMNS
from napari_xrm_al.io.masks import write_mask


def two_bumps(solder: int, void: int) -> np.ndarray:
    """A bump with a 1/4 void ratio and a partial bump without void."""
    mask = np.zeros((6, 8, 12), np.uint8)
    mask[1:5, 1:5, 1:5] = solder
    mask[1:5, 1:3, 1:3] = void  # 16 of 64 voxels
    mask[2:4, 2:5, 8:12] = solder  # touches x = 11
    return mask


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_annotation_tiff_with_voxel_size_from_the_file(tmp_path, capsys):
    path = tmp_path / "mask.tif"
    tifffile.imwrite(
        path,
        two_bumps(solder=3, void=4),
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.5),
        metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"},
    )
    out = tmp_path / "bumps.csv"
    assert main(["metrology", "--labels", str(path), "--out", str(out)]) == 0
    rows = read_rows(out)
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [r["void_ratio"] for r in rows] == ["0.25", "0.0"]
    assert [r["pass"] for r in rows] == ["True", "True"]
    assert [r["partial"] for r in rows] == ["False", "True"]
    assert float(rows[0]["void_volume_um3"]) == 16 * 2.0 * 0.5 * 0.5
    assert (rows[1]["z"], rows[1]["y"], rows[1]["x"]) == ("2.5", "3.0", "9.5")
    assert "2 bumps (1 partial), 0 fail" in capsys.readouterr().out


def test_dense_zarr_with_options(tmp_path):
    path = tmp_path / "gt.zarr"
    zarr.create_array(path, data=two_bumps(solder=2, void=3), chunks=(2, 8, 12))
    out = tmp_path / "bumps.csv"
    argv = ["metrology", "--labels", str(path), "--dense-labels", "--out", str(out)]
    argv += ["--max-void-ratio", "0.2", "--voxel-size", "1", "1", "1", "--slab", "1"]
    assert main(argv) == 0
    rows = read_rows(out)
    assert [r["pass"] for r in rows] == ["False", "True"]
    assert [r["solder_volume_um3"] for r in rows] == ["48.0", "24.0"]


@pytest.mark.parametrize("name", ["pred.ome.zarr", "pred.zarr", "pred.tif"])
def test_our_mask_exports_bring_their_classes_and_voxel_size(tmp_path, name):
    classes = ClassTable.parse("background,void,solder,copper")
    path = write_mask(
        tmp_path / name,
        two_bumps(solder=3, void=2),
        classes,
        voxel_size=(1.0, 0.5, 0.5),
    )
    out = tmp_path / "bumps.csv"
    assert main(["metrology", "--labels", str(path), "--out", str(out)]) == 0
    rows = read_rows(out)
    assert [r["void_voxels"] for r in rows] == ["16", "0"]
    assert float(rows[0]["void_volume_um3"]) == 16 * 0.25


def test_custom_class_names(tmp_path):
    path = tmp_path / "mask.zarr"
    zarr.create_array(path, data=two_bumps(solder=1, void=2))
    out = tmp_path / "bumps.csv"
    argv = ["metrology", "--labels", str(path), "--out", str(out)]
    argv += ["--classes", "sn,pore,cu", "--solder", "sn", "--void", "pore"]
    assert main(argv) == 2  # ids 0..2, mostly 0: dense or annotation ids?
    assert main([*argv, "--sparse-labels"]) == 0
    assert [r["void_voxels"] for r in read_rows(out)] == ["16", "0"]
    assert read_rows(out)[0]["solder_volume_um3"] == ""  # no voxel size known


@pytest.mark.parametrize(
    ("make", "extra", "words"),
    [
        (None, [], "does not exist"),
        (lambda p: zarr.create_array(p, data=np.zeros((4, 4), np.uint8)), [], "3D"),
        (
            lambda p: zarr.create_array(p, data=np.zeros((2, 4, 4), np.uint8)),
            ["--solder", "tin"],
            "'tin' is not one of the classes",
        ),
        (
            lambda p: zarr.create_array(p, data=np.full((2, 4, 4), 1.5, np.float32)),
            [],
            "mask.zarr: holds float32 values such as 1.5; class ids must be integers",
        ),
    ],
)
def test_user_errors_are_one_line(tmp_path, capsys, make, extra, words):
    path = tmp_path / "mask.zarr"
    if make is not None:
        make(path)
    out = tmp_path / "bumps.csv"
    argv = ["metrology", "--labels", str(path), "--out", str(out), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("napari-xrm-al: error: ") and words in err
    assert err.count("\n") == 1
    assert not out.exists()
