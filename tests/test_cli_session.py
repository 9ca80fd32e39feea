"""``napari-xrm-al session``: the dock's loop on a project, headless."""

from __future__ import annotations

import json

import numpy as np
import tifffile

from napari_xrm_al.classes import ClassTable, dense_to_annotation
from napari_xrm_al.cli import main
from napari_xrm_al.core.model.checkpoint import load_checkpoint
from napari_xrm_al.core.session.jobs import session_for
from napari_xrm_al.core.session.paths import SESSION_FILE
from napari_xrm_al.core.session.prediction import PREDICTION
from napari_xrm_al.core.slice_refs import SliceRef
from napari_xrm_al.io.volumes import open_volume


def test_the_whole_loop_runs_headless_and_keeps_the_suggestion(
    tmp_path, capsys
) -> None:
    assert main(["sample", str(tmp_path), "--shape", "24", "48", "48"]) == 0
    image = tmp_path / "image.tif"
    truth = dense_to_annotation(tifffile.imread(tmp_path / "labels.tif"))
    project = tmp_path / "image.tif.xrmal"
    with session_for(image, open_volume(image).data, ClassTable.hbm())[0] as session:
        for z in (4, 15):
            session.annotations.write_slice(z, truth[z])
            session.mark_done(z)
    capsys.readouterr()
    run = ["--threads", "1", "--quiet"]

    assert main(["session", "pretrain", str(project), "--steps", "3", *run]) == 0
    assert "pretrained 3 steps" in capsys.readouterr().out

    assert main(["session", "rank", str(project), "--top", "3", *run]) == 0
    out = capsys.readouterr().out
    kept = json.loads((project / SESSION_FILE).read_text())["suggestion"]
    assert kept["strategy"] == "coreset" and len(kept["picks"]) == 3
    for pick in kept["picks"]:  # printed, and away from the done slices
        assert f"{pick['axis']}:{pick['slice']}" in out
        assert min(abs(pick["slice"] - d) for d in (4, 15)) >= 3

    options = ["--steps", "4", "--ema-decay", "0.9", "--augment-noise-std", "0"]
    assert main(["session", "train", str(project), *options, "--seed", "5", *run]) == 0
    assert "cycle 1 (coreset): trained on 2 slices (seed 5)" in capsys.readouterr().out
    trained = load_checkpoint(project / "models" / "cycle-001.pt").history["config"]
    assert trained["ema_decay"] == 0.9 and trained["augment"]["noise_std"] == 0
    saved = json.loads((project / SESSION_FILE).read_text())
    assert saved["cycles"][0]["picks"] == kept["picks"]
    assert saved["cycles"][0]["seed"] == 5
    assert saved["suggestion"] is None  # used up by the cycle

    assert main(["session", "rank", str(project), "--strategy", "entropy", *run]) == 0
    capsys.readouterr()
    assert main(["session", "predict", str(project), *run]) == 0
    out = capsys.readouterr().out
    assert "predicted along z with models/cycle-001.pt" in out and "wrote" in out
    labels = open_volume(project / PREDICTION).data
    assert labels.shape == (24, 48, 48) and np.asarray(labels).max() >= 1

    assert main(["session", "status", str(project)]) == 0
    status = capsys.readouterr().out
    assert "done    2 slices: z:4, z:15" in status
    assert "cycle 1: coreset, 2 slices, models/cycle-001.pt" in status
    assert "suggestion (entropy, models/cycle-001.pt" in status


def test_a_missing_project_or_moved_scan_is_one_line(tmp_path, capsys) -> None:
    assert main(["session", "status", str(tmp_path / "none.xrmal")]) == 2
    err = capsys.readouterr().err
    assert "none.xrmal" in err and "Traceback" not in err

    assert main(["sample", str(tmp_path), "--shape", "8", "16", "16"]) == 0
    image = tmp_path / "image.tif"
    session_for(image, open_volume(image).data, ClassTable.hbm())[0].close()
    image.rename(tmp_path / "moved.tif")
    capsys.readouterr()
    assert main(["session", "train", str(tmp_path / "image.tif.xrmal"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "image.tif" in err and "Traceback" not in err
    moved = ["--image", str(tmp_path / "moved.tif"), "--quiet"]
    assert main(["session", "train", str(tmp_path / "image.tif.xrmal"), *moved]) == 2
    assert "Mark at least one painted slice" in capsys.readouterr().err


def test_done_slices_across_anisotropic_voxels_need_forcing(tmp_path, capsys) -> None:
    labels = np.random.default_rng(0).integers(0, 4, (12, 32, 32)).astype(np.uint8)
    image = tmp_path / "aniso.tif"
    tifffile.imwrite(
        image,
        labels.astype(np.float32),
        imagej=True,
        resolution=(1.0, 1.0),
        metadata={"spacing": 5.0},
    )
    truth = dense_to_annotation(labels)
    with session_for(image, open_volume(image).data, ClassTable.hbm())[0] as session:
        session.annotations.write_slice(3, truth[3])
        session.mark_done(3)
        session.annotations.write_slice(SliceRef(1, 10), truth[:, 10])
        session.mark_done(SliceRef(1, 10))
    project = str(tmp_path / "aniso.tif.xrmal")
    run = ["--steps", "2", "--threads", "1", "--quiet"]
    assert main(["session", "train", project, *run]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "5.0:1" in err and "--force-anisotropic" in err
    assert not (tmp_path / "aniso.tif.xrmal" / "models" / "cycle-001.pt").exists()

    assert main(["session", "train", project, *run, "--force-anisotropic"]) == 0
    assert "note:" in capsys.readouterr().err
    assert (tmp_path / "aniso.tif.xrmal" / "models" / "cycle-001.pt").exists()
