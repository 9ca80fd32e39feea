"""Slices along every axis in one session: done pairs, one annotation volume,
old projects migrated, slices across the chunks saved whole or not at all."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.session.annotations import PENDING
from napari_xrm_al.core.session.paths import SESSION_FILE
from napari_xrm_al.core.session.schema import SCHEMA_VERSION
from napari_xrm_al.core.session.session import ImageRef, Session
from napari_xrm_al.core.slice_refs import SliceRef
from napari_xrm_al.errors import XrmError

IMAGE = ImageRef(path="/data/scan.tif", shape=(6, 8, 10), dtype="u1", fingerprint="f")


@pytest.fixture
def session(tmp_path) -> Session:
    return Session.create(tmp_path / "s.xrmal", IMAGE, ClassTable.hbm(), axis="z")


def test_done_slices_of_every_axis_round_trip(session) -> None:
    session.mark_done(SliceRef.of("y", 5))
    session.mark_done(2)  # a plain index: along the session axis
    session.mark_done(SliceRef.of("x", 9))
    with pytest.raises(XrmError, match="y:8 is outside the volume's 8 slices along y"):
        session.mark_done(SliceRef.of("y", 8))
    session.close()

    data = json.loads((session.folder / SESSION_FILE).read_text())
    assert data["schema_version"] == SCHEMA_VERSION == 3
    assert data["done"] == [["z", 2], ["y", 5], ["x", 9]]
    again = Session.open(session.folder)
    assert [str(r) for r in again.done] == ["z:2", "y:5", "x:9"]
    assert again.is_done(2) and again.is_done(SliceRef.of("y", 5))
    assert not again.is_done(5)  # z:5, not y:5


def test_an_old_project_opens_with_its_slices_along_its_axis(session) -> None:
    """A schema-1 session.json (one axis, done = ints) loses nothing."""
    session.annotations.write_slice(3, np.full((8, 10), 2, np.uint8))
    path = session.folder / SESSION_FILE
    session.close()
    old = json.loads(path.read_text())
    del old["suggestion"]  # schema 3
    old.update(
        schema_version=1,
        axis="y",
        done=[3, 7],
        cycles=[
            {
                "cycle": 1,
                "strategy": "rareness",
                "labelled": [3],
                "picks": [{"slice": 7, "score": 0.5, "rank": 1}],
                "model": None,
            }
        ],
    )
    path.write_text(json.dumps(old))

    again = Session.open(path.parent)
    assert again.done == [SliceRef.of("y", 3), SliceRef.of("y", 7)]
    assert again.cycles[0].labelled == [["y", 3]]
    assert again.cycles[0].picks == [{"axis": "y", "slice": 7, "score": 0.5, "rank": 1}]
    again.mark_done(SliceRef.of("z", 1))
    saved = json.loads(path.read_text())
    assert saved["schema_version"] == 3 and saved["suggestion"] is None
    assert saved["done"] == [["z", 1], ["y", 3], ["y", 7]]
    np.testing.assert_array_equal(again.annotations.read_slice(SliceRef.of("z", 3)), 2)


def test_slices_of_every_axis_paint_the_same_volume(session) -> None:
    across = np.zeros((6, 10), np.uint8)
    across[:, 4] = 3  # a column through every z-slice
    session.annotations.write_slice(SliceRef.of("y", 2), across)
    session.annotations.write_slice(1, np.full((8, 10), 1, np.uint8))

    volume = session.annotations.read_all()
    assert volume[1].all() and (volume[1] == 1).all()  # the z-slice, written last
    assert (volume[[0, 2, 3, 4, 5], 2, 4] == 3).all()
    np.testing.assert_array_equal(
        session.annotations.read_slice(SliceRef.of("x", 4))[:, 2], [3, 1, 3, 3, 3, 3]
    )
    assert not (session.folder / PENDING).exists() or not any(
        (session.folder / PENDING).iterdir()
    )
    session.mark_done(SliceRef.of("y", 2))
    # the y-slice holds the z-slice's row of class 1 too
    assert session.labelled_counts().tolist() == [10, 0, 5, 0]


def test_a_slice_across_the_chunks_cut_short_is_finished_on_reopening(
    session, monkeypatch
) -> None:
    across = np.full((6, 8), 4, np.uint8)

    def crash(pending):
        raise KeyboardInterrupt  # the process dies after saving the whole slice

    monkeypatch.setattr(
        type(session.annotations), "_write_pending", lambda self, p: crash(p)
    )
    with pytest.raises(KeyboardInterrupt):
        session.annotations.write_slice(SliceRef.of("x", 6), across)
    monkeypatch.undo()
    assert not session.annotations.read_all().any()
    session.close()

    again = Session.open(session.folder)
    np.testing.assert_array_equal(
        again.annotations.read_slice(SliceRef.of("x", 6)), across
    )
    assert not list((again.folder / PENDING).iterdir())


def test_an_unreadable_pending_slice_is_dropped_with_a_warning(session) -> None:
    (session.folder / PENDING).mkdir()
    (session.folder / PENDING / "y-3.npy").write_bytes(b"not numpy")
    session.close()
    again = Session.open(session.folder)
    assert "paint that slice again" in again.warnings[0]
    assert not (again.folder / PENDING / "y-3.npy").exists()
