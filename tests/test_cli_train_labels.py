"""``train`` knows which ids a label volume uses, or refuses to guess.

Dense ground truth (ids 0..C-1) read as annotations (0 = not annotated) trains
a model with every class shifted by one and the first class ignored, without
any error: the labels must say which they are, or the user must.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tifffile

from napari_xrm_al.classes import CLASSES_FILE, LABEL_IDS_KEY, dense_to_annotation
from napari_xrm_al.cli import main
from napari_xrm_al.core.model.checkpoint import load_checkpoint
from napari_xrm_al.core.synthetic.sample import make_hbm_sample, write_sample
from napari_xrm_al.io.label_ids import ambiguous_ids

SLICES = [3, 8]  # 8 holds voids


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """``sample``'s files (labels.tif: dense ids, classes.json beside it)."""
    sample = make_hbm_sample(seed=0, shape=(12, 32, 32), void_probability=1.0)
    return write_sample(tmp_path_factory.mktemp("sample"), sample)


def train(image, labels, out, *extra) -> int:
    return main(
        [
            "train", "--image", str(image), "--labels", str(labels),
            "--slices", ",".join(map(str, SLICES)), "--out", str(out),
            "--steps", "1", "--preset", "small", "--threads", "1", "--quiet",
            *extra,
        ]
    )  # fmt: skip


def labelled_counts(model) -> list[int]:
    """Labelled pixels per class (dense ids) that the model was trained on."""
    return load_checkpoint(model).history["labelled_counts"]


def dense_counts(sample) -> list[int]:
    labels = tifffile.imread(sample["labels"])[SLICES]
    return np.bincount(labels.ravel(), minlength=4).tolist()


def without_label_ids(sample, folder):
    """The sample's files with a classes.json that does not say which ids."""
    for key in ("image", "labels"):
        shutil.copy(sample[key], folder / sample[key].name)
    info = json.loads(sample["classes"].read_text())
    del info[LABEL_IDS_KEY]
    (folder / CLASSES_FILE).write_text(json.dumps(info))
    return folder / "image.tif", folder / "labels.tif"


def test_the_samples_own_labels_train_as_the_dense_ids_they_are(sample, tmp_path):
    assert json.loads(sample["classes"].read_text())[LABEL_IDS_KEY] == "dense"
    model = tmp_path / "m.pt"
    assert train(sample["image"], sample["labels"], model) == 0  # no option needed
    assert labelled_counts(model) == dense_counts(sample)


def test_ids_that_could_be_either_are_refused_without_a_choice(
    sample, tmp_path, capsys
):
    image, labels = without_label_ids(sample, tmp_path)
    model = tmp_path / "m.pt"
    assert train(image, labels, model) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"napari-xrm-al: error: {labels}: holds ids 0..3")
    assert "Pass --dense-labels or --sparse-labels" in err
    assert len(err.strip().splitlines()) == 1 and not model.exists()

    assert train(image, labels, model, "--dense-labels") == 0
    assert labelled_counts(model) == dense_counts(sample)
    assert train(image, labels, model, "--sparse-labels") == 0  # as asked: shifted
    counts = dense_counts(sample)
    assert labelled_counts(model) == [*counts[1:], 0]


def test_annotations_holding_the_last_class_need_no_option(sample, tmp_path):
    dense = tifffile.imread(sample["labels"])
    annotations = np.zeros_like(dense)
    annotations[SLICES] = dense_to_annotation(dense[SLICES])  # ids 1..4, 0 elsewhere
    assert annotations.max() == 4
    tifffile.imwrite(tmp_path / "annotations.tif", annotations)  # no classes.json
    model = tmp_path / "m.pt"
    assert train(sample["image"], tmp_path / "annotations.tif", model) == 0
    assert labelled_counts(model) == dense_counts(sample)


def test_a_broken_classes_file_is_one_line(sample, tmp_path, capsys):
    image, labels = without_label_ids(sample, tmp_path)
    info = json.loads((tmp_path / CLASSES_FILE).read_text())
    (tmp_path / CLASSES_FILE).write_text(json.dumps({**info, LABEL_IDS_KEY: "sparse"}))
    assert train(image, labels, tmp_path / "m.pt", "--dense-labels") == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"napari-xrm-al: error: {tmp_path / CLASSES_FILE}: has label_ids 'sparse', "
        "not 'dense' or 'annotation'"
    )


def test_ambiguous_ids_reads_slab_by_slab(monkeypatch):
    monkeypatch.setattr("napari_xrm_al.io.label_ids._SLAB_VOXELS", 16)  # a plane
    dense = np.zeros((6, 4, 4), np.uint8)
    dense[1, 0, :3] = [1, 2, 3]
    assert ambiguous_ids(dense, 4)  # mostly 0, ids 0..3 over several slabs
    assert not ambiguous_ids(dense[2:], 4)  # ids 1..3 absent: only 0
    annotation = dense.copy()
    annotation[5, 0, 0] = 4  # the last slab holds id C: annotation ids only
    assert not ambiguous_ids(annotation, 4)
    busy = np.ones((6, 4, 4), np.uint8)
    busy[0, 0, :4] = [0, 1, 2, 3]  # 0 is rare: annotation ids fit best
    assert not ambiguous_ids(busy, 4)
    assert not ambiguous_ids(dense.astype(np.float32), 4)


def metrology(labels, out, *extra) -> int:
    return main(["metrology", "--labels", str(labels), "--out", str(out), *extra])


def bump_rows(csv) -> list[str]:
    return csv.read_text().splitlines()[1:]


def test_metrology_reads_the_samples_own_labels_as_dense_ids(sample, tmp_path):
    """``metrology`` decides which ids the labels use as ``train`` does: the
    sample's ground truth measures as with --dense-labels, not shifted."""
    said = tmp_path / "said.csv"
    assert metrology(sample["labels"], said) == 0  # classes.json: dense
    chosen = tmp_path / "chosen.csv"
    assert metrology(sample["labels"], chosen, "--dense-labels") == 0
    shifted = tmp_path / "shifted.csv"
    assert metrology(sample["labels"], shifted, "--sparse-labels") == 0
    assert bump_rows(said) == bump_rows(chosen)
    assert bump_rows(said) and bump_rows(said) != bump_rows(shifted)


def test_metrology_refuses_ids_that_could_be_either(sample, tmp_path, capsys):
    _, labels = without_label_ids(sample, tmp_path)
    out = tmp_path / "bumps.csv"
    assert metrology(labels, out) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"napari-xrm-al: error: {labels}: holds ids 0..3")
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    assert metrology(labels, out, "--dense-labels") == 0
