"""``napari-xrm-al rank`` and ``simulate`` through the real command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

from napari_xrm_al.cli import main


@pytest.fixture
def checkpoint_reads(monkeypatch) -> list[str]:
    """Paths passed to ``torch.load`` while the test runs."""
    reads: list[str] = []
    real_load = torch.load

    def counting_load(path, *args, **kwargs):
        reads.append(str(path))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    return reads


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scan")
    assert (
        main(["sample", str(folder), "--seed", "0", "--shape", "24", "48", "48"]) == 0
    )
    model = folder / "model.pt"
    code = main(
        [
            "train", "--image", str(folder / "image.tif"), "--labels", str(folder / "labels.tif"),
            "--dense-labels", "--classes", "background,copper,solder,void",
            "--slices", "5,14", "--steps", "3", "--out", str(model), "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    return folder, model


def test_rank_prints_the_top_slices_away_from_the_training_slices(
    scan, capsys, tmp_path, checkpoint_reads
) -> None:
    folder, model = scan
    csv_path = tmp_path / "scores.csv"
    code = main(
        [
            "rank", "--image", str(folder / "image.tif"), "--model", str(model),
            "--top", "3", "--min-distance", "2", "--csv", str(csv_path), "--quiet",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [int(r[0]) for r in rows] == [1, 2, 3]
    picked = [int(r[1]) for r in rows]
    assert all(abs(p - t) >= 2 for p in picked for t in (5, 14))
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("slice,score,fraction_background")
    assert len(lines) == 1 + 24
    assert checkpoint_reads == [str(model)]


def test_rank_keeps_away_from_the_validation_slices(scan, capsys, tmp_path) -> None:
    folder, _ = scan
    model = tmp_path / "validated.pt"
    code = main(
        [
            "train", "--image", str(folder / "image.tif"), "--labels", str(folder / "labels.tif"),
            "--dense-labels", "--classes", "background,copper,solder,void",
            "--slices", "5,14", "--val-slices", "10", "--steps", "2", "--out", str(model),
            "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    capsys.readouterr()
    code = main(
        [
            "rank", "--image", str(folder / "image.tif"), "--model", str(model),
            "--top", "8", "--min-distance", "2", "--quiet",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    picked = [int(r.split()[1]) for r in out.splitlines() if r.strip()[:1].isdigit()]
    assert picked and all(abs(p - t) >= 2 for p in picked for t in (5, 10, 14))


def test_rank_with_an_encoder_picks_first_slices(
    scan, capsys, tmp_path, checkpoint_reads
) -> None:
    folder, _ = scan
    encoder = tmp_path / "enc.pt"
    args = ["--image", str(folder / "image.tif"), "--quiet"]
    assert main(["pretrain", *args, "--steps", "2", "--out", str(encoder)]) == 0
    capsys.readouterr()
    checkpoint_reads.clear()
    csv_path = tmp_path / "first.csv"
    code = main(
        ["rank", *args, "--model", str(encoder), "--top", "3", "--csv", str(csv_path)]
    )
    out = capsys.readouterr().out
    assert code == 0 and "core-set" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert rows[0][2:] == ["first", "pick"]  # drawn, not at distance 0
    picked = [int(r[1]) for r in rows]
    assert len(picked) == 3 and all(
        abs(a - b) >= 3 for a in picked for b in picked if a != b
    )
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "slice,distance" and len(lines) == 1 + 24
    assert all(float(lines[1 + p].split(",")[1]) == 0 for p in picked)
    assert checkpoint_reads == [str(encoder)]


def test_rank_errors_are_one_line(scan, capsys) -> None:
    folder, model = scan
    code = main(
        [
            "rank",
            "--image",
            str(folder / "image.tif"),
            "--model",
            str(folder / "nope.pt"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "nope.pt" in err
    code = main(
        [
            "rank",
            "--image",
            str(folder / "image.tif"),
            "--model",
            str(model),
            "--axis",
            "y",
        ]
    )
    assert code == 2
    assert "has z as its slice axis, not y; rank" in capsys.readouterr().err


def test_simulate_writes_result_json_and_plot(scan, tmp_path, capsys) -> None:
    folder, _ = scan
    out, plot = tmp_path / "result.json", tmp_path / "curve.png"
    code = main(
        [
            "simulate", "--image", str(folder / "image.tif"), "--labels", str(folder / "labels.tif"),
            "--strategy", "rareness", "--strategy", "random:no-pretrain",
            "--initial", "2", "--per-cycle", "1", "--cycles", "1", "--min-distance", "2",
            "--train-steps", "3", "--pretrain-steps", "2", "--seeds", "0",
            "--start-with", "5", "--out", str(out), "--plot", str(plot), "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    assert result["rare_class"] == "void"
    assert all(5 in r["cycles"][0]["labelled"] for r in result["runs"])
    assert result["test_shape"][0] == 6  # the held-out last quarter of 24 slices
    assert [(r["strategy"], r["pretrain"]) for r in result["runs"]] == [
        ("rareness", True),
        ("random", False),
    ]
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert "random (no pretrain)" in capsys.readouterr().out


def test_simulate_resume_adds_to_an_earlier_result(scan, tmp_path, capsys) -> None:
    folder, _ = scan
    out = tmp_path / "result.json"
    args = [
        "simulate", "--image", str(folder / "image.tif"), "--labels", str(folder / "labels.tif"),
        "--initial", "2", "--per-cycle", "1", "--cycles", "1", "--min-distance", "2",
        "--train-steps", "3", "--pretrain-steps", "2", "--out", str(out), "--quiet",
    ]  # fmt: skip
    assert main([*args, "--strategy", "rareness"]) == 0
    first = json.loads(out.read_text())
    assert first["complete"]
    capsys.readouterr()
    assert main([*args, "--strategy", "random", "--resume"]) == 0
    both = json.loads(out.read_text())
    assert [r["strategy"] for r in both["runs"]] == ["rareness", "random"]
    assert both["runs"][0] == first["runs"][0]
    # The paired table compares the new strategy with the first one, seed by seed.
    assert "| random | 1 |" in capsys.readouterr().out

    out.write_text("{ not json")
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out) in err
    assert main([*args[:-2], str(tmp_path / "nowhere" / "r.json"), "--quiet"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_simulate_rejects_half_a_test_pair(scan, tmp_path, capsys) -> None:
    folder, _ = scan
    code = main(
        [
            "simulate", "--image", str(folder / "image.tif"), "--labels", str(folder / "labels.tif"),
            "--test-image", str(folder / "image.tif"), "--out", str(tmp_path / "r.json"),
        ]
    )  # fmt: skip
    assert code == 2
    assert "go together" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_axis_qualified_slices_train_rank_and_simulate(scan, tmp_path, capsys) -> None:
    """``train --slices z:5,y:20,x:30``, ``rank --axes z,y,x``, ``simulate --axes``."""
    folder, _ = scan
    image, labels = str(folder / "image.tif"), str(folder / "labels.tif")
    model = tmp_path / "mixed.pt"
    code = main(
        [
            "train", "--image", image, "--labels", labels, "--dense-labels",
            "--classes", "background,copper,solder,void", "--slices", "z:5,y:20,30",
            "--axis", "x", "--steps", "3", "--out", str(model), "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    assert "on 3 slices" in capsys.readouterr().out
    ckpt = torch.load(model, weights_only=False)
    assert ckpt["history"]["slices"] == [["z", 5], ["y", 20], ["x", 30]]

    csv_path = tmp_path / "scores.csv"
    code = main(
        [
            "rank", "--image", image, "--model", str(model), "--axes", "z,y,x",
            "--strategy", "entropy", "--top", "12", "--csv", str(csv_path), "--quiet",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "axes z,y,x, 120 slices scored" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    picked = [r[1] for r in rows]
    assert len(picked) == 12 and len({p.split(":")[0] for p in picked}) >= 2
    assert not {"z:5", "y:20", "x:30"} & set(picked)  # trained on, never picked
    lines = csv_path.read_text().splitlines()
    assert len(lines) == 1 + 24 + 48 + 48 and lines[1].startswith("z:0,")

    out = tmp_path / "result.json"
    code = main(
        [
            "simulate", "--image", image, "--labels", labels, "--axes", "z,y,x",
            "--strategy", "entropy:no-pretrain", "--initial", "3", "--per-cycle", "3",
            "--cycles", "1", "--min-distance", "2", "--train-steps", "3",
            "--start-with", "5", "--out", str(out), "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    assert result["settings"]["axes"] == ["z", "y", "x"]
    labelled = result["runs"][0]["cycles"][-1]["labelled"]
    assert len(labelled) == 6 and "z:5" in labelled
    assert {s.split(":")[0] for s in labelled} > {"z"}


def test_strongly_anisotropic_voxels_refuse_slices_across(tmp_path, capsys) -> None:
    data = np.random.default_rng(0).integers(0, 4, (12, 40, 40)).astype(np.uint8)
    image, labels = tmp_path / "aniso.tif", tmp_path / "labels.tif"
    tifffile.imwrite(
        image, data, imagej=True, resolution=(1.0, 1.0), metadata={"spacing": 5.0}
    )
    tifffile.imwrite(labels, data)
    args = [
        "train", "--image", str(image), "--labels", str(labels), "--dense-labels",
        "--slices", "z:2,y:10", "--steps", "2", "--out", str(tmp_path / "m.pt"),
        "--quiet",
    ]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "5.0:1" in err and "--force-anisotropic" in err
    assert main([*args, "--force-anisotropic"]) == 0
    assert "note:" in capsys.readouterr().err


def test_rank_reads_a_scan_at_another_gain_by_its_own_grey_levels(
    scan, capsys, tmp_path
) -> None:
    folder, model = scan
    brighter = tmp_path / "brighter.tif"  # twice the gain, as another tool
    image = tifffile.imread(folder / "image.tif").astype(np.uint32)
    tifffile.imwrite(brighter, (2 * image).astype(np.uint16))

    def scores(path, *extra) -> np.ndarray:
        csv_path = tmp_path / "scores.csv"
        argv = ["rank", "--image", str(path), "--model", str(model), "--quiet",
                "--csv", str(csv_path), *extra]  # fmt: skip
        assert main(argv) == 0
        return np.loadtxt(csv_path, delimiter=",", skiprows=1, usecols=1)

    same = scores(folder / "image.tif")
    assert "grey levels" not in capsys.readouterr().err
    np.testing.assert_allclose(scores(brighter), same, rtol=0.01, atol=1e-4)
    assert f"{brighter}'s grey levels" in capsys.readouterr().err
    kept = scores(brighter, "--intensity", "model")
    assert np.abs(kept - same).max() > 0.01
