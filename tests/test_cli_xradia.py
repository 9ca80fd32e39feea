"""The commands that take ``--image`` read a ZEISS ``.txm`` through the same
opening function as a TIFF: the same voxels give the same results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.ole_writer import write_xradia

from napari_xrm_al.cli import main
from napari_xrm_al.core.synthetic.sample import make_hbm_sample, write_sample
from napari_xrm_al.io.mask_reader import read_mask

SHAPE = (10, 32, 32)


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """The same sample as ``image.tif`` and ``recon.txm``, and a tiny model."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("xradia")
    sample = make_hbm_sample(seed=0, shape=SHAPE)
    paths = write_sample(folder, sample)
    paths["txm"] = write_xradia(
        folder / "recon.txm", sample.image, pixel_size=sample.voxel_size[2]
    )
    paths["model"] = folder / "model.pt"
    assert main(["train", "--image", str(paths["image"]), "--labels",
                 str(paths["labels"]), "--dense-labels", "--slices", "2,7", "--out",
                 str(paths["model"]), "--threads", "1", "--quiet", "--steps",
                 "2"]) == 0  # fmt: skip
    return paths


def test_predict_gives_the_same_mask_from_a_txm_as_from_the_tiff(
    scans, tmp_path, capsys
):
    masks = []
    for image in (scans["image"], scans["txm"]):
        out = tmp_path / f"{image.suffix[1:]}.zarr"
        assert main(["predict", "--image", str(image), "--model", str(scans["model"]),
                     "--out", str(out), "--threads", "1", "--quiet"]) == 0  # fmt: skip
        masks.append(read_mask(out))
    capsys.readouterr()
    np.testing.assert_array_equal(np.asarray(masks[0].data), np.asarray(masks[1].data))
    assert masks[1].voxel_size == pytest.approx(masks[0].voxel_size)


def test_rank_picks_the_same_slices_in_a_txm_as_in_the_tiff(scans, capsys):
    picks = []
    for image in (scans["image"], scans["txm"]):
        assert main(["rank", "--image", str(image), "--model", str(scans["model"]),
                     "--top", "3", "--min-distance", "1", "--quiet"]) == 0  # fmt: skip
        out = capsys.readouterr().out
        picks.append(
            [ln.split()[:3] for ln in out.splitlines() if ln.strip()[:1].isdigit()]
        )
    assert picks[0] == picks[1] and len(picks[0]) == 3


def test_train_reads_a_txm_as_its_image(scans, tmp_path, capsys):
    model = tmp_path / "from_txm.pt"
    assert main(["train", "--image", str(scans["txm"]), "--labels",
                 str(scans["labels"]), "--dense-labels", "--slices", "2,7", "--out",
                 str(model), "--threads", "1", "--quiet", "--steps",
                 "1"]) == 0  # fmt: skip
    assert model.is_file()
    capsys.readouterr()
