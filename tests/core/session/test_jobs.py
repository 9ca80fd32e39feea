"""The session-level loop: pretrain, train, rank, on a tiny sample and model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_xrm_al.classes import ClassTable, dense_to_annotation
from napari_xrm_al.core.al.batch_picking import pick_record
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.inference.fused_prediction import predict_fused
from napari_xrm_al.core.inference.segmenter import Segmenter
from napari_xrm_al.core.model import checkpoint as checkpoint_module
from napari_xrm_al.core.model.checkpoint import load_checkpoint
from napari_xrm_al.core.session import jobs as jobs_module
from napari_xrm_al.core.session.jobs import (
    last_settings,
    learning_curve,
    pretrain_session,
    rank_session,
    session_for,
    train_session,
)
from napari_xrm_al.core.session.paths import SESSION_FILE
from napari_xrm_al.core.session.prediction import PREDICTION, predict_session
from napari_xrm_al.core.session.session import Session
from napari_xrm_al.core.slice_refs import SliceRef
from napari_xrm_al.core.synthetic.sample import make_hbm_sample
from napari_xrm_al.core.training.configs import PretrainConfig, TrainConfig
from napari_xrm_al.errors import XrmError
from napari_xrm_al.io.mask_reader import read_mask

TINY_PRETRAIN = PretrainConfig(steps=3, batch_size=4, time_budget_s=None)
TINY_TRAIN = TrainConfig(steps=6, crop_size=32, batch_size=2)


@pytest.fixture(scope="module")
def sample():
    return make_hbm_sample(shape=(24, 48, 48), seed=0)


def test_loop_trains_from_pretraining_and_ranks_unlabelled_slices(
    sample, tmp_path
) -> None:
    session, warnings = session_for(
        None, sample.image, ClassTable.hbm(), "z", folder=tmp_path / "s.xrmal"
    )
    assert warnings == []
    with pytest.raises(XrmError, match="Mark at least one"):
        run_to_end(train_session(session, sample.image, TINY_TRAIN))
    with pytest.raises(XrmError, match="Pretrain .* or train a model"):
        run_to_end(rank_session(session, sample.image))

    run_to_end(pretrain_session(session, sample.image, TINY_PRETRAIN))
    assert session.pretrained == "models/encoder.pt"
    # Before any model: the first slices come from the encoder (core-set).
    first = run_to_end(rank_session(session, sample.image, "rareness", k=3))
    assert first.strategy == "coreset" and first.class_fraction is None
    assert len(first.picks) == 3 and len(first.scores) == 24
    assert all(first.scores[p.slice] == 0 for p in first.picks)
    assert len(list((session.folder / "cache").glob("embedding-*.npz"))) == 1
    again = run_to_end(rank_session(session, sample.image, "rareness", k=3))
    assert [p.slice for p in again.picks] == [p.slice for p in first.picks]
    # The picks are kept in the project, so they survive a restart ...
    kept = json.loads((session.folder / SESSION_FILE).read_text())["suggestion"]
    assert kept["strategy"] == "coreset" and kept["model"] == "models/encoder.pt"
    assert kept["picks"] == [pick_record(p) for p in again.picks]
    truth = dense_to_annotation(sample.labels)
    for z in (4, 15):
        session.annotations.write_slice(z, truth[z])
        session.mark_done(z)
    record = run_to_end(
        train_session(session, sample.image, TINY_TRAIN, strategy="rareness")
    )
    assert record.cycle == 1 and record.labelled == [["z", 4], ["z", 15]]
    # ... until a cycle trains on them and records them.
    assert record.picks == kept["picks"] and session.suggestion is None
    assert session.latest_model.is_file()
    assert np.isfinite(record.metrics["final_loss"])

    ranking = run_to_end(
        rank_session(session, sample.image, "rareness", k=3, min_distance=2)
    )
    assert len(ranking.scores) == 24
    picked = [p.slice for p in ranking.picks]
    assert len(picked) == 3
    assert all(abs(p - d) >= 2 for p in picked for d in (4, 15))
    # Cached against the model: a second ranking reads the summary back.
    assert len(list((session.folder / "cache").glob("summary-*.npz"))) == 1
    again = run_to_end(
        rank_session(session, sample.image, "rareness", k=3, min_distance=2)
    )
    np.testing.assert_allclose(again.scores, ranking.scores)

    prediction = run_to_end(predict_session(session, sample.image, uncertainty=True))
    labels = np.asarray(prediction.labels)
    assert labels.shape == sample.image.shape
    assert labels.min() >= 1 and labels.max() <= 4
    assert prediction.uncertainty.shape == sample.image.shape
    assert prediction.class_fraction.sum() == pytest.approx(1.0)
    assert learning_curve(session)[0]["n_labelled"] == 2

    reopened, warnings = session_for(
        None, sample.image, ClassTable.hbm(), folder=session.folder
    )
    assert warnings == [] and reopened.cycles[0].model == "models/cycle-001.pt"
    changed = sample.image // 2
    _, warnings = session_for(None, changed, ClassTable.hbm(), folder=session.folder)
    assert "changed on disk" in warnings[0]


def test_cancelled_training_keeps_the_previous_model(sample, tmp_path) -> None:
    session = Session.open(
        session_for(None, sample.image, ClassTable.hbm(), folder=tmp_path / "c")[
            0
        ].folder
    )
    truth = dense_to_annotation(sample.labels)
    session.annotations.write_slice(3, truth[3])
    session.mark_done(3)
    run_to_end(train_session(session, sample.image, TINY_TRAIN))
    first = session.latest_model
    job = train_session(
        session, sample.image, TrainConfig(steps=500, crop_size=32, batch_size=2)
    )
    for _ in range(3):
        next(job)
    job.close()
    assert Session.open(session.folder).latest_model == first
    assert sorted(p.name for p in (session.folder / "models").iterdir()) == [
        "cycle-001.pt"
    ]


def test_the_training_seed_picks_the_model_and_is_recorded(sample, tmp_path) -> None:
    session, _ = session_for(
        None, sample.image, ClassTable.hbm(), folder=tmp_path / "t"
    )
    truth = dense_to_annotation(sample.labels)
    session.annotations.write_slice(3, truth[3])
    session.mark_done(3)

    def weights(seed: int) -> list[torch.Tensor]:
        record = run_to_end(train_session(session, sample.image, TINY_TRAIN, seed=seed))
        assert record.seed == seed
        ckpt = load_checkpoint(session.folder / record.model)
        return [v.float() for v in ckpt.state_dict.values()]

    first, same, other = weights(0), weights(0), weights(7)
    assert all(torch.equal(a, b) for a, b in zip(first, same, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    assert [c.seed for c in Session.open(session.folder).cycles] == [0, 0, 7]

    # What the dock's forms start from when the project opens again.
    last = last_settings(session)
    assert last.seed == 7 and last.pretrain is None
    assert last.train == json.loads(json.dumps(dataclasses.asdict(TINY_TRAIN)))
    (session.folder / session.cycles[-1].model).write_bytes(b"damaged")
    assert last_settings(session).seed == 0  # the model that still loads


def test_opening_a_project_reads_its_latest_model_once(
    sample, tmp_path, monkeypatch
) -> None:
    session, _ = session_for(None, sample.image, ClassTable.hbm(), folder=tmp_path)
    session.annotations.write_slice(3, dense_to_annotation(sample.labels)[3])
    session.mark_done(3)
    run_to_end(train_session(session, sample.image, TINY_TRAIN, seed=0))
    loaded: list[str] = []

    def counting(path, kind=None):
        loaded.append(Path(path).name)
        return load_checkpoint(path, kind)

    monkeypatch.setattr(checkpoint_module, "load_checkpoint", counting)
    monkeypatch.setattr(jobs_module, "load_checkpoint", counting)
    reopened = Session.open(tmp_path)
    last = last_settings(reopened)
    assert last.train == json.loads(json.dumps(dataclasses.asdict(TINY_TRAIN)))
    assert loaded == [Path(session.cycles[-1].model).name]


def test_cancelled_pretraining_keeps_the_previous_encoder(sample, tmp_path) -> None:
    session, _ = session_for(
        None, sample.image, ClassTable.hbm(), folder=tmp_path / "p"
    )
    job = pretrain_session(session, sample.image, TINY_PRETRAIN)
    next(job)
    job.close()
    assert session.pretrained is None
    assert not (session.folder / "models" / "encoder.pt").exists()
    run_to_end(pretrain_session(session, sample.image, TINY_PRETRAIN))
    first = (session.folder / "models" / "encoder.pt").read_bytes()
    job = pretrain_session(
        session,
        sample.image,
        PretrainConfig(steps=50, batch_size=4, time_budget_s=None),
    )
    for _ in range(3):
        next(job)
    job.close()
    assert (session.folder / "models" / "encoder.pt").read_bytes() == first
    assert Session.open(session.folder).pretrained == "models/encoder.pt"


def test_prediction_follows_the_axes_the_model_was_trained_on(sample, tmp_path) -> None:
    """y slices alone: predicted along y; z and y slices: along both, averaged
    (the uncertainty map too)."""
    session, _ = session_for(
        None, sample.image, ClassTable.hbm(), "z", folder=tmp_path / "s.xrmal"
    )
    truth = dense_to_annotation(sample.labels)
    for index in (10, 30):
        ref = SliceRef.of("y", index)
        session.annotations.write_slice(ref, truth[:, index])
        session.mark_done(ref)
    run_to_end(train_session(session, sample.image, TINY_TRAIN))
    along_y = run_to_end(predict_session(session, sample.image))
    assert along_y.axes == ("y",) and along_y.along() == "predicted along y"
    assert read_mask(session.folder / PREDICTION).provenance["axes"] == "y"

    session.annotations.write_slice(12, truth[12])
    session.mark_done(12)
    run_to_end(train_session(session, sample.image, TINY_TRAIN))
    fused = run_to_end(predict_session(session, sample.image))
    assert fused.axes == ("y", "z")
    assert fused.along() == "predicted along y, z and averaged"
    segmenter = Segmenter.from_checkpoint(session.latest_model)
    expected = np.zeros(sample.image.shape, np.uint8)
    run_to_end(predict_fused(segmenter, sample.image, "zy", out=expected))
    np.testing.assert_array_equal(np.asarray(fused.labels), expected)

    unsure = run_to_end(predict_session(session, sample.image, uncertainty=True))
    assert unsure.axes == ("y", "z") and unsure.note == ""
    np.testing.assert_array_equal(np.asarray(unsure.labels), expected)
    assert unsure.uncertainty.shape == sample.image.shape
    assert np.asarray(unsure.uncertainty).max() > 0
