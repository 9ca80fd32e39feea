"""``napari-xrm-al sample`` and ``napari-xrm-al demo``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_xrm_al.cli import main
from napari_xrm_al.core.synthetic.sample import THICK_DIE, make_hbm_sample

SHAPE = ["16", "40", "48"]


def test_sample_writes_the_volume_ground_truth_and_classes(tmp_path, capsys):
    out = tmp_path / "hbm"
    assert main(["sample", str(out), "--seed", "1", "--shape", *SHAPE]) == 0
    expected = make_hbm_sample(seed=1, shape=tuple(map(int, SHAPE)))
    for name, array in (("image.tif", expected.image), ("labels.tif", expected.labels)):
        with tifffile.TiffFile(out / name) as tif:
            assert np.array_equal(tif.asarray(), array)
            assert tif.imagej_metadata["spacing"] == pytest.approx(
                expected.voxel_size[0]
            )
    info = json.loads((out / "classes.json").read_text())
    assert [c["name"] for c in info["classes"]] == list(expected.classes.names)
    assert info["params"]["seed"] == 1
    printed = capsys.readouterr().out
    assert str(out / "labels.tif") in printed
    assert "void" in printed and "%" in printed


def test_sample_thick_dies_and_void_probability(tmp_path):
    out = tmp_path / "thick"
    argv = [
        "sample",
        str(out),
        "--thick-dies",
        "--void-probability",
        "0",
        "--shape",
        *SHAPE,
    ]
    assert main(argv) == 0
    info = json.loads((out / "classes.json").read_text())
    assert info["params"]["die_thickness"] == THICK_DIE
    assert info["params"]["void_probability"] == 0
    assert not (tifffile.imread(out / "labels.tif") == 3).any()


def test_sample_void_layers(tmp_path, capsys):
    out = tmp_path / "upper"
    argv = ["sample", str(out), "--shape", "128", "64", "64", "--void-probability", "1"]
    argv += ["--void-layers", "1"]
    assert main(argv) == 0
    assert json.loads((out / "classes.json").read_text())["params"]["void_layers"] == [
        1
    ]
    void_z = np.flatnonzero((tifffile.imread(out / "labels.tif") == 3).any(axis=(1, 2)))
    assert void_z.size and void_z.min() > 64  # the upper of the two layers
    assert main([*argv[:-1], "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "beyond the 2 bump layers" in err


def test_sample_rejects_a_bad_shape_in_one_line(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "x"), "--shape", "2", "64", "64"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("napari-xrm-al: error: ") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


@pytest.mark.gui
def test_demo_opens_the_sample_with_hidden_ground_truth(
    make_napari_viewer, monkeypatch
):
    import napari

    viewer = make_napari_viewer()
    ran = []
    monkeypatch.setattr(napari, "Viewer", lambda **kwargs: viewer)
    monkeypatch.setattr(napari, "run", lambda: ran.append(True))
    assert main(["demo", "--seed", "2", "--shape", *SHAPE]) == 0
    assert ran == [True]
    image, truth = viewer.layers
    assert image.data.shape == tuple(map(int, SHAPE))
    assert image.visible and not truth.visible
    assert image.metadata["napari_xrm_al_sample"]["seed"] == 2
