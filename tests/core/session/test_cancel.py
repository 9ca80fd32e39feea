"""Cancelling (closing) a session job at any point leaves the session as it was:
the previous results under their final names, no half-written files."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from napari_xrm_al.classes import ClassTable, dense_to_annotation
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.session.jobs import rank_session, session_for, train_session
from napari_xrm_al.core.session.prediction import (
    PREDICTION,
    UNCERTAINTY,
    predict_session,
)
from napari_xrm_al.core.session.session import Session
from napari_xrm_al.core.slice_refs import SliceRef
from napari_xrm_al.core.synthetic.sample import make_hbm_sample

SHAPE = (16, 48, 48)


@pytest.fixture(scope="module")
def sample():
    return make_hbm_sample(shape=SHAPE, seed=2)


@pytest.fixture
def trained(sample, tmp_path, tiny_train_config):
    """A session with one slice done and one cycle whose model is a tiny one."""
    session, _ = session_for(
        None, sample.image, ClassTable.hbm(), folder=tmp_path / "s"
    )
    session.annotations.write_slice(3, dense_to_annotation(sample.labels)[3])
    session.mark_done(3)
    run_to_end(
        train_session(session, sample.image, replace(tiny_train_config, steps=1))
    )
    yield session
    session.close()


def snapshot(session: Session) -> dict[str, bytes]:
    """Every file of the session folder (except the lock) and its bytes."""
    return {
        p.relative_to(session.folder).as_posix(): p.read_bytes()
        for p in sorted(session.folder.rglob("*"))
        if p.is_file() and p.name != "session.lock"
    }


def hidden(session: Session) -> list[str]:
    """Temporary files (hidden siblings) anywhere in the session folder."""
    return [p.name for p in session.folder.rglob(".*")]


def cancel_after(job, steps: int) -> None:
    for _ in range(steps):
        next(job)
    job.close()


def test_cancelled_prediction_keeps_the_previous_one(trained, sample) -> None:
    events = []
    first = run_to_end(
        predict_session(trained, sample.image, uncertainty=True), events.append
    )
    before = snapshot(trained)
    for steps in sorted({1, len(events)}):  # at the start, and at the last moment
        cancel_after(predict_session(trained, sample.image, uncertainty=True), steps)
        assert snapshot(trained) == before and hidden(trained) == []
    labels = np.asarray(first.labels)
    assert labels.min() >= 1 and labels.shape == SHAPE


def test_cancelled_first_prediction_leaves_none(trained, sample) -> None:
    cancel_after(predict_session(trained, sample.image, uncertainty=True), 1)
    assert not (trained.folder / PREDICTION).exists()
    assert not (trained.folder / UNCERTAINTY).exists()
    assert hidden(trained) == []


def test_cancelled_ranking_writes_no_cache(trained, sample) -> None:
    before = snapshot(trained)
    cancel_after(rank_session(trained, sample.image, "entropy", k=2), 1)
    assert snapshot(trained) == before and hidden(trained) == []
    assert not (trained.folder / "cache").exists() or not any(
        (trained.folder / "cache").iterdir()
    )


def test_cancelled_training_at_any_step_leaves_the_session_unchanged(
    trained, sample, tiny_train_config
) -> None:
    before = snapshot(trained)
    for steps in (1, 2):
        config = replace(tiny_train_config, steps=50)
        job = train_session(trained, sample.image, config)
        cancel_after(job, steps)
        assert snapshot(trained) == before and hidden(trained) == []
    again = Session.open(trained.folder)
    assert [c.cycle for c in again.cycles] == [1] and again.done == [SliceRef(0, 3)]
