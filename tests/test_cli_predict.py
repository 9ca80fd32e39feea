"""The ``predict`` subcommand on a tiny synthetic scan and an untrained tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
import zarr

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.cli import main
from napari_xrm_al.core.model.checkpoint import Checkpoint, save_checkpoint
from napari_xrm_al.core.model.network import ModelConfig, SliceSegmenter
from napari_xrm_al.core.model.normalization import fit_normalisation
from napari_xrm_al.core.synthetic.sample import make_hbm_sample, write_sample
from napari_xrm_al.io.mask_reader import read_mask

SHAPE = (12, 48, 40)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("scan")
    sample = make_hbm_sample(seed=0, shape=SHAPE)
    paths = write_sample(folder, sample)
    cfg = ModelConfig(n_classes=4, context=1, arch="unet", features=(4, 8))
    model = SliceSegmenter(cfg)
    norm = fit_normalisation(sample.image)
    paths["model"] = save_checkpoint(
        folder / "model.pt",
        Checkpoint("segmenter", cfg, model.state_dict(), norm, "z", ClassTable.hbm()),
    )
    paths["encoder"] = save_checkpoint(
        folder / "encoder.pt",
        Checkpoint("encoder", cfg, model.encoder_state_dict(), norm, "z"),
    )
    return paths


def predict(files, out, *extra):
    args = ["predict", "--image", str(files["image"]), "--model", str(files["model"])]
    return main([*args, "--out", str(out), "--threads", "1", *extra])


def test_predict_writes_labels_and_uncertainty(tmp_path, files, capsys):
    out, unc = tmp_path / "pred.ome.zarr", tmp_path / "u.zarr"
    assert predict(files, out, "--uncertainty", str(unc), "--batch-size", "4") == 0
    captured = capsys.readouterr()
    assert "class fractions: background" in captured.out
    assert f"wrote labels: {out}" in captured.out
    assert "predict 4/12" in captured.err and "eta" in captured.err
    mask = read_mask(out)
    assert mask.data.shape == SHAPE and mask.classes.names == ClassTable.hbm().names
    values = np.unique(np.asarray(mask.data))
    assert values.min() >= 1 and values.max() <= 4
    u = zarr.open_array(unc, mode="r")
    assert u.shape == SHAPE and u.dtype == np.uint8


def test_predict_tif_along_y_with_mc_dropout(tmp_path, files, capsys):
    out = tmp_path / "pred.tif"
    code = predict(files, out, "--axis", "y", "--mc-samples", "2", "--quiet")
    assert code == 0
    captured = capsys.readouterr()
    assert "predicted 48 slices along y" in captured.out
    assert "highest BALD slices" in captured.out
    assert "trained on slices along z" in captured.err
    assert read_mask(out).data.shape == SHAPE


def test_predict_with_test_time_augmentation_matches_the_core(tmp_path, files):
    from napari_xrm_al.core.events import run_to_end
    from napari_xrm_al.core.inference.predict import PredictConfig
    from napari_xrm_al.core.inference.segmenter import Segmenter
    from napari_xrm_al.io.volumes import open_volume

    out = tmp_path / "pred.zarr"
    assert predict(files, out, "--tta", "dihedral", "--precision", "float32") == 0
    segmenter = Segmenter.from_checkpoint(files["model"])
    expected = np.zeros(SHAPE, np.uint8)
    data = open_volume(files["image"]).data
    run_to_end(
        segmenter.predict_volume(
            data, PredictConfig(precision="float32", tta="dihedral"), out=expected
        )
    )
    plain = np.zeros(SHAPE, np.uint8)
    config = PredictConfig(precision="float32")
    run_to_end(segmenter.predict_volume(data, config, out=plain))
    written = np.asarray(read_mask(out).data)
    np.testing.assert_array_equal(written, expected)
    assert (written != plain).any()  # the averaging did change some pixels


@pytest.mark.parametrize(
    ("change", "out_name", "words"),
    [
        ({"model": "encoder"}, "p.zarr", "kind 'encoder'"),
        ({"model": "missing"}, "p.zarr", "does not exist"),
        ({}, "nowhere/p.zarr", "does not exist"),
        ({}, "p.png", "'.ome.zarr', '.zarr' or '.tif'"),
        ({"extra": ["--uncertainty", "u.tif"]}, "p.zarr", "must end in '.zarr'"),
        ({"extra": ["--mc-samples", "0"]}, "p.zarr", "at least 1"),
    ],
)
def test_bad_inputs_fail_cleanly(tmp_path, files, capsys, change, out_name, words):
    paths = dict(files)
    if "model" in change:
        paths["model"] = paths.get(change["model"], tmp_path / "missing.pt")
    extra = [
        str(tmp_path / e) if e.endswith(".tif") else e for e in change.get("extra", [])
    ]
    assert predict(paths, tmp_path / out_name, "--quiet", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("napari-xrm-al: error:")
    assert words in err[0]
    assert list(tmp_path.iterdir()) == []


def test_output_must_not_be_the_image(files, capsys):
    assert predict(files, files["image"], "--quiet") == 2
    assert "is the same file as --image" in capsys.readouterr().err
    assert files["image"].is_file()


def test_predict_fuse_axes(tmp_path, files, capsys):
    one, fused = tmp_path / "z.zarr", tmp_path / "fused.zarr"
    assert predict(files, one, "--precision", "float32", "--quiet") == 0
    assert predict(files, fused, "--fuse-axes", "z", "--precision", "float32") == 0
    np.testing.assert_array_equal(
        np.asarray(read_mask(fused).data), np.asarray(read_mask(one).data)
    )
    capsys.readouterr()
    every = tmp_path / "every.tif"
    assert predict(files, every, "--fuse-axes", "--quiet") == 0
    assert f"predicted {sum(SHAPE)} slices along z,y,x" in capsys.readouterr().out
    assert read_mask(every).data.shape == SHAPE
    # The uncertainty of the mean probabilities; with one axis, that axis's.
    single, mean = tmp_path / "u1.zarr", tmp_path / "u2.zarr"
    f32 = ["--precision", "float32", "--quiet"]
    assert predict(files, tmp_path / "a.zarr", "--uncertainty", str(single), *f32) == 0
    args = ["--fuse-axes", "z", "--uncertainty", str(mean), *f32]
    assert predict(files, tmp_path / "b.zarr", *args) == 0
    a, b = (np.asarray(zarr.open_array(p)).astype(int) for p in (single, mean))
    assert a.max() > 0 and np.abs(a - b).max() <= 1
    code = predict(
        files, tmp_path / "c.zarr", "--fuse-axes", "--probabilities", "p.zarr"
    )
    err = capsys.readouterr().err
    assert code == 2 and "--fuse-axes does not go with --probabilities" in err


def test_a_scan_at_another_gain_is_predicted_by_its_own_grey_levels(
    tmp_path, files, capsys
):
    image = tifffile.imread(files["image"])
    brighter = tmp_path / "brighter.tif"  # twice the gain, as another tool
    tifffile.imwrite(brighter, (2 * image.astype(np.uint32)).astype(np.uint16))
    f32 = ("--precision", "float32", "--quiet")
    assert predict(files, tmp_path / "same.zarr", *f32) == 0
    assert "grey levels" not in capsys.readouterr().err  # the training scan
    other = {**files, "image": brighter}
    assert predict(other, tmp_path / "auto.zarr", *f32) == 0
    err = capsys.readouterr().err
    assert f"{brighter}'s grey levels" in err and "--intensity model" in err
    model = ("--intensity", "model")
    assert predict(other, tmp_path / "model.zarr", *model, *f32) == 0
    assert "grey levels" not in capsys.readouterr().err
    same, auto, kept = (
        np.asarray(read_mask(tmp_path / name).data)
        for name in ("same.zarr", "auto.zarr", "model.zarr")
    )
    assert (auto == same).mean() > 0.99
    assert (kept == same).mean() < 0.9
    attrs = zarr.open_array(tmp_path / "auto.zarr", mode="r").attrs.asdict()
    used = attrs["napari_xrm_al"]["provenance"]["scan_normalisation"]
    trained = fit_normalisation(image)
    assert used["high"] == pytest.approx(2 * trained.high, rel=0.01)
