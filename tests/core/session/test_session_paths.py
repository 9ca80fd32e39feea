"""Paths in session.json stay inside the project: an entry leading outside is
dropped with a warning (the session still opens), and a linked models/ works."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_xrm_al.classes import ClassTable, dense_to_annotation
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.session.jobs import rank_session, session_for, train_session
from napari_xrm_al.core.session.session import (
    SESSION_FILE,
    CycleRecord,
    ImageRef,
    Session,
)
from napari_xrm_al.core.synthetic.sample import make_hbm_sample
from napari_xrm_al.core.training.configs import TrainConfig
from napari_xrm_al.errors import InputError, XrmError

IMAGE = ImageRef(
    path="/data/scan.tif", shape=(6, 32, 32), dtype="uint16", fingerprint="f"
)


@pytest.fixture
def folder(tmp_path):
    return tmp_path / "project" / "s.xrmal"


def outside_entries(tmp_path, model) -> dict[str, str]:
    """Recorded paths that all name the same model file, outside the project."""
    (tmp_path / "project" / "s.xrmal" / "link").symlink_to(model.parent)
    return {
        "absolute": str(model),
        "up": "../../m.pt",
        "up inside": "models/../../../m.pt",
        "backslashes": "..\\\\..\\\\m.pt",
        "through a link": "link/m.pt",
    }


@pytest.mark.parametrize(
    "kind", ["absolute", "up", "up inside", "backslashes", "through a link"]
)
def test_a_model_recorded_outside_the_project_is_ignored(
    tmp_path, folder, tiny_model_file, kind
) -> None:
    session = Session.create(folder, IMAGE, ClassTable.hbm())
    inside = tiny_model_file(session.paths.model_path("cycle-001.pt"))
    outside = tiny_model_file(tmp_path / "m.pt", seed=1)
    entry = outside_entries(tmp_path, outside)[kind]
    session.add_cycle(CycleRecord(1, "manual", [1], model="models/cycle-001.pt"))
    session.add_cycle(CycleRecord(2, "manual", [1], model=entry))
    session.pretrained = entry
    session.save()
    session.close()

    again = Session.open(folder)
    assert again.latest_model == inside  # never the file outside
    assert again.pretrained is None and again.cycles[1].model is None
    assert len(again.warnings) == 2
    assert all(
        repr(entry) in w and str(folder / SESSION_FILE) in w for w in again.warnings
    )
    assert "cycle 2" in again.warnings[0] and "encoder" in again.warnings[1]
    with pytest.raises(InputError, match="session.json: records the path"):
        again.paths.path_of(entry)
    with pytest.raises(XrmError, match="is outside the project"):
        again.paths.relative(outside)


def test_ranking_with_only_a_model_outside_says_what_to_do(
    tmp_path, folder, tiny_model_file
) -> None:
    """Before, the model outside was loaded and ranking ended in a ValueError."""
    session = Session.create(folder, IMAGE, ClassTable.hbm())
    outside = tiny_model_file(tmp_path / "m.pt")
    session.add_cycle(CycleRecord(1, "manual", [1], model=str(outside)))
    session.close()
    again = Session.open(folder)
    image = np.zeros(IMAGE.shape, np.uint16)
    with pytest.raises(XrmError, match="Pretrain .* or train a model"):
        run_to_end(rank_session(again, image))


def test_a_linked_models_folder_keeps_every_cycle(tmp_path, folder) -> None:
    sample = make_hbm_sample(shape=(12, 48, 48), seed=0)
    bigger_disk = tmp_path / "bigger-disk" / "models"
    bigger_disk.mkdir(parents=True)
    folder.mkdir(parents=True)
    (folder / "models").symlink_to(bigger_disk)
    session, _ = session_for(None, sample.image, ClassTable.hbm(), folder=folder)
    truth = dense_to_annotation(sample.labels)
    session.annotations.write_slice(3, truth[3])
    session.mark_done(3)
    config = TrainConfig(steps=2, crop_size=32, batch_size=2)

    record = run_to_end(train_session(session, sample.image, config))
    assert record.model == "models/cycle-001.pt"
    assert (bigger_disk / "cycle-001.pt").is_file()
    session.close()
    again = Session.open(folder)
    assert again.warnings == []
    assert again.latest_model == folder / "models" / "cycle-001.pt"
    assert json.loads((folder / SESSION_FILE).read_text())["cycles"][0]["model"] == (
        "models/cycle-001.pt"
    )
